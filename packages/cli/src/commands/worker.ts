/**
 * `dpl worker start`: a worker daemon, in the foreground.
 */
import type { Argv, CommandModule } from 'yargs';
import { startWorker } from '@dpl/worker';
import { connect, type Cluster, type WorkerInfo } from '@dpl/client';
import type { ResourceMap } from '@dpl/core';
import { createLogger, parseLogLevel } from '../internal/logger';
import { clusterTarget, runDir, tlsOf, untilSignal, withClusterOptions, withLogLevel, withTlsOptions, type ClusterArgs, type TlsArgs } from '../internal/cluster-options';
import { checkResourceArgs, gpuWarning, resourcesOf, withResourceOptions, type ResourceArgs } from '../internal/resource-options';
import { print, printError } from '../internal/output';
import { recordDaemon } from '../internal/daemons';
import { usageCheck } from '../internal/usage-error';

interface WorkerStartArgs extends ClusterArgs, ResourceArgs, TlsArgs {
  logLevel: string;
  host?: string;
  executorMemory?: number;
  objectStoreMemory?: number;
  dataPort?: number;
  spillDir?: string;
  shmDir?: string;
  connectTimeout?: number;
  gracePeriod?: number;
}

const workerStart: CommandModule<object, WorkerStartArgs> = {
  command: 'start',
  describe: 'start a worker that joins the head at --address (Ctrl-C stops it)',
  builder: (y: Argv) =>
    withResourceOptions(withTlsOptions(withLogLevel(withClusterOptions(y), 'info'), 'daemon'), 'advertise')
      .option('host', {
        type: 'string',
        describe: 'address of this worker that peers fetch data from (default: 127.0.0.1 for a head on loopback, else the first external IPv4)',
      })
      .option('data-port', {
        type: 'number',
        describe: 'port of the data server peers fetch task outputs from (default: a free one; fix it for containers and firewalls)',
      })
      .option('object-store-memory', {
        type: 'number',
        describe: 'MiB of task outputs kept in memory; past it the oldest spill to --spill-dir (default: 30% of this machine\'s memory)',
      })
      .option('spill-dir', {
        type: 'string',
        describe: 'where task outputs spill past --object-store-memory (default: a new folder in the OS temporary directory)',
      })
      .option('shm-dir', {
        type: 'string',
        describe: "RAM-backed folder where executors leave large task outputs for the worker to pass on without copying; 'none' sends them through the executors' sockets (default: /dev/shm when writable)",
      })
      .option('grace-period', {
        type: 'number',
        default: 30,
        describe: 'seconds a leaving worker (SIGTERM, Ctrl-C, dpl worker drain --leave) has to finish its running calls and hand over what only it holds before it exits anyway; a second signal exits at once',
      })
      .option('connect-timeout', {
        type: 'number',
        default: 60,
        describe: 'seconds to keep trying to reach the head (at start or after losing it) before giving up with exit code 1; 0 tries forever',
      })
      .option('executor-memory', {
        type: 'number',
        describe: 'heap limit of each executor process in MiB; a task needing more fails (default: Node\'s own)',
      })
      .check((argv) =>
      usageCheck(() => {
        parseLogLevel(String(argv['log-level']));
        checkResourceArgs(argv);
        const store = argv['object-store-memory'];
        if (store !== undefined && (!Number.isFinite(store) || store < 0)) {
          throw new Error(`--object-store-memory must be a number of MiB >= 0, got ${String(store)}`);
        }
        const grace = argv['grace-period'];
        if (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0) {
          throw new Error(`--grace-period must be a number of seconds >= 0, got ${String(grace)}`);
        }
        const wait = argv['connect-timeout'];
        if (typeof wait !== 'number' || !Number.isFinite(wait) || wait < 0) {
          throw new Error(`--connect-timeout must be a number of seconds >= 0 (0: try forever), got ${String(wait)}`);
        }
        const mem = argv['executor-memory'];
        if (mem !== undefined && (!Number.isInteger(mem) || mem < 32)) {
          throw new Error(`--executor-memory must be a whole number of MiB >= 32, got ${String(mem)}`);
        }
      }),
    ),
  handler: async (args) => {
    const logger = createLogger(parseLogLevel(args.logLevel));
    const target = clusterTarget(args);
    const gpus = gpuWarning(args);
    if (gpus !== undefined) printError(gpus);
    const worker = await startWorker({
      address: target.address,
      token: target.token,
      tls: tlsOf(args),
      numCpus: args.numCpus,
      numGpus: args.numGpus,
      resources: resourcesOf(args),
      host: args.host,
      executorMemoryMb: args.executorMemory,
      objectStoreMemoryMb: args.objectStoreMemory,
      dataPort: args.dataPort,
      spillDir: args.spillDir,
      sharedMemoryDir: args.shmDir === 'none' ? false : args.shmDir,
      connectTimeoutMs: (args.connectTimeout ?? 60) * 1000,
      leaveGraceMs: (args.gracePeriod ?? 30) * 1000,
      logger,
    });
    const forget = recordDaemon({ kind: 'worker', address: worker.dataAddress, head: target.address });
    worker.registered().then(
      (id) => print(`dpl worker ${id} joined the head at ${target.address} with ${worker.options.resources.toString()}`),
      () => undefined, // closed() says why
    );
    // Until a signal, or until the worker stops by itself: it gave up on its head (it has
    // logged why: exit 1), or left when asked to (dpl worker drain --leave).
    const first = await Promise.race([untilSignal(), worker.closed().then(() => 'left' as const, () => 'gave up' as const)]);
    if (first === 'left') print(`dpl worker left the head at ${target.address} (asked to: dpl worker drain --leave)`);
    else if (first !== 'gave up') {
      const id = worker.id;
      if (id === undefined) {
        print(`dpl worker stopping (it had not joined the head at ${target.address})`);
        await worker.stop();
      } else {
        const again = first === 'SIGINT' ? 'Ctrl-C' : first;
        const grace = args.gracePeriod ?? 30;
        print(`dpl worker ${id} leaving the head at ${target.address}: finishing its running calls and handing over what only it holds (up to ${grace} s; ${again} again stops at once)`);
        const outcome = await Promise.race([worker.leave({ graceMs: grace * 1000 }), untilSignal().then(() => undefined)]);
        if (outcome === undefined) {
          print(`dpl worker ${id} stopping at once (what it held is recomputed from lineage)`);
          await worker.stop();
        } else if (outcome.handedOff) {
          print(`dpl worker ${id} left: ${outcome.moved} object${outcome.moved === 1 ? '' : 's'} handed over, ${outcome.handedBack} queued call${outcome.handedBack === 1 ? '' : 's'} handed back`);
        } else {
          print(`dpl worker ${id} left after its grace period of ${grace} s (what it still held is recomputed from lineage)`);
        }
      }
    }
    await worker.stop();
    forget();
    if (first === 'gave up') process.exitCode = 1;
  },
};

interface WorkerChangeArgs extends ClusterArgs, ResourceArgs, TlsArgs {
  worker: string;
  undo: boolean;
  leave?: boolean;
}

/** Runs one change on the cluster and prints the worker as it is after it. */
async function changeWorker(args: WorkerChangeArgs, change: (cluster: Cluster) => Promise<WorkerInfo>): Promise<void> {
  const target = clusterTarget(args);
  const cluster = await connect(target.address, { token: target.token, runDir: runDir(), tls: tlsOf(args) });
  try {
    const w = await change(cluster);
    const res = Object.entries(w.resources.total)
      .map(([k, v]) => `${k} ${w.resources.available[k] ?? 0}/${v}`)
      .join(', ');
    print(`worker ${w.id}: ${w.state}; resources (free/total): ${res || '-'}`);
  } finally {
    await cluster.close();
  }
}

const withWorkerId = (y: Argv) =>
  withTlsOptions(withClusterOptions(y), 'client').option('worker', {
    type: 'string',
    demandOption: 'name the worker with --worker ID (see dpl status)',
    describe: 'the worker id, as dpl status lists it',
  });

const workerUpdate: CommandModule<object, WorkerChangeArgs> = {
  command: 'update',
  describe: 'change what a running worker advertises, e.g. --resources \'{"bigdb":0}\' (running tasks keep theirs)',
  builder: (y: Argv) =>
    withResourceOptions(withWorkerId(y), 'advertise from now on').check((argv) =>
      usageCheck(() => {
        checkResourceArgs(argv);
        if (argv.resources === undefined && argv['num-cpus'] === undefined && argv['num-gpus'] === undefined) {
          throw new Error('say what to change: --resources \'{"bigdb":0}\', --num-cpus N or --num-gpus N');
        }
      }),
    ) as unknown as Argv<WorkerChangeArgs>,
  handler: async (args) => {
    const changes: ResourceMap = { ...(resourcesOf(args) ?? {}) };
    if (args.numCpus !== undefined) changes.CPU = args.numCpus;
    if (args.numGpus !== undefined) changes.GPU = args.numGpus;
    await changeWorker(args, (c) => c.updateWorker(args.worker, changes));
  },
};

const workerDrain: CommandModule<object, WorkerChangeArgs> = {
  command: 'drain',
  describe: 'stop new placements on a worker and let its running tasks finish (--undo takes it back; --leave makes it leave)',
  builder: (y: Argv) =>
    withWorkerId(y)
      .option('undo', {
        type: 'boolean',
        default: false,
        describe: 'place tasks on the worker again',
      })
      .option('leave', {
        type: 'boolean',
        default: false,
        describe: 'then the worker leaves, as on SIGTERM: it finishes its running calls, other workers take over what only it holds, and it exits 0',
      })
      .check((argv) =>
        usageCheck(() => {
          if (argv.undo && argv.leave) throw new Error('--undo and --leave do opposite things; give one');
        }),
      ),
  handler: async (args) => {
    await changeWorker(args, (c) => c.drainWorker(args.worker, !args.undo, { leave: args.leave === true }));
  },
};

export const workerCommand: CommandModule = {
  command: 'worker <command>',
  describe: 'run a worker daemon, or change a running one',
  builder: (y: Argv) =>
    y
      .command(workerStart)
      .command(workerUpdate)
      .command(workerDrain)
      .demandCommand(1, 'name a worker command: dpl worker start, update or drain'),
  handler: () => undefined,
};
