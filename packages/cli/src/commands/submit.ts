/**
 * `dpl submit MODULE --address HOST:PORT`: runs a pipeline module on a cluster. Results stream
 * back and are written as parquet under `-o` (or summarised on the terminal).
 */
import type { Argv, CommandModule } from 'yargs';
import { resolve } from 'node:path';
import { ClusterExecutor, type ClusterRun } from '@dpl/client';
import { createLogger, parseLogLevel } from '../internal/logger';
import { clusterTarget, runDir, tlsOf, withClusterOptions, withLogLevel, withTlsOptions, type ClusterArgs, type TlsArgs } from '../internal/cluster-options';
import { configureExecutor, taskOutputOf, withPipelineOptions, type PipelineArgs } from '../internal/pipeline-options';
import { executePipeline } from '../internal/execute-pipeline';
import { print, printError } from '../internal/output';
import { usageCheck } from '../internal/usage-error';

interface SubmitArgs extends PipelineArgs, ClusterArgs, TlsArgs {
  logLevel: string;
  infeasibleTimeoutMs?: number;
  detach?: boolean;
}

export const submitCommand: CommandModule<object, SubmitArgs> = {
  command: 'submit <module>',
  describe: 'run a pipeline module on the cluster at --address (default: your head on this machine)',
  builder: (y: Argv) =>
    withTlsOptions(withLogLevel(withClusterOptions(withPipelineOptions(y)), 'warn'), 'client')
      .option('detach', {
        type: 'boolean',
        default: false,
        describe: 'print the job id and exit: the job runs on without this client, the head writing its outputs under -o (a folder on the head\'s machine), or without -o holding them for dpl job attach; see dpl job',
      })
      .option('infeasible-timeout-ms', {
        type: 'number',
        describe: 'how long a task no live worker can fit may wait before the job fails (default 60000)',
      })
      .check((argv) =>
        usageCheck(() => {
          parseLogLevel(String(argv['log-level']));
          const t = argv['infeasible-timeout-ms'];
          if (t !== undefined && (!Number.isInteger(t) || t < 0)) {
            throw new Error(`--infeasible-timeout-ms must be an integer >= 0, got ${String(t)}`);
          }
        }),
      ),
  handler: async (args) => {
    const logger = createLogger(parseLogLevel(args.logLevel));
    const target = clusterTarget(args);
    const executor = await ClusterExecutor.load(args.module, {
      address: target.address,
      token: target.token,
      runDir: runDir(),
      tls: tlsOf(args),
      maxBatches: args.maxBatches,
      maxErroredBatches: args.maxErroredBatches,
      infeasibleTimeoutMs: args.infeasibleTimeoutMs,
      onNotice: (message) => printError(`dpl: ${message}`),
      onTaskOutput: taskOutputOf(args),
      // Relative to here: on the head's machine when it is this one (an absolute path elsewhere).
      detached: args.detach === true ? { outDir: args.outDir === undefined ? '' : resolve(args.outDir) } : undefined,
      logger,
    });
    try {
      configureExecutor(executor, args);
      if (args.detach === true && args.info !== true) {
        const run = executor.run() as ClusterRun;
        const id = await run.accepted();
        await run.cancel(); // the head keeps a detached job running without its client
        const where = args.outDir === undefined ? `holding its outputs for a client (dpl job attach ${id} -o DIR)` : `writing its outputs under ${resolve(args.outDir)}`;
        print(`job ${id} runs on the head at ${target.address} without this client, ${where}`);
        print(`  dpl job status ${id}    dpl job logs ${id} --follow    dpl job stop ${id}`);
        return;
      }
      process.exitCode = await executePipeline(executor, args);
    } finally {
      executor.close();
    }
  },
};
