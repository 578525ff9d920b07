#!/usr/bin/env node
// Runs a TypeScript benchmark: `node bench/run.js local [args...]` bundles bench/local.ts with
// esbuild (packages stay external, @dpl/* resolve to the built workspace packages) and runs it.
'use strict';
const { buildSync } = require('esbuild');
const { join } = require('node:path');

const [name, ...args] = process.argv.slice(2);
if (!name) {
  process.stderr.write('usage: node bench/run.js <bench name> [args...], e.g. node bench/run.js local\n');
  process.exit(2);
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
