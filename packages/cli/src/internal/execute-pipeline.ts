/**
 * How `dpl run` and `dpl submit` run a configured executor: `-i` prints it; otherwise it runs,
 * writing parquet to `-o` or summarising on stdout, and stops cleanly on Ctrl-C.
 */
import type { ErroredBatch, OutputBatch, PipelineExecutor, PipelineRun } from '@dpl/core';
import type { PipelineArgs } from './pipeline-options';
import { formatTable, previewTable, print, printError } from './output';
import { Progress } from './progress';

/** The exit code after Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** Runs (or with -i describes) an executor and returns the exit code. */
export async function executePipeline(executor: PipelineExecutor, args: PipelineArgs): Promise<number> {
  if (args.info) {
    print(executor.toString().trimEnd());
    const problems = executor.problems();
    if (problems.length > 0) print(`Problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    print('Set task parameters with -s task.field=value, context with -c key=value; see --help for more.');
    return problems.length > 0 ? 1 : 0; // a run would fail: say so to scripts as well
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
  // Every sink is listed, also one that made nothing (a filter that dropped every row).
  const perTask = new Map<string, { batches: number; rows: number; first: OutputBatch | undefined }>(
    executor.graph.sinkTasks.map((t) => [t.name, { batches: 0, rows: 0, first: undefined }]),
  );
  const progress = args.quiet ? undefined : new Progress(process.stderr);
  const count = (batch: OutputBatch): void => {
    progress?.batch(batch.rows);
    const t = perTask.get(batch.task);
    if (t === undefined) perTask.set(batch.task, { batches: 1, rows: batch.rows, first: batch });
    else {
      t.first ??= batch;
      t.batches++;
      t.rows += batch.rows;
    }
  };
  progress?.start();
  try {
    let runId: string;
    let files: string[] = [];
    let errored: readonly ErroredBatch[];
    if (args.outDir !== undefined) {
      const summary = await executor.writeTo(args.outDir, {
        signal: controller.signal,
        onBatch: count,
        onRun: (run) => progress?.attach(run),
      });
      runId = summary.runId;
      files = summary.files;
      errored = summary.erroredBatches;
    } else {
      const run: PipelineRun = executor.run();
      progress?.attach(run);
      runId = run.runId;
      errored = run.erroredBatches;
      controller.signal.addEventListener('abort', () => void run.cancel(), { once: true });
      for await (const batch of run) count(batch);
    }
    progress?.stop();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const batches = [...perTask.values()].reduce((n, t) => n + t.batches, 0);
    const rows = [...perTask.values()].reduce((n, t) => n + t.rows, 0);
    const how = controller.signal.aborted ? 'stopped' : 'finished';
    print(`run ${runId} ${how} in ${seconds} s: ${batches} batches, ${rows} rows`);
    if (perTask.size > 0) {
      print(formatTable(['task', 'batches', 'rows'], [...perTask].map(([task, t]) => [task, t.batches, t.rows])));
    }
    if (errored.length > 0) {
      print(`skipped ${errored.length} batch${errored.length === 1 ? '' : 'es'} that still failed after their retries (--max-errored-batches):`);
      for (const e of errored) print(`  ${e.id} (inputs ${e.inputs.join(', ')}): ${e.message}`);
    }
    if (args.outDir !== undefined) {
      print(`wrote ${files.length} parquet file${files.length === 1 ? '' : 's'} to ${args.outDir}`);
    } else {
      for (const [task, t] of perTask) {
        print(t.first === undefined ? `\n${task} made no batches` : `\nfirst batch of ${task}:\n${previewTable(t.first.data)}`);
      }
    }
    return controller.signal.aborted ? EXIT_INTERRUPTED : 0;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSigint);
  }
}
