/**
 * Importing a bundled pipeline module (made by @dpl/client's bundler) in any dpl process: the
 * local CLI, a client, or a worker's executor. Bundles keep the packages every process must
 * share (`@dpl/*`, `apache-arrow`, `parquet-wasm`) outside and require them through an anchor
 * that the importing process sets, so the module and dpl use the same copy of each.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DplError, DplErrorCode } from '../errors';
import { isPipelineGraph, type PipelineGraph } from '../model/graph';
import { describe } from '../resources';
import { ensurePrivateDir, readPrivateFile, writePrivateFile } from '../security/private-files';
import type { BatchGenerator } from '../executor/local-executor';
import { installNativeRequire } from './native-packages';

/** The global a process sets to the file that shared packages are resolved from. */
export const REQUIRE_ANCHOR_GLOBAL = '__dplRequireAnchor';

/** The global a process sets to the `require` its bundles use for the shared packages. */
export const SHARED_REQUIRE_GLOBAL = '__dplRequire';

/**
 * The global where a process built as one file (dpl's own `dpl` and executor processes, see
 * scripts/bundle.js) lists the packages it holds: package name → its exports (a getter, loaded on
 * first use). A pipeline module in such a process gets these copies, not second ones from disk.
 */
export const SHARED_MODULES_GLOBAL = '__dplShared';

/**
 * The first lines of every bundle: a `require` for the shared packages, the importing process's
 * own (so a bundle made on one machine loads on another); in a process from before it had one,
 * resolved from its anchor.
 */
export const BUNDLE_BANNER =
  "import { createRequire as __dplCreateRequire } from 'node:module';\n" +
  `const require = globalThis.${SHARED_REQUIRE_GLOBAL} ?? __dplCreateRequire(globalThis.${REQUIRE_ANCHOR_GLOBAL} ?? import.meta.url);`;

/**
 * The `require` a bundle gets for the shared packages: the copy this process holds when it is
 * listed in {@link SHARED_MODULES_GLOBAL} (exactly that name: a subpath such as
 * `apache-arrow/table` loads from disk), else `anchored` (resolved from the anchor file).
 */
export function sharedRequire(anchored: NodeJS.Require): NodeJS.Require {
  const shared = (globalThis as Record<string, unknown>)[SHARED_MODULES_GLOBAL] as Record<string, unknown> | undefined;
  if (shared === undefined) return anchored;
  const req = ((id: string): unknown => (Object.hasOwn(shared, id) ? shared[id] : anchored(id))) as NodeJS.Require;
  req.resolve = anchored.resolve;
  req.cache = anchored.cache;
  req.extensions = anchored.extensions;
  req.main = anchored.main;
  return req;
}

/** What a pipeline module provides. */
export interface PipelineModule {
  graph: PipelineGraph;
  generator: BatchGenerator | undefined;
  maxBatches: number | undefined;
}

/**
 * Writes bundle code under its sha256 `hash` in `dir` (a private folder, created 0700 and checked)
 * and returns the file's path. A file already there is used only when its content has that hash;
 * otherwise (a torn write, a tampered file) it is written again.
 * @throws DplError(MODULE) when `code` does not have the hash; DplError(INSECURE) when `dir` is
 *   not private to this user.
 */
export function writeBundle(dir: string, hash: string, code: string | Uint8Array): string {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new DplError(DplErrorCode.MODULE, `module hash ${JSON.stringify(hash)} is not a sha256 in hex`);
  if (sha256Hex(code) !== hash) throw new DplError(DplErrorCode.MODULE, `module bundle does not match its hash ${hash}; fetch it again`);
  ensurePrivateDir(dir);
  const target = join(dir, `${hash}.mjs`);
  if (!hasContent(target, hash)) {
    // A fresh private file renamed into place: concurrent writers of the same hash (two workers
    // on one machine) each write whole files, and the last rename wins harmlessly.
    writePrivateFile(target, code);
  }
  return target;
}

/** Whether `file` exists, is this user's own, and holds bytes with this sha256. */
function hasContent(file: string, hash: string): boolean {
  try {
    return sha256Hex(readPrivateFile(file)) === hash; // refuses a link or another user's file
  } catch {
    return false;
  }
}

function sha256Hex(code: string | Uint8Array): string {
  return createHash('sha256').update(code).digest('hex');
}

/**
 * Imports a bundle file and checks its exports.
 * @param label how messages name the module (its source path).
 * @throws DplError(MODULE) when it throws while loading or has no PipelineGraph default export.
 */
export async function importBundleFile(file: string, label: string): Promise<PipelineModule> {
  // This file sits inside @dpl/core, from where @dpl/core and apache-arrow resolve to the copies
  // this process already loaded.
  const g = globalThis as Record<string, unknown>;
  g[REQUIRE_ANCHOR_GLOBAL] ??= __filename;
  g[SHARED_REQUIRE_GLOBAL] ??= sharedRequire(createRequire(g[REQUIRE_ANCHOR_GLOBAL] as string));
  installNativeRequire();
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
