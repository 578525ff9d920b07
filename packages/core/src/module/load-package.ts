/**
 * Packages a pipeline module cannot bundle (native addons such as `@duckdb/node-api`) are loaded
 * at run time from the installation dpl itself runs from.
 */
import { createRequire } from 'node:module';
import { DplError, DplErrorCode } from '../errors';

const requireFromDpl = createRequire(__filename);

/**
 * Loads `name` from dpl's installation (every worker that runs the task needs it installed there).
 *
 * ```ts
 * const { DuckDBInstance } = loadPackage<typeof import('@duckdb/node-api')>('@duckdb/node-api');
 * ```
 * @throws DplError(MODULE) naming the package and how to install it.
 */
export function loadPackage<T = unknown>(name: string): T {
  try {
    return requireFromDpl(name) as T;
  } catch (e) {
    throw new DplError(
      DplErrorCode.MODULE,
      `cannot load package ${JSON.stringify(name)} from dpl's installation (${(e as Error).message.split('\n')[0]}); ` +
        `install it where dpl is installed on every machine that runs this task (npm install ${name})`,
      { cause: e },
    );
  }
}
