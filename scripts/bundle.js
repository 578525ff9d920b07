#!/usr/bin/env node
/**
 * The last step of `npm run build`: the two entry points of dpl's own processes as one file each
 * (esbuild, from the compiled dist/ folders), because Node spends a third of a command's start
 * resolving and reading ~700 small modules:
 *
 * - `packages/cli/dist/dpl.js`: the `dpl` command (bin/dpl.js runs it);
 * - `packages/worker/dist/executor/executor-bundle.js`: a worker's executor process.
 *
 * Each bundle lists the packages it holds in `globalThis.__dplShared` before anything runs, so
 * that a pipeline module loaded in that process gets dpl's and arrow's copies from the bundle
 * instead of loading a second copy from disk (see sharedRequire in @dpl/core). A dpl module that
 * names its own folder (`__dirname`, `__filename`: the .proto files, the executor's entry, the
 * anchor that shared packages resolve from) keeps naming it: the bundle defines both for it,
 * relative to the bundle's own folder (the layout of packages/<name> and node_modules/@dpl/<name>
 * is the same). Left outside: esbuild (a native binary) and parquet-wasm (loads its .wasm file).
 *
 *   node scripts/bundle.js            # both bundles
 */
'use strict';
const { build } = require('esbuild');
const { readFileSync } = require('node:fs');
const { dirname, join, relative, sep } = require('node:path');

const ROOT = join(__dirname, '..');
const PACKAGES = join(ROOT, 'packages');
const EXTERNAL = ['esbuild', 'parquet-wasm', 'parquet-wasm/*'];

/**
 * Defines `__dirname` and `__filename` in each compiled dpl file that uses them, as the folder
 * and file it was compiled to, found from the bundle's folder at run time.
 */
function ownPaths(outDir) {
  return {
    name: 'dpl-own-paths',
    setup(b) {
      b.onLoad({ filter: /[\\/]packages[\\/][^\\/]+[\\/]dist[\\/].*\.js$/ }, (args) => {
        const code = readFileSync(args.path, 'utf8');
        if (!/\b__(dirname|filename)\b/.test(code)) return undefined;
        const fromBundle = relative(outDir, args.path).split(sep).join('/');
        const header =
          `var __filename = require("node:path").join(__dplBundleDir, ${JSON.stringify(fromBundle)}), ` +
          '__dirname = require("node:path").dirname(__filename);\n';
        return { contents: header + code, loader: 'js', resolveDir: dirname(args.path) };
      });
    },
  };
}

/** The entry's source: the shared packages (loaded on first use), then the entry itself. */
function entrySource(shared, main) {
  const lines = ['"use strict";', 'const shared = (globalThis.__dplShared ??= {});'];
  for (const id of shared) {
    lines.push(`Object.defineProperty(shared, ${JSON.stringify(id)}, { configurable: true, enumerable: true, get: () => require(${JSON.stringify(id)}) });`);
  }
  lines.push(`require(${JSON.stringify(main)});`);
  return lines.join('\n');
}

async function bundle({ dir, main, outfile, shared }) {
  const outDir = dirname(outfile);
  await build({
    stdin: { contents: entrySource(shared, main), resolveDir: dir, sourcefile: `${main} (bundle entry)`, loader: 'js' },
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: EXTERNAL,
    banner: { js: 'const __dplBundleDir = __dirname;' },
    plugins: [ownPaths(outDir)],
    logLevel: 'warning',
    legalComments: 'eof',
  });
}

const ARROW_AND_CORE = ['@dpl/core', 'apache-arrow'];

Promise.all([
  bundle({
    dir: join(PACKAGES, 'cli', 'dist'),
    main: './main.js',
    outfile: join(PACKAGES, 'cli', 'dist', 'dpl.js'),
    shared: [...ARROW_AND_CORE, '@dpl/wire', '@dpl/head', '@dpl/worker', '@dpl/client', '@dpl/cli'],
  }),
  bundle({
    dir: join(PACKAGES, 'worker', 'dist', 'executor'),
    main: './executor-main.js',
    outfile: join(PACKAGES, 'worker', 'dist', 'executor', 'executor-bundle.js'),
    shared: ARROW_AND_CORE,
  }),
]).catch((e) => {
  process.stderr.write(`bundle: ${e.message}\n`);
  process.exit(1);
});
