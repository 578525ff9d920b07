/**
 * `dpl job list|status|logs|attach|stop`: the jobs on a head, detached ones (`dpl submit --detach`)
 * above all: their state, what their tasks print, and stopping them.
 */
import type { Argv, CommandModule } from 'yargs';
import { OutputFiles } from '@dpl/core';
import { connect, type Cluster, type JobInfo } from '@dpl/client';
import { clusterTarget, runDir, tlsOf, untilSignal, withClusterOptions, withTlsOptions, type ClusterArgs, type TlsArgs } from '../internal/cluster-options';
import { formatTable, print } from '../internal/output';

interface JobArgs extends ClusterArgs, TlsArgs {
  id?: string;
  json?: boolean;
  follow?: boolean;
  outDir?: string;
  quiet?: boolean;
}

/** Runs `f` on a connection to the head the flags name. */
async function withCluster(args: JobArgs, f: (cluster: Cluster) => Promise<void>): Promise<void> {
  const target = clusterTarget(args);
  const cluster = await connect(target.address, { token: target.token, runDir: runDir(), tls: tlsOf(args) });
  try {
    await f(cluster);
  } finally {
    await cluster.close();
  }
}

const seconds = (j: JobInfo): string => (j.startedAtMs > 0 ? `${(((j.endedAtMs ?? Date.now()) - j.startedAtMs) / 1000).toFixed(1)} s` : '-');

/** One job as lines of text. */
function describeJob(j: JobInfo): string {
  const lines = [
    `job ${j.id}: ${j.state}${j.detached ? ' (detached)' : ''}`,
    `  started ${j.startedAtMs > 0 ? new Date(j.startedAtMs).toISOString() : '-'}, ${j.endedAtMs === undefined ? 'running for' : 'ran'} ${seconds(j)}`,
    `  ${j.outputs.toLocaleString('en-US')} output batches, ${j.rows.toLocaleString('en-US')} rows${j.outDir !== undefined ? `, written under ${j.outDir}` : ''}`,
  ];
  if (j.error !== undefined) lines.push(`  error: ${j.error}`);
  return lines.join('\n');
}

const withId = (y: Argv) =>
  withTlsOptions(withClusterOptions(y), 'client').positional('id', { type: 'string', demandOption: true, describe: 'the job id (dpl job list shows them)' });

const list: CommandModule<object, JobArgs> = {
  command: 'list',
  describe: 'the jobs on the head: running ones and the last ones that ended',
  builder: (y: Argv) => withTlsOptions(withClusterOptions(y), 'client').option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' }),
  handler: (args) =>
    withCluster(args, async (cluster) => {
      const jobs = await cluster.jobs();
      if (args.json === true) return print(JSON.stringify(jobs, null, 2));
      if (jobs.length === 0) return print(`no jobs on the head at ${cluster.address}`);
      print(
        formatTable(
          ['job', 'state', 'detached', 'outputs', 'rows', 'time'],
          jobs.map((j) => [j.id, j.state, j.detached ? 'yes' : 'no', j.outputs, j.rows, seconds(j)]),
        ),
      );
    }),
};

const status: CommandModule<object, JobArgs> = {
  command: 'status <id>',
  describe: "a job's state, outputs so far and error",
  builder: (y: Argv) => withId(y).option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' }),
  handler: (args) =>
    withCluster(args, async (cluster) => {
      const j = await cluster.job(args.id!).status();
      print(args.json === true ? JSON.stringify(j, null, 2) : describeJob(j));
      if (j.state === 'failed') process.exitCode = 1;
    }),
};

const logs: CommandModule<object, JobArgs> = {
  command: 'logs <id>',
  describe: "what a job's tasks printed (the last 100 lines the head keeps); --follow goes on until it ends",
  builder: (y: Argv) => withId(y).option('follow', { alias: 'f', type: 'boolean', default: false, describe: 'print new lines as they come, until the job ends (or Ctrl-C)' }),
  handler: (args) =>
    withCluster(args, async (cluster) => {
      const lines = cluster.job(args.id!).logs({ follow: args.follow === true })[Symbol.asyncIterator]();
      // Ctrl-C ends the following, not the job.
      const stop = untilSignal().then(() => 'signal' as const);
      for (;;) {
        const next = await Promise.race([lines.next(), stop]);
        if (next === 'signal' || next.done === true) break;
        print(next.value);
      }
      await lines.return?.();
    }),
};

const stop: CommandModule<object, JobArgs> = {
  command: 'stop <id>',
  describe: 'stop a running job',
  builder: withId,
  handler: (args) =>
    withCluster(args, async (cluster) => {
      const state = await cluster.job(args.id!).stop();
      print(`job ${args.id!}: ${state}`);
    }),
};

const attach: CommandModule<object, JobArgs> = {
  command: 'attach <id>',
  describe: 'take the outputs of a detached job that holds them (dpl submit --detach without -o): written under -o, else counted; Ctrl-C leaves the rest for the next attach',
  builder: (y: Argv) =>
    withId(y)
      .option('out-dir', { alias: 'o', type: 'string', describe: 'write the batches here as parquet, named as dpl submit -o names them' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'no task output' }),
  handler: (args) =>
    withCluster(args, async (cluster) => {
      const run = await cluster.job(args.id!).attach({ onTaskOutput: args.quiet === true ? false : undefined });
      const partition = run.sinks.length > 1;
      const files = args.outDir === undefined ? undefined : new OutputFiles(args.outDir, run.jobId, { partition, oneSinkPerFolder: true });
      const counts = new Map<string, { batches: number; rows: number }>();
      const stopped = untilSignal().then(() => 'signal' as const);
      for (;;) {
        const next = await Promise.race([run.next(), stopped]);
        if (next === 'signal' || next.done === true) break;
        const b = next.value;
        const c = counts.get(b.task) ?? { batches: 0, rows: 0 };
        c.batches++;
        c.rows += b.rows;
        counts.set(b.task, c);
        await files?.write(b);
      }
      await run.cancel();
      const total = [...counts.values()].reduce((n, c) => n + c.batches, 0);
      print(`took ${total} batch${total === 1 ? '' : 'es'} of job ${run.jobId}${args.outDir === undefined ? '' : `, written under ${args.outDir}`}`);
      if (counts.size > 0) print(formatTable(['task', 'batches', 'rows'], [...counts].map(([t, c]) => [t, c.batches, c.rows])));
    }),
};

export const jobCommand: CommandModule = {
  command: 'job <command>',
  describe: 'the jobs on a head: list, status, logs, stop (detached ones above all: dpl submit --detach)',
  builder: (y: Argv) =>
    y.command(list).command(status).command(logs).command(attach).command(stop).demandCommand(1, 'name a job command: dpl job list, status, logs, attach or stop'),
  handler: () => undefined,
};
