#!/usr/bin/env node
// Runs a TypeScript benchmark: `node bench/run.js local [args...]` bundles bench/local.ts with
// esbuild (packages stay external, @dpl/* resolve to the built workspace packages) and runs it.
'use strict';
const { buildSync } = require('esbuild');
const { existsSync, readFileSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

const [name, ...args] = process.argv.slice(2);
const benches = readdirSync(__dirname).filter((f) => f.endsWith('.ts') && f !== 'lib.ts').map((f) => f.slice(0, -3));
if (!name || name === '--help' || name === '-h' || !existsSync(join(__dirname, `${name}.ts`))) {
  const why = !name || name.startsWith('-') ? '' : `no benchmark named ${JSON.stringify(name)}; `;
  process.stderr.write(`${why}usage: node bench/run.js <bench> [args...] (or npm run bench:<bench>); benches: ${benches.join(', ')}\n`);
  process.exit(name === '--help' || name === '-h' ? 0 : 2);
}
// `<bench> --help`: its file's opening comment (it says what it runs and its flags), not a run.
if (args.includes('--help') || args.includes('-h')) {
  const text = readFileSync(join(__dirname, `${name}.ts`), 'utf8');
  const doc = /^\/\*\*([\s\S]*?)\*\//.exec(text);
  process.stdout.write(`${doc === null ? `bench/${name}.ts has no opening comment` : doc[1].replace(/^[ \t]*\* ?/gm, '').trim()}\n`);
  process.exit(0);
}
const out = join(__dirname, `.${name}.bundle.cjs`);
buildSync({
  entryPoints: [join(__dirname, `${name}.ts`)],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outfile: out,
  sourcemap: 'inline',
  packages: 'external',
  logLevel: 'error',
});
process.setSourceMapsEnabled(true);
process.argv = [process.argv[0], out, ...args];
require(out);
