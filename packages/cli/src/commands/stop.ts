/**
 * `dpl stop`: stops the dpl daemons started on this machine (workers first, then heads), each
 * with SIGTERM so it leaves cleanly; one still running after --timeout seconds gets SIGKILL.
 */
import type { Argv, CommandModule } from 'yargs';
import { processStartTime } from '@dpl/client';
import { runningDaemons, type DaemonRecord } from '../internal/daemons';
import { print } from '../internal/output';
import { usageCheck } from '../internal/usage-error';

interface StopArgs {
  kind?: 'head' | 'worker';
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

export const stopCommand: CommandModule<object, StopArgs> = {
  command: 'stop',
  describe: 'stop the dpl heads and workers started on this machine',
  builder: (y: Argv) =>
    y
      .option('kind', { choices: ['head', 'worker'] as const, describe: 'stop only heads or only workers' })
      .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for each to leave before SIGKILL' })
      .check((argv) =>
        usageCheck(() => {
          if (!Number.isFinite(argv.timeout) || argv.timeout < 0) throw new Error(`--timeout must be a number of seconds >= 0, got ${argv.timeout}`);
        }),
      ),
  handler: async (args) => {
    const daemons = runningDaemons().filter((d) => args.kind === undefined || d.kind === args.kind);
    if (daemons.length === 0) {
      print('no dpl daemons are running on this machine');
      return;
    }
    // Workers first: a head stopped first would leave them retrying to reconnect.
    for (const kind of ['worker', 'head'] as const) {
      const lines = await Promise.all(daemons.filter((d) => d.kind === kind).map((d) => stopOne(d, args.timeout * 1000)));
      for (const l of lines) print(l);
    }
  },
};
