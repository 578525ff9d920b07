#!/usr/bin/env node
// Generates TypeScript types for proto/dpl/v1/*.proto with proto-loader-gen-types (into
// src/generated, which git ignores), the same protos as protobufjs JSON (src/generated/
// descriptor.ts, what loadDplProto() builds the services from at run time: no .proto parsing in
// every process), and copies the protos into the package (proto/) for other languages' clients.
// Skips the work when no .proto is newer than the output.
'use strict';
const { execFileSync } = require('node:child_process');
const { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } = require('node:fs');
const { isAbsolute, join } = require('node:path');
const { Root } = require('protobufjs');

const pkg = join(__dirname, '..');
const protoRoot = join(pkg, '..', '..', 'proto');
const protoDir = join(protoRoot, 'dpl', 'v1');
const outDir = join(pkg, 'src', 'generated');
const stamp = join(outDir, '.stamp');
const protos = readdirSync(protoDir).filter((f) => f.endsWith('.proto'));
// Only files that define a service are entry points; the messages they import are generated
// with them (a file of messages alone would give an entry module with unused imports).
const entries = protos.filter((f) => /^service\s/m.test(readFileSync(join(protoDir, f), 'utf8')));

const newest = Math.max(...protos.map((f) => statSync(join(protoDir, f)).mtimeMs), statSync(__filename).mtimeMs);
if (existsSync(stamp) && statSync(stamp).mtimeMs >= newest && existsSync(join(pkg, 'proto'))) {
  process.exit(0);
}
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
// The same options as PROTO_LOADER_OPTIONS in src/proto.ts, so types match what is loaded.
execFileSync(
  process.execPath,
  [
    require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
    '--longs=String',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--keepCase',
    '--grpcLib=@grpc/grpc-js',
    `--includeDirs=${protoRoot}`,
    `--outDir=${outDir}`,
    '--inputTemplate=%s__Input',
    '--outputTemplate=%s',
    ...entries.map((f) => `dpl/v1/${f}`),
  ],
  { stdio: 'inherit' },
);
// keepCase as in PROTO_LOADER_OPTIONS: field names as written.
const root = new Root();
root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(protoRoot, target));
root.loadSync(entries.map((f) => `dpl/v1/${f}`), { keepCase: true });
root.resolveAll();
writeFileSync(
  join(outDir, 'descriptor.ts'),
  '/** dpl.v1 as protobufjs JSON (made by scripts/gen.js from proto/dpl/v1). */\n' +
    `export const DPL_PROTO_JSON: unknown = JSON.parse(${JSON.stringify(JSON.stringify(root.toJSON()))});\n`,
);
rmSync(join(pkg, 'proto'), { recursive: true, force: true });
cpSync(protoRoot, join(pkg, 'proto'), { recursive: true });
writeFileSync(stamp, `${new Date().toISOString()}\n`);
