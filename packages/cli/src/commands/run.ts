/**
 * `dpl run MODULE`: runs a pipeline module on this machine, with no setup.
 */
import type { Argv, CommandModule } from 'yargs';
import { LocalExecutor, type Logger } from '@dpl/core';
import { ClusterExecutor, loadPipelineModule } from '@dpl/client';
import { startHead } from '@dpl/head';
import { resolveWorkerOptions, startWorker, type Worker } from '@dpl/worker';
import type { EarlyExecutors } from '@dpl/worker/fork';
import { configureExecutor, taskOutputOf, withPipelineOptions, type PipelineArgs } from '../internal/pipeline-options';
import { createLogger, parseLogLevel } from '../internal/logger';
import { takeEarlyExecutors } from '../internal/early-executors';
import { checkResourceArgs, gpuWarning, resourcesOf, withResourceOptions, type ResourceArgs } from '../internal/resource-options';
import { printError, strayStdoutToStderr } from '../internal/output';
import { executePipeline } from '../internal/execute-pipeline';
import { usageCheck } from '../internal/usage-error';

/** Parsed `dpl run` arguments. */
export interface RunArgs extends PipelineArgs, ResourceArgs {
  logLevel: string;
  inProcess: boolean;
  fuseTasks: boolean;
}

const CAPACITY_HINT = 'lower the request, or tell dpl run this machine has it (--num-cpus, --num-gpus, --resources)';


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
      .option('in-process', {
        type: 'boolean',
        default: false,
        describe:
          'run tasks in this process (LocalExecutor) instead of an embedded head and worker: faster for tiny tasks, but a crash in a task ends the run',
      })
      .option('fuse-tasks', { type: 'boolean', default: true, describe: 'run each chain of tasks that only feed each other (same resources, retries and timeout; no batchSize after the first) as one call; --no-fuse-tasks runs every task as its own call' })
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
  // Started before the CLI loaded (see early-executors); those the worker does not take end.
  const early = takeEarlyExecutors();
  if (args.inProcess || args.info) early?.stop();
  const logger = createLogger(parseLogLevel(args.logLevel));
  const resources = resourcesOf(args);
  const gpus = gpuWarning(args);
  if (gpus !== undefined) printError(gpus);
  if (args.inProcess) {
    const mod = await loadPipelineModule(args.module);
    const executor = new LocalExecutor(mod.graph, {
      generator: mod.generator,
      maxBatches: args.maxBatches ?? mod.maxBatches,
      maxErroredBatches: args.maxErroredBatches,
      numCpus: args.numCpus,
      numGpus: args.numGpus,
      resources,
      logger,
    });
    configureExecutor(executor, args);
    // Tasks run in this process: what they print goes to stderr, not into the summary on stdout.
    const restore = strayStdoutToStderr();
    try {
      return await executePipeline(executor, args);
    } finally {
      restore();
    }
  }
  // The embedded cluster: a head and one worker with this machine's resources, on loopback,
  // running the same code path as a real cluster (tasks in executor processes).
  const loading = loadPipelineModule(args.module);
  if (args.info) {
    const loaded = await loading;
    // Describing the pipeline needs the machine's resources, not running daemons.
    const capacity = resolveWorkerOptions({ address: '127.0.0.1:0', numCpus: args.numCpus, numGpus: args.numGpus, resources }).resources;
    const described = new ClusterExecutor(loaded, { address: '127.0.0.1:0', capacity, capacityHint: CAPACITY_HINT });
    configureExecutor(described, args);
    return executePipeline(described, args);
  }
  // The embedded daemons' warnings (a job failed, a worker left) repeat what the run reports
  // itself; at the default level only their errors are shown.
  const userLevel = parseLogLevel(args.logLevel);
  const daemonLogger = userLevel === 'warn' ? createLogger('error') : logger;
  // A fresh random token (startHead makes one): other users of this machine can see the
  // loopback ports, and must not run code as this user through them.
  // The daemons start while the module bundles and loads: the worker's executors boot (a fork
  // and loading arrow each) meanwhile instead of after. The module's error, if any, is thrown
  // below, once they can be stopped.
  loading.catch(() => undefined);
  try {
    return await runEmbedded(args, { loading, early, logger, daemonLogger, resources });
  } finally {
    early?.stop();
  }
}

/** `dpl run` on a head and a worker in this process, linked in memory. */
async function runEmbedded(
  args: RunArgs,
  how: {
    loading: ReturnType<typeof loadPipelineModule>;
    early: EarlyExecutors | undefined;
    logger: Logger;
    daemonLogger: Logger;
    resources: ReturnType<typeof resourcesOf>;
  },
): Promise<number> {
  const { loading, early, logger, daemonLogger, resources } = how;
  const head = await startHead({ host: '127.0.0.1', port: 0, logger: daemonLogger, fuseTasks: args.fuseTasks });
  // Worker and client talk to the head in memory (the same messages, no loopback gRPC); the
  // worker's data server and the head's port stay up for what needs a socket.
  let worker: Worker | undefined;
  let executor: ClusterExecutor | undefined;
  try {
    worker = await startWorker({
      address: head.address,
      token: head.token,
      numCpus: args.numCpus,
      numGpus: args.numGpus,
      resources,
      logger: daemonLogger,
      headClient: head.inProcessClient(),
      earlyExecutors: early,
    });
    const loaded = await loading;
    await worker.registered();
    executor = new ClusterExecutor(loaded, {
      address: head.address,
      token: head.token,
      maxBatches: args.maxBatches,
      maxErroredBatches: args.maxErroredBatches,
      // Nothing else will join this cluster: a task that does not fit now never will.
      infeasibleTimeoutMs: 0,
      capacity: worker.options.resources,
      capacityHint: CAPACITY_HINT,
      onNotice: () => undefined,
      onTaskOutput: taskOutputOf(args),
      logger,
      headClient: head.inProcessClient(),
    });
    configureExecutor(executor, args);
    return await executePipeline(executor, args);
  } finally {
    executor?.close();
    await worker?.stop();
    await head.stop();
  }
}
