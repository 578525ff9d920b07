/**
 * Bundles a pipeline module (`.ts` or `.js`) with esbuild into one ESM text, content-addressed
 * by its sha256, and loads it. Shared packages (`@dpl/*`, `apache-arrow`, `parquet-wasm`) stay
 * outside the bundle: see BUNDLE_BANNER in @dpl/core.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Message, type Plugin } from 'esbuild';
import {
  BUNDLE_BANNER,
  DplError,
  DplErrorCode,
  checkPipelineModule,
  importBundleFile,
  privateDir,
  readPrivateFile,
  writeBundle,
  type PipelineModule,
} from '@dpl/core';

/** A bundled module: its source path, code and content hash. */
export interface ModuleBundle {
  file: string;
  code: string;
  hash: string;
}

/** A loaded module with the bundle it came from. */
export interface LoadedModule extends PipelineModule {
  bundle: ModuleBundle;
}

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']);
const SHARED = /^(@dpl\/[^/]+|apache-arrow|parquet-wasm)(\/.*)?$/;
const SHARED_NAMESPACE = 'dpl-shared';

/** Resolves shared packages through `require` at run time instead of bundling them. */
const sharedPackages: Plugin = {
  name: 'dpl-shared-packages',
  setup(b) {
    b.onResolve({ filter: SHARED }, (args) =>
      args.namespace === SHARED_NAMESPACE
        ? { path: args.path, external: true }
        : { path: args.path, namespace: SHARED_NAMESPACE },
    );
    b.onLoad({ filter: /.*/, namespace: SHARED_NAMESPACE }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

function formatMessage(m: Message): string {
  const where = m.location ? ` (${m.location.file}:${m.location.line}:${m.location.column + 1})` : '';
  return `${m.text}${where}`;
}

/**
 * Bundles a pipeline module into one ESM text.
 * @throws DplError(MODULE) when the file is missing, has an unknown extension or fails to bundle.
 */
export async function bundleModule(path: string): Promise<ModuleBundle> {
  const file = resolve(path);
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} not found (looked at ${file}); pass the path of a .ts or .js file whose default export is a PipelineGraph`,
    );
  }
  if (!MODULE_EXTENSIONS.has(extname(file))) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} has extension ${JSON.stringify(extname(file))}; use a .ts or .js file (also .mts, .cts, .mjs, .cjs)`,
    );
  }
  let code: string;
  try {
    const result = await build({
      entryPoints: [file],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      write: false,
      sourcemap: 'inline',
      // Source paths are relative to the working directory; make stack traces point there, not
      // next to the cached bundle.
      sourceRoot: `${pathToFileURL(process.cwd()).href}/`,
      logLevel: 'silent',
      plugins: [sharedPackages],
      banner: { js: BUNDLE_BANNER },
    });
    code = result.outputFiles[0]!.text;
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    const detail = errors && errors.length > 0 ? errors.map(formatMessage).join('; ') : (e as Error).message;
    throw new DplError(DplErrorCode.MODULE, `cannot bundle pipeline module ${path}: ${detail}`, { cause: e });
  }
  return { file, code, hash: createHash('sha256').update(code).digest('hex') };
}

/** Where bundles are cached: a private folder of this user (`~/.dpl/bundles`), created and checked. */
export function moduleCacheDir(): string {
  return privateDir('bundles');
}

/**
 * Bundles, imports and checks a pipeline module: its default export must be a PipelineGraph; it
 * may export `generator` and `maxBatches`.
 * @throws DplError(MODULE) naming the module and what is wrong with it.
 */
export async function loadPipelineModule(path: string): Promise<LoadedModule> {
  const bundle = await bundleModule(path);
  const file = writeBundle(moduleCacheDir(), bundle.hash, bundle.code);
  try {
    return { ...(await importBundleFile(file, path)), bundle };
  } catch (e) {
    if (!isDynamicImportUnavailable(e)) throw e;
    // Inside a host without dynamic import (jest's VM sandbox, where users test their own
    // pipelines), evaluate a CommonJS build with this package's own require instead.
    return { ...(await evaluateCommonJs(bundle.file, path)), bundle };
  }
}

function isDynamicImportUnavailable(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code === 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING' || /experimental-vm-modules/.test(cause?.message ?? '');
}

async function evaluateCommonJs(file: string, label: string): Promise<PipelineModule> {
  const result = await build({
    entryPoints: [file],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
    plugins: [sharedPackages],
  });
  const module = { exports: {} as Record<string, unknown> };
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- evaluating the user's bundle is the point
    const run = new Function('require', 'module', 'exports', '__filename', '__dirname', result.outputFiles[0]!.text) as (
      ...args: unknown[]
    ) => void;
    run(require, module, module.exports, file, dirname(file));
  } catch (e) {
    throw new DplError(DplErrorCode.MODULE, `pipeline module ${label} failed while loading: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return checkPipelineModule(module.exports, label);
}

/**
 * Loads the module a graph was built in. A file that is itself a bundle in the cache (a graph
 * from a module loaded by dpl, seen without source maps) is used as the bundle it is.
 */
export async function loadModuleFile(file: string): Promise<LoadedModule> {
  const cached = /^([0-9a-f]{64})\.mjs$/.exec(basename(file));
  if (cached !== null && dirname(file) === moduleCacheDir()) {
    const code = readPrivateFile(file).toString('utf8');
    // Used as the bundle it is only when it still has the content its name says.
    if (createHash('sha256').update(code).digest('hex') === cached[1]) {
      const bundle: ModuleBundle = { file, code, hash: cached[1] };
      return { ...(await importBundleFile(file, file)), bundle };
    }
  }
  return loadPipelineModule(file);
}
