/**
 * `dpl worker start`: a worker daemon, in the foreground.
 */
import type { Argv, CommandModule } from 'yargs';
import { startWorker } from '@dpl/worker';
import { createLogger, parseLogLevel } from '../internal/logger';
import { untilSignal, withClusterOptions, withLogLevel, type ClusterArgs } from '../internal/cluster-options';
import { parseResourcesFlag } from '../internal/resources-flag';
import { print } from '../internal/output';
import { usageCheck } from '../internal/usage-error';

interface WorkerStartArgs extends ClusterArgs {
  numCpus?: number;
  numGpus?: number;
  resources?: string;
  logLevel: string;
}

const workerStart: CommandModule<object, WorkerStartArgs> = {
  command: 'start',
  describe: 'start a worker that joins the head at --address (Ctrl-C stops it)',
  builder: (y: Argv) =>
    withLogLevel(withClusterOptions(y), 'info')
      .option('num-cpus', { type: 'number', describe: 'CPUs to advertise (default: all cores)' })
      .option('num-gpus', { type: 'number', describe: 'GPUs to advertise (default: what nvidia-smi lists)' })
      .option('resources', {
        type: 'string',
        describe: 'custom resources to advertise, e.g. \'{"bigdb":1}\' or bigdb=1,ssd=2',
      })
      .check((argv) =>
        usageCheck(() => {
          parseLogLevel(String(argv['log-level']));
          for (const flag of ['num-cpus', 'num-gpus'] as const) {
            const v = argv[flag];
            if (v !== undefined && (!Number.isFinite(v) || v < 0)) {
              throw new Error(`--${flag} must be a number >= 0, got ${String(v)}`);
            }
          }
          if (argv.resources !== undefined) parseResourcesFlag(argv.resources);
        }),
      ),
  handler: async (args) => {
    const logger = createLogger(parseLogLevel(args.logLevel));
    const worker = startWorker({
      address: args.address,
      token: args.token,
      numCpus: args.numCpus,
      numGpus: args.numGpus,
      resources: args.resources === undefined ? undefined : parseResourcesFlag(args.resources),
      logger,
    });
    void worker.registered().then((id) => {
      print(`dpl worker ${id} joined the head at ${args.address} with ${worker.options.resources.toString()}`);
    });
    await untilSignal();
    await worker.stop();
  },
};

export const workerCommand: CommandModule = {
  command: 'worker <command>',
  describe: 'run a worker daemon',
  builder: (y: Argv) => y.command(workerStart).demandCommand(1, 'name a worker command: dpl worker start'),
  handler: () => undefined,
};
