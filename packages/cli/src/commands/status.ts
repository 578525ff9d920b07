/**
 * `dpl status`: the cluster's workers with their resources (free/total), and jobs.
 */
import type { Argv, CommandModule } from 'yargs';
import { connect, type ClusterStatus } from '@dpl/client';
import { clusterTarget, runDir, tlsOf, withClusterOptions, withTlsOptions, type ClusterArgs, type TlsArgs } from '../internal/cluster-options';
import { formatTable, print } from '../internal/output';

interface StatusArgs extends ClusterArgs, TlsArgs {
  json: boolean;
}

/** `free/total` for every resource a worker has. */
function resourceText(total: Record<string, number>, available: Record<string, number>): string {
  return Object.keys(total)
    .map((k) => `${k} ${available[k] ?? 0}/${total[k]}`)
    .join(', ');
}

/** The status as text tables. */
export function formatStatus(s: ClusterStatus): string {
  const live = s.workers.filter((w) => w.state !== 'dead');
  const lines = [`dpl ${s.version}: ${live.length} worker${live.length === 1 ? '' : 's'}, ${s.jobs.length} job${s.jobs.length === 1 ? '' : 's'}`];
  if (s.workers.length > 0) {
    const now = Date.now();
    lines.push(
      formatTable(
        ['worker', 'state', 'host', 'resources (free/total)', 'last heartbeat'],
        s.workers.map((w) => [
          w.id,
          w.state,
          w.hostname,
          resourceText(w.resources.total, w.resources.available) || '-',
          w.state === 'dead' ? '-' : `${((now - w.lastHeartbeatMs) / 1000).toFixed(1)} s ago`,
        ]),
      ),
    );
  }
  if (s.jobs.length > 0) lines.push(formatTable(['job', 'state'], s.jobs.map((j) => [j.id, j.state])));
  return lines.join('\n');
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'show the workers, their resources (free/total) and the jobs',
  builder: (y: Argv) =>
    withTlsOptions(withClusterOptions(y), 'client').option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' }),
  handler: async (args) => {
    const target = clusterTarget(args);
    const cluster = await connect(target.address, { token: target.token, runDir: runDir(), tls: tlsOf(args) });
    try {
      const status = await cluster.status();
      print(args.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    } finally {
      await cluster.close();
    }
  },
};
