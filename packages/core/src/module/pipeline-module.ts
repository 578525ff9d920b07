/**
 * Importing a bundled pipeline module (made by @dpl/client's bundler) in any dpl process: the
 * local CLI, a client, or a worker's executor. Bundles keep the packages every process must
 * share (`@dpl/*`, `apache-arrow`, `parquet-wasm`) outside and require them through an anchor
 * that the importing process sets, so the module and dpl use the same copy of each.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DplError, DplErrorCode } from '../errors';
import { isPipelineGraph, type PipelineGraph } from '../model/graph';
import { describe } from '../resources';
import type { BatchGenerator } from '../executor/local-executor';

/** The global a process sets to the file that shared packages are resolved from. */
export const REQUIRE_ANCHOR_GLOBAL = '__dplRequireAnchor';

/**
 * The first lines of every bundle: a `require` for the shared packages, resolved from the
 * importing process's anchor (so a bundle made on one machine loads on another).
 */
export const BUNDLE_BANNER =
  "import { createRequire as __dplCreateRequire } from 'node:module';\n" +
  `const require = __dplCreateRequire(globalThis.${REQUIRE_ANCHOR_GLOBAL} ?? import.meta.url);`;

/**
 * A per-user folder under the temp dir (`<tmp>/<prefix>-<uid>`), where bundles are cached.
 */
export function userCacheDir(prefix: string): string {
  let user = 'user';
  try {
    user = String(userInfo().uid);
  } catch {
    // no passwd entry (some containers): share the default name
  }
  return join(tmpdir(), `${prefix}-${user}`);
}

/** What a pipeline module provides. */
export interface PipelineModule {
  graph: PipelineGraph;
  generator: BatchGenerator | undefined;
  maxBatches: number | undefined;
}

/**
 * Writes bundle code under its hash in `dir` (once) and returns the file's path.
 */
export async function writeBundle(dir: string, hash: string, code: string | Uint8Array): Promise<string> {
  await mkdir(dir, { recursive: true });
  const target = join(dir, `${hash}.mjs`);
  if (!existsSync(target)) {
    // A unique temporary name, then an atomic rename: concurrent writers of the same hash (two
    // workers on one machine) each write whole files, and the last rename wins harmlessly.
    const tmp = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, code);
    await rename(tmp, target);
  }
  return target;
}

/**
 * Imports a bundle file and checks its exports.
 * @param label how messages name the module (its source path).
 * @throws DplError(MODULE) when it throws while loading or has no PipelineGraph default export.
 */
export async function importBundleFile(file: string, label: string): Promise<PipelineModule> {
  // This file sits inside @dpl/core, from where @dpl/core and apache-arrow resolve to the copies
  // this process already loaded.
  (globalThis as Record<string, unknown>)[REQUIRE_ANCHOR_GLOBAL] ??= __filename;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${label} failed while loading: ${(e as Error)?.message ?? describe(e)}`,
      { cause: e },
    );
  }
  return checkPipelineModule(mod, label);
}

/**
 * Checks a module's exports: a PipelineGraph default export, and optional `generator` (a
 * function) and `maxBatches` (an integer >= 0).
 * @throws DplError(MODULE) naming the module and what is wrong.
 */
export function checkPipelineModule(mod: Record<string, unknown>, label: string): PipelineModule {
  const graph = mod.default;
  if (!isPipelineGraph(graph)) {
    const names = Object.keys(mod).filter((k) => k !== 'default');
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${label} has no default export that is a PipelineGraph ` +
        `(default export: ${describe(graph)}; other exports: ${names.join(', ') || 'none'}); ` +
        'add `export default new PipelineGraph([...])`',
    );
  }
  const { generator, maxBatches } = mod;
  if (generator !== undefined && typeof generator !== 'function') {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${label} exports generator = ${describe(generator)}; it must be a function returning an (async) iterable of Tables`,
    );
  }
  if (maxBatches !== undefined && (typeof maxBatches !== 'number' || !Number.isInteger(maxBatches) || maxBatches < 0)) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${label} exports maxBatches = ${describe(maxBatches)}; it must be an integer >= 0`,
    );
  }
  return { graph, generator: generator as BatchGenerator | undefined, maxBatches: maxBatches };
}
