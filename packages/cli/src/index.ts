/**
 * @dpl/cli: the `dpl` command. Import `main` to run it in process (tests, wrappers).
 *
 * ```ts
 * import { main } from '@dpl/cli';
 * process.exitCode = await main(['run', 'examples/quickstart.ts', '-n', '100']);
 * ```
 */
export { main, formatError, EXIT_USAGE, EXIT_FAILURE } from './cli';
export { parseResourcesFlag } from './internal/resources-flag';
export { EXIT_INTERRUPTED } from './internal/execute-pipeline';
