/**
 * V8's compiled code for the modules a `dpl` process loads, kept on disk between runs (Node
 * 22.1+'s compile cache, in the OS's temporary folder): a command starts ~10 % sooner, and so
 * does every executor process, which inherits the folder through NODE_COMPILE_CACHE. Imported
 * first by main.ts, before anything it would cache. Node 20 has no compile cache (nothing
 * happens); NODE_DISABLE_COMPILE_CACHE=1 turns it off, NODE_COMPILE_CACHE=<dir> moves it.
 * @internal
 */
import * as nodeModule from 'node:module';

interface CompileCache {
  enableCompileCache?: () => { status: number; directory?: string };
  constants?: { compileCacheStatus?: { ENABLED: number } };
}

const api = nodeModule as unknown as CompileCache;
try {
  const result = api.enableCompileCache?.();
  const enabled = api.constants?.compileCacheStatus?.ENABLED;
  // ENABLED only when this call turned it on: NODE_COMPILE_CACHE already set gives ALREADY_ENABLED.
  if (result !== undefined && result.status === enabled && result.directory !== undefined) {
    process.env.NODE_COMPILE_CACHE = result.directory;
  }
} catch {
  // A cache that cannot be set up (an unwritable temporary folder) only costs the speed-up.
}
