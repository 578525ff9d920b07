/**
 * `dpl run MODULE`: runs a pipeline module on this machine, with no setup.
 */
import type { Argv, CommandModule } from 'yargs';
import { LocalExecutor, type OutputBatch, type PipelineRun } from '@dpl/core';
import { loadPipelineModule } from '@dpl/client';
import { configureExecutor, withPipelineOptions, type PipelineArgs } from '../internal/pipeline-options';
import { createLogger, parseLogLevel } from '../internal/logger';
import { checkResourceArgs, resourcesOf, withResourceOptions, type ResourceArgs } from '../internal/resource-options';
import { formatTable, previewTable, print, printError } from '../internal/output';
import { usageCheck } from '../internal/usage-error';

/** Parsed `dpl run` arguments. */
export interface RunArgs extends PipelineArgs, ResourceArgs {
  logLevel: string;
}

/** The exit code after Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <module>',
  describe: 'run a pipeline module on this machine (no setup needed)',
  builder: (y: Argv) =>
    withResourceOptions(withPipelineOptions(y), 'schedule against')
      .option('log-level', {
        alias: 'v',
        type: 'string',
        default: 'warn',
        describe: 'log level on stderr: trace, debug, info, warn, error or silent',
      })
      .check((argv) =>
        usageCheck(() => {
          parseLogLevel(String(argv['log-level']));
          checkResourceArgs(argv);
        }),
      ) as unknown as Argv<RunArgs>,
  handler: async (args) => {
    process.exitCode = await runPipeline(args);
  },
};

/** Runs `dpl run` and returns the exit code. */
export async function runPipeline(args: RunArgs): Promise<number> {
  const logger = createLogger(parseLogLevel(args.logLevel));
  const mod = await loadPipelineModule(args.module);
  const resources = resourcesOf(args);
  const executor = new LocalExecutor(mod.graph, {
    generator: mod.generator,
    maxBatches: args.maxBatches ?? mod.maxBatches,
    numCpus: args.numCpus,
    numGpus: args.numGpus,
    resources,
    logger,
  });
  configureExecutor(executor, args);

  if (args.info) {
    print(executor.toString().trimEnd());
    const problems = executor.problems();
    if (problems.length > 0) print(`Problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    print('Set task parameters with -s task.field=value, context with -c key=value; see --help for more.');
    return 0;
  }

  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(EXIT_INTERRUPTED);
    printError('dpl: stopping (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const started = performance.now();
  const perTask = new Map<string, { batches: number; rows: number; first: OutputBatch }>();
  const count = (batch: OutputBatch): void => {
    const t = perTask.get(batch.task);
    if (t === undefined) perTask.set(batch.task, { batches: 1, rows: batch.data.numRows, first: batch });
    else {
      t.batches++;
      t.rows += batch.data.numRows;
    }
  };
  try {
    let runId: string;
    let files: string[] = [];
    if (args.outDir !== undefined) {
      const summary = await executor.writeTo(args.outDir, { signal: controller.signal, onBatch: count });
      runId = summary.runId;
      files = summary.files;
    } else {
      const run: PipelineRun = executor.run();
      runId = run.runId;
      controller.signal.addEventListener('abort', () => void run.cancel(), { once: true });
      for await (const batch of run) count(batch);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const batches = [...perTask.values()].reduce((n, t) => n + t.batches, 0);
    const rows = [...perTask.values()].reduce((n, t) => n + t.rows, 0);
    const how = controller.signal.aborted ? 'stopped' : 'finished';
    print(`run ${runId} ${how} in ${seconds} s: ${batches} batches, ${rows} rows`);
    if (perTask.size > 0) {
      print(formatTable(['task', 'batches', 'rows'], [...perTask].map(([task, t]) => [task, t.batches, t.rows])));
    }
    if (args.outDir !== undefined) {
      print(`wrote ${files.length} parquet file${files.length === 1 ? '' : 's'} to ${args.outDir}`);
    } else {
      for (const [task, t] of perTask) print(`\nfirst batch of ${task}:\n${previewTable(t.first.data)}`);
    }
    return controller.signal.aborted ? EXIT_INTERRUPTED : 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
