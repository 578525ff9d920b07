/**
 * `dpl stop`: stops the dpl daemons this user started on this machine (the records in the run
 * folder: DPL_RUN_DIR, else ~/.dpl/run), workers first, then heads, each with SIGTERM so it
 * leaves cleanly; one still running after --timeout seconds gets SIGKILL. It says what it will
 * stop before it does; `--address` narrows it to one head and its workers, `--kind` to heads
 * or workers, `--run-dir` reads another folder of records.
 */
import type { Argv, CommandModule } from 'yargs';
import { listDaemons, processStartTime } from '@dpl/client';
import { type DaemonRecord } from '../internal/daemons';
import { runDir } from '../internal/cluster-options';
import { print } from '../internal/output';
import { usageCheck } from '../internal/usage-error';

interface StopArgs {
  kind?: 'head' | 'worker';
  address?: string;
  runDir?: string;
  timeout: number;
}

/** Whether the recorded process is gone (or its PID now names another process). */
function exited(d: DaemonRecord): boolean {
  return processStartTime(d.pid) !== d.startTime;
}

async function stopOne(d: DaemonRecord, timeoutMs: number): Promise<string> {
  try {
    process.kill(d.pid, 'SIGTERM');
  } catch {
    return `${d.kind} ${d.pid} was already gone`;
  }
  const deadline = Date.now() + timeoutMs;
  while (!exited(d) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!exited(d)) {
    process.kill(d.pid, 'SIGKILL');
    return `killed ${d.kind} ${d.pid} (${d.address}): it did not stop within ${timeoutMs / 1000} s`;
  }
  return `stopped ${d.kind} ${d.pid} (${d.address})`;
}

/** One daemon, for the list of what will be stopped. */
function describeDaemon(d: DaemonRecord): string {
  return d.kind === 'head' ? `head ${d.pid} (${d.address})` : `worker ${d.pid} (${d.address}) of the head at ${d.head ?? 'unknown'}`;
}

export const stopCommand: CommandModule<object, StopArgs> = {
  command: 'stop',
  describe: 'stop the dpl heads and workers you started on this machine (all of them, or those of --address)',
  builder: (y: Argv) =>
    y
      .option('address', {
        type: 'string',
        describe: 'stop only the head at this host:port and its workers (default: every head and worker of yours here)',
      })
      .option('kind', { choices: ['head', 'worker'] as const, describe: 'stop only heads or only workers' })
      .option('run-dir', {
        type: 'string',
        describe: 'the folder of daemon records to read (env DPL_RUN_DIR; default ~/.dpl/run): the daemons started with that DPL_RUN_DIR',
      })
      .option('timeout', { type: 'number', default: 40, describe: 'seconds to wait for each to leave before SIGKILL (a worker has its --grace-period, 30 s by default, to finish and hand over)' })
      .epilog(
        'dpl head start and dpl worker start record themselves in a folder private to you (DPL_RUN_DIR, else ~/.dpl/run); ' +
          'dpl stop reads those records, so it stops only daemons you started on this machine, never another user\'s.',
      )
      .check((argv) =>
        usageCheck(() => {
          if (!Number.isFinite(argv.timeout) || argv.timeout < 0) throw new Error(`--timeout must be a number of seconds >= 0, got ${argv.timeout}`);
          if (argv.address !== undefined && !/^[^\s:]+:\d+$/.test(argv.address)) {
            throw new Error(`--address must be host:port, e.g. --address 127.0.0.1:6380, got ${JSON.stringify(argv.address)}`);
          }
        }),
      ),
  handler: async (args) => {
    const dir = args.runDir ?? runDir();
    const all = listDaemons(dir);
    const ofAddress = (d: DaemonRecord): boolean => args.address === undefined || (d.kind === 'head' ? d.address === args.address : d.head === args.address);
    const daemons = all.filter((d) => (args.kind === undefined || d.kind === args.kind) && ofAddress(d));
    const scope = args.address === undefined ? '' : ` for the head at ${args.address}`;
    if (daemons.length === 0) {
      print(`no dpl daemons of yours are running on this machine${scope} (records in ${dir})`);
      if (all.length > 0) print(`(${all.length} other${all.length === 1 ? ' is' : 's are'} running: ${all.map(describeDaemon).join(', ')})`);
      return;
    }
    // Workers first: a head stopped first would leave them retrying to reconnect.
    const order = [...daemons.filter((d) => d.kind === 'worker'), ...daemons.filter((d) => d.kind === 'head')];
    print(`stopping ${order.length} dpl daemon${order.length === 1 ? '' : 's'} of yours on this machine${scope} (records in ${dir}):`);
    for (const d of order) print(`  ${describeDaemon(d)}`);
    for (const kind of ['worker', 'head'] as const) {
      const lines = await Promise.all(daemons.filter((d) => d.kind === kind).map((d) => stopOne(d, args.timeout * 1000)));
      for (const l of lines) print(l);
    }
    const left = all.length - daemons.length;
    if (left > 0) print(`left running: ${left} other dpl daemon${left === 1 ? '' : 's'} of yours (dpl stop without --address${args.kind ? ' and --kind' : ''} stops ${left === 1 ? 'it' : 'them'})`);
  },
};
