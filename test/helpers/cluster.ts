/**
 * Real clusters for tests: `dpl head start` and `dpl worker start` as child processes on
 * loopback, ports from 0.
 */
import { connect, type ClusterStatus } from '@dpl/client';
import { startDpl, waitFor, type DplProcess } from './cli';

export interface HeadProcess {
  address: string;
  process: DplProcess;
}

/** Starts `dpl head start --port 0 …args` and waits for its address. */
export async function startHeadProcess(args: string[] = [], env?: Record<string, string | undefined>): Promise<HeadProcess> {
  const port = args.includes('--port') ? [] : ['--port', '0'];
  const dashboard = args.includes('--dashboard-port') ? [] : ['--dashboard-port', '0'];
  const process = startDpl(['head', 'start', ...port, ...dashboard, ...args], { timeoutMs: 120_000, env });
  let address = '';
  await waitFor(
    () => {
      const m = /dpl head listening on (\S+)/.exec(process.stdout);
      if (m !== null) address = m[1]!;
      return m !== null || process.child.exitCode !== null;
    },
    { timeoutMs: 15_000, what: 'the head to listen' },
  );
  if (address === '') throw new Error(`the head did not start:\n${process.stderr}`);
  return { address, process };
}

/** Starts `dpl worker start --address ADDRESS …args` (under `prefix`, e.g. prlimit, when given). */
export function startWorkerProcess(address: string, args: string[] = [], env?: Record<string, string | undefined>, prefix?: string[]): DplProcess {
  return startDpl(['worker', 'start', '--address', address, ...args], { timeoutMs: 120_000, env, prefix });
}

/** The head's status, through the SDK. */
export async function statusOf(address: string, token?: string): Promise<ClusterStatus> {
  const cluster = await connect(address, { token, timeoutMs: 2_000 });
  try {
    return await cluster.status();
  } finally {
    await cluster.close();
  }
}

/** Waits until the head lists `n` live workers, and returns the status. */
export async function waitForWorkers(address: string, n: number, token?: string, timeoutMs = 15_000): Promise<ClusterStatus> {
  let last: ClusterStatus | undefined;
  await waitFor(
    async () => {
      last = await statusOf(address, token);
      return last.workers.filter((w) => w.state === 'alive').length === n;
    },
    { timeoutMs, intervalMs: 50, what: `${n} live workers` },
  );
  return last!;
}
