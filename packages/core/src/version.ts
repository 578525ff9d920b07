/**
 * dpl's version, from @dpl/core's package.json (a `require`, so that a bundle of dpl carries it).
 */

/** The version every dpl process reports (head status, worker registration, `dpl --version`). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const DPL_VERSION: string = (require('../package.json') as { version: string }).version;
