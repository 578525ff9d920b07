/**
 * Loads a pipeline module (`.ts` or `.js`): bundles it with esbuild into one ESM file, stores it
 * under its content hash, and imports it. The packages every dpl process must share (`@dpl/*`,
 * `apache-arrow`, `parquet-wasm`) stay outside the bundle and are required through this
 * package's own resolution, so the module and dpl see the same copy (else `instanceof Table`
 * and the graph brand checks break between two copies).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Message, type Plugin } from 'esbuild';
import {
  DplError,
  DplErrorCode,
  describe,
  isPipelineGraph,
  type BatchGenerator,
  type PipelineGraph,
} from '@dpl/core';

/** What a pipeline module provides. */
export interface PipelineModule {
  /** The module's absolute path. */
  file: string;
  /** The sha256 of the bundle. */
  hash: string;
  graph: PipelineGraph;
  generator: BatchGenerator | undefined;
  maxBatches: number | undefined;
}

/** A bundled module: its code and content hash. */
export interface ModuleBundle {
  file: string;
  code: string;
  hash: string;
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
  // Shared packages are required relative to this file, i.e. from dpl's own installation.
  const anchor = __filename;
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
      banner: {
        js:
          "import { createRequire as __dplCreateRequire } from 'node:module';\n" +
          `const require = __dplCreateRequire(${JSON.stringify(anchor)});`,
      },
    });
    code = result.outputFiles[0]!.text;
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    const detail = errors && errors.length > 0 ? errors.map(formatMessage).join('; ') : (e as Error).message;
    throw new DplError(DplErrorCode.MODULE, `cannot bundle pipeline module ${path}: ${detail}`, { cause: e });
  }
  return { file, code, hash: createHash('sha256').update(code).digest('hex') };
}

/** Where bundles are cached: one folder per user under the temp dir. */
export function moduleCacheDir(): string {
  let user = 'user';
  try {
    user = String(userInfo().uid);
  } catch {
    // no passwd entry (some containers): share the default name
  }
  return join(tmpdir(), `dpl-modcache-${user}`);
}

/**
 * Writes a bundle to the cache (once per hash) and imports it.
 * @throws DplError(MODULE) when the module throws while it loads.
 */
export async function importBundle(bundle: ModuleBundle, cacheDir = moduleCacheDir()): Promise<Record<string, unknown>> {
  await mkdir(cacheDir, { recursive: true });
  const target = join(cacheDir, `${bundle.hash}.mjs`);
  if (!existsSync(target)) {
    const tmp = `${target}.${process.pid}.tmp`;
    await writeFile(tmp, bundle.code);
    await rename(tmp, target);
  }
  try {
    return (await import(pathToFileURL(target).href)) as Record<string, unknown>;
  } catch (e) {
    const err = e as Error;
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${bundle.file} failed while loading: ${err?.message ?? describe(e)}`,
      { cause: e },
    );
  }
}

/**
 * Bundles, imports and checks a pipeline module: its default export must be a PipelineGraph; it
 * may export `generator` (a function returning an iterable of Tables) and `maxBatches`.
 * @throws DplError(MODULE) naming the module and what is wrong with it.
 */
export async function loadPipelineModule(path: string): Promise<PipelineModule> {
  const bundle = await bundleModule(path);
  const mod = await importBundle(bundle);
  const graph = mod.default;
  if (!isPipelineGraph(graph)) {
    const names = Object.keys(mod).filter((k) => k !== 'default');
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} has no default export that is a PipelineGraph ` +
        `(default export: ${describe(graph)}; other exports: ${names.join(', ') || 'none'}); ` +
        'add `export default new PipelineGraph([...])`',
    );
  }
  const { generator, maxBatches } = mod;
  if (generator !== undefined && typeof generator !== 'function') {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} exports generator = ${describe(generator)}; it must be a function returning an (async) iterable of Tables`,
    );
  }
  if (maxBatches !== undefined && (typeof maxBatches !== 'number' || !Number.isInteger(maxBatches) || maxBatches < 0)) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} exports maxBatches = ${describe(maxBatches)}; it must be an integer >= 0`,
    );
  }
  return {
    file: bundle.file,
    hash: bundle.hash,
    graph,
    generator: generator as BatchGenerator | undefined,
    maxBatches: maxBatches,
  };
}
