/**
 * The `dpl` command line: yargs with one module per command.
 */
import yargs from 'yargs';
import { isDplError, DplErrorCode, ensureError, TaskError } from '@dpl/core';
import { runCommand } from './commands/run';
import { headCommand } from './commands/head';
import { workerCommand } from './commands/worker';
import { statusCommand } from './commands/status';
import { submitCommand } from './commands/submit';
import { stopCommand } from './commands/stop';
import { jobCommand } from './commands/job';
import { printError } from './internal/output';
import { UsageError } from './internal/usage-error';
import { joinRepeatedFlags } from './internal/repeated-flags';

/** Exit code for a malformed command line. */
export const EXIT_USAGE = 2;
/** Exit code for a run or module that failed. */
export const EXIT_FAILURE = 1;


const DPL_FRAME = /node:internal|\(node:|\/packages\/(core|cli|head|worker|client|wire)\/(dist|src)\/|\/node_modules\/@dpl\/|processImmediate/;

/** Formats an error for people: one clear message; a task failure adds the task's own stack. */
export function formatError(e: unknown): string {
  const err = ensureError(e);
  if (isDplError(err, DplErrorCode.TASK_FAILED) && err instanceof TaskError && err.remoteStack) {
    // The user's frames only: not dpl's own, not Node's internals.
    const frames = err.remoteStack
      .split('\n')
      .filter((l) => l.trimStart().startsWith('at ') && !DPL_FRAME.test(l))
      .slice(0, 8);
    return `dpl: ${err.message}\n${frames.join('\n')}`;
  }
  return `dpl: ${err.message}`;
}

/**
 * Runs the CLI on `argv` (without the node and script paths) and returns the exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const parser = yargs(joinRepeatedFlags(argv))
    .scriptName('dpl')
    .usage('$0 <command> [options]\n\nStreaming batch pipelines over Arrow dataframes.')
    .command(runCommand)
    .command(headCommand)
    .command(workerCommand)
    .command(submitCommand)
    .command(statusCommand)
    .command(jobCommand)
    .command(stopCommand)
    .demandCommand(1, 'name a command, e.g. dpl run examples/quickstart.ts -n 100')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      // yargs' own messages come as msg; .check() bodies throw UsageErrors (usageCheck).
      throw err ?? new UsageError(msg);
    });
  try {
    process.exitCode = 0;
    await parser.parseAsync();
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof UsageError) {
      printError(`dpl: ${e.message}\nRun dpl --help (or dpl <command> --help) for usage.`);
      return EXIT_USAGE;
    }
    printError(formatError(e));
    return EXIT_FAILURE;
  }
}
