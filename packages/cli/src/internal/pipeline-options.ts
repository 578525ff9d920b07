/**
 * The options every command that runs a pipeline shares (`dpl run`, later `dpl submit`), and how
 * they configure an executor: the file first, then context, then config, as in dplutils.
 */
import type { Argv } from 'yargs';
import { parseAssignment, type PipelineExecutor } from '@dpl/core';
import { formatTaskOutput, type TaskOutputLine } from '@dpl/client';
import { printError } from './output';
import { usageCheck } from './usage-error';

/** Parsed pipeline options. */
export interface PipelineArgs {
  module: string;
  outDir?: string;
  setConfig: string[];
  setContext: string[];
  file?: string;
  maxBatches?: number;
  maxErroredBatches?: number;
  info: boolean;
  quiet: boolean;
  taskOutput: boolean;
}

/** Adds the MODULE positional and the pipeline options to a command. */
export function withPipelineOptions<T>(y: Argv<T>): Argv<T & PipelineArgs> {
  return y
    .positional('module', {
      type: 'string',
      describe: 'pipeline module (.ts or .js) whose default export is a PipelineGraph',
      demandOption: true,
    })
    .option('out-dir', {
      alias: 'o',
      type: 'string',
      describe: 'write output batches as parquet files here (hive task=<name>/ folders when there are several sinks)',
    })
    .option('set-config', {
      alias: 's',
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'task setting by coordinate, e.g. -s round.kwargs.decimals=2 -s round.batchSize=5 (value parsed as JSON, else text)',
    })
    .option('set-context', {
      alias: 'c',
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'context value, e.g. -c db_path=/data/db',
    })
    .option('file', {
      alias: 'f',
      type: 'string',
      describe: 'YAML file with context: and config: sections (applied before -c and -s)',
    })
    .option('max-batches', {
      alias: 'n',
      type: 'number',
      describe: 'stop after this many generator batches (default: the module\'s maxBatches, else endless)',
    })
    .option('max-errored-batches', {
      type: 'number',
      describe: 'skip up to N batches whose task still fails after its retries, and list them (default 0: the first fails the run)',
    })
    .option('quiet', {
      alias: 'q',
      type: 'boolean',
      default: false,
      describe: 'no progress on stderr (it is redrawn in place on a terminal, else a line every 10 s), and no task output',
    })
    .option('task-output', {
      type: 'boolean',
      default: true,
      describe: 'print what tasks print (console.log, console.error) on stderr as "(task=T worker=W) line"; --no-task-output leaves it out',
    })
    .option('info', {
      alias: 'i',
      type: 'boolean',
      default: false,
      describe: 'print the tasks, their settings and the context they need, then exit without running',
    })
    .check((argv) =>
      usageCheck(() => {
        const n = argv['max-batches'];
        if (n !== undefined && (!Number.isInteger(n) || n < 0)) {
          throw new Error(`-n/--max-batches must be an integer >= 0, got ${String(n)}`);
        }
        const e = argv['max-errored-batches'];
        if (e !== undefined && (!Number.isInteger(e) || e < 0)) {
          throw new Error(`--max-errored-batches must be an integer >= 0, got ${String(e)}`);
        }
      }),
    ) as unknown as Argv<T & PipelineArgs>;
}

/**
 * Applies `-f`, then each `-c`, then each `-s` to an executor.
 * @throws ConfigError for a malformed `key=value` or an unreadable YAML file.
 */
export function configureExecutor(executor: PipelineExecutor, args: PipelineArgs): void {
  if (args.file !== undefined) executor.setConfig({ fromYaml: args.file });
  for (const text of args.setContext) {
    const [key, value] = parseAssignment(text, '-c');
    executor.setContext(key, value);
  }
  for (const text of args.setConfig) {
    const [coord, value] = parseAssignment(text, '-s');
    executor.setConfig(coord, value);
  }
}

/** What a run does with its tasks' output: printed above the progress, or not asked for (-q, --no-task-output). */
export function taskOutputOf(args: PipelineArgs): ((line: TaskOutputLine) => void) | false {
  return args.quiet || !args.taskOutput ? false : (line) => printError(formatTaskOutput(line));
}
