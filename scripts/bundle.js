#!/usr/bin/env node
/**
 * The last step of `npm run build`: dpl's own processes built as single files (esbuild, from the
 * compiled dist/ folders), because Node spends a third of a command's start resolving and reading
 * ~700 small modules:
 *
 * - `packages/cli/dist/dpl.js` and `dpl-cli.js`: the `dpl` command (bin/dpl.js runs the first,
 *   which starts `dpl run`'s executors and then loads the second, the rest of the CLI);
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
/** A pattern for esbuild's filters: `path` exactly, then `rest` (a pattern). */
const under = (path, rest = '') => new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${rest}$`);
/** A compiled file of one of this repository's packages (packages/<name>/dist/…). */
const OWN_DIST = under(PACKAGES, '[\\\\/][^\\\\/]+[\\\\/]dist[\\\\/].*\\.js');

/**
 * Defines `__dirname` and `__filename` in each compiled dpl file that uses them, as the folder
 * and file it was compiled to, found from the bundle's folder at run time.
 */
function ownPaths(outDir) {
  return {
    name: 'dpl-own-paths',
    setup(b) {
      b.onLoad({ filter: OWN_DIST }, (args) => {
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
function entrySource(shared, main, prologue = '') {
  const lines = ['"use strict";', prologue];
  if (shared.length > 0) lines.push('const shared = (globalThis.__dplShared ??= {});');
  for (const id of shared) {
    lines.push(`Object.defineProperty(shared, ${JSON.stringify(id)}, { configurable: true, enumerable: true, get: () => require(${JSON.stringify(id)}) });`);
  }
  lines.push(`module.exports = require(${JSON.stringify(main)});`);
  return lines.join('\n');
}

/**
 * The modules of the `dpl` command's first file, which the second gets from it (one instance of
 * each): the executors it starts early, and how it starts them.
 */
const LAUNCH = [
  { key: 'fork', file: under(join(PACKAGES, 'worker', 'dist', 'executor', 'fork.js')), id: '@dpl/worker/fork' },
  { key: 'earlyExecutors', file: under(join(PACKAGES, 'cli', 'dist', 'internal', 'early-executors.js')), id: './internal/early-executors.js' },
];

/** In the second file: LAUNCH's modules are the first file's. */
const fromLauncher = {
  name: 'dpl-from-launcher',
  setup(b) {
    for (const { key, file } of LAUNCH) {
      b.onLoad({ filter: file }, () => ({
        contents:
          `if (globalThis.__dplLaunch === undefined) throw new Error("dpl-cli.js is loaded by dist/dpl.js (the dpl command), not on its own");\n` +
          `module.exports = globalThis.__dplLaunch.${key};`,
        loader: 'js',
      }));
    }
  },
};

/** In the first file: the CLI itself (`require('./cli')`) is the second. */
const cliOutside = {
  name: 'dpl-cli-outside',
  setup(b) {
    b.onResolve({ filter: /^\.\/cli$/ }, (args) => (args.importer.endsWith(`${sep}main.js`) ? { path: './dpl-cli.js', external: true } : undefined));
  },
};

async function bundle({ dir, main, outfile, shared, prologue, plugins = [] }) {
  const outDir = dirname(outfile);
  await build({
    stdin: { contents: entrySource(shared, main, prologue), resolveDir: dir, sourcefile: `${main} (bundle entry)`, loader: 'js' },
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: EXTERNAL,
    banner: { js: 'const __dplBundleDir = __dirname;' },
    plugins: [...plugins, ownPaths(outDir)],
    logLevel: 'warning',
    legalComments: 'eof',
  });
}

const ARROW_AND_CORE = ['@dpl/core', 'apache-arrow'];
const CLI_DIST = join(PACKAGES, 'cli', 'dist');
const launch = LAUNCH.map(({ key, id }) => `get ${key}() { return require(${JSON.stringify(id)}); }`).join(', ');

Promise.all([
  // The `dpl` command in two files: the first (small) turns on Node's compile cache and starts
  // `dpl run`'s executors before the second (3 MB, ~40 ms to compile) is read.
  bundle({
    dir: CLI_DIST,
    main: './main.js',
    outfile: join(CLI_DIST, 'dpl.js'),
    shared: [],
    prologue: `globalThis.__dplLaunch = { ${launch} };`,
    plugins: [cliOutside],
  }),
  bundle({
    dir: CLI_DIST,
    main: './cli.js',
    outfile: join(CLI_DIST, 'dpl-cli.js'),
    shared: [...ARROW_AND_CORE, '@dpl/wire', '@dpl/head', '@dpl/worker', '@dpl/client', '@dpl/cli'],
    plugins: [fromLauncher],
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
