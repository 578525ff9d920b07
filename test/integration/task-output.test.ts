/**
 * What tasks print on a cluster reaches the job's client, tagged with task and worker, bounded:
 * real head and worker processes, `dpl submit` and the SDK.
 */
import { connect, tokenFor, type Cluster, type TaskOutputLine } from '@dpl/client';
import { startHead } from '@dpl/head';
import { startWorker } from '@dpl/worker';
import { tokenMetadata } from '@dpl/wire';
import { dashboardAddress } from '../helpers/metrics';
import { FIXTURES, killDplProcesses, runDpl } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers, type HeadProcess } from '../helpers/cluster';
import { join } from 'node:path';

afterEach(killDplProcesses);

const CHATTY = join(FIXTURES, 'chatty.ts');

/** A head with one 1-CPU worker, and the SDK connected to it for `fn`. */
async function withCluster(fn: (cluster: Cluster, head: HeadProcess) => Promise<void>): Promise<void> {
  const head = await startHeadProcess();
  startWorkerProcess(head.address, ['--num-cpus', '1']);
  await waitForWorkers(head.address, 1);
  const cluster = await connect(head.address);
  try {
    await fn(cluster, head);
  } finally {
    await cluster.close();
  }
}

describe('task output on a cluster', () => {
  it('reaches dpl submit on stderr as (task=… worker=…) lines, and the worker tags its own copy', async () => {
    const head = await startHeadProcess();
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1']);
    const [w] = (await waitForWorkers(head.address, 1)).workers;
    const r = await runDpl(['submit', CHATTY, '--address', head.address, '-n', '3'], { timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    for (const id of [0, 1, 2]) {
      expect(r.stderr).toContain(`(task=talk worker=${w!.id}) hello from batch ${id}\n`);
      expect(r.stderr).toContain(`(task=talk worker=${w!.id}) careful with batch ${id}\n`);
      // Written to fd 1 directly, as native code does: forwarded all the same.
      expect(r.stderr).toContain(`(task=talk worker=${w!.id}) raw bytes from batch ${id}\n`);
    }
    expect(r.stdout).not.toContain('hello from batch');
    const runId = /^run (\S+) finished/m.exec(r.stdout)![1]!;
    expect(worker.stdout + worker.stderr).toContain(`(task=talk job=${runId} call=talk#0) hello from batch 0`);

    // -q and --no-task-output leave it out.
    for (const flag of ['-q', '--no-task-output']) {
      const quiet = await runDpl(['submit', CHATTY, '--address', head.address, '-n', '1', flag], { timeoutMs: 60_000 });
      expect(quiet.code).toBe(0);
      expect(quiet.stderr).not.toContain('hello from batch');
    }
  });

  it('reaches the SDK per line with its job, task, worker, call and stream, and the dashboard keeps the last lines', () =>
    withCluster(async (cluster, head) => {
      const lines: TaskOutputLine[] = [];
      const run = await cluster.submit(CHATTY, { maxBatches: 2, onTaskOutput: (l) => lines.push(l) });
      for await (const _ of run) {
        // drain
      }
      const [w] = (await cluster.status()).workers;
      const console = lines.filter((l) => !l.text.startsWith('raw'));
      expect(console).toEqual(
        [0, 1].flatMap((id) => [
          { jobId: run.jobId, task: 'talk', worker: w!.id, callId: `talk#${id}`, stream: 'stdout', text: `hello from batch ${id}` },
          { jobId: run.jobId, task: 'talk', worker: w!.id, callId: `talk#${id}`, stream: 'stderr', text: `careful with batch ${id}` },
        ]),
      );
      const token = tokenFor(head.address, undefined);
      const d = (await (await fetch(`http://${dashboardAddress(head.process.stdout)}/api/dashboard`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        jobs: { id: string; output: string[] }[];
      };
      expect(d.jobs.find((j) => j.id === run.jobId)!.output).toEqual(expect.arrayContaining([`(task=talk worker=${w!.id}) hello from batch 1`]));
    }));

  it('is bounded: a task printing 30 MB sends about a megabyte and says how much it left out', () =>
    withCluster(async (cluster) => {
      const printed = 300_000; // lines of 100 characters
      const lines: TaskOutputLine[] = [];
      const run = await cluster.submit(CHATTY, { maxBatches: 1, config: { 'talk.kwargs.flood': printed }, onTaskOutput: (l) => lines.push(l) });
      for await (const _ of run) {
        // drain
      }
      const kept = lines.filter((l) => l.dropped === undefined);
      const dropped = lines.filter((l) => l.dropped !== undefined).reduce((n, l) => n + l.dropped!.lines, 0);
      // Every line is either delivered or counted, none twice.
      expect(kept.length + dropped).toBe(printed);
      expect(kept.reduce((n, l) => n + l.text.length + 1, 0)).toBeLessThan(2 * 1024 * 1024);
      expect(new Set(kept.map((l) => l.text)).size).toBe(kept.length);
      // Said in one or more notices, as the rate limit drops lines (the first may be a few bytes).
      expect(lines.find((l) => l.dropped !== undefined)!.text).toMatch(/^… [\d,]+ lines? \([\d.]+ (B|KiB|MiB)\) of task output left out: /);
    }));
});

describe('task output of dpl run --in-process', () => {
  it('reaches a follower that fell behind without the head queueing it all: what it missed is counted and said', async () => {
    // The head in this process, its follower linked in memory (whose buffer is small and exact);
    // a worker (its executors are processes) and the job's own client over gRPC.
    const head = await startHead({ host: '127.0.0.1', port: 0 });
    const worker = await startWorker({ address: head.address, token: head.token, resources: { CPU: 1 } });
    try {
      await worker.registered();
      const cluster = await connect(head.address, { token: head.token });
      // Three console lines per call (a raw write to fd 1 may come after its call's answer); the
      // first call waits, so that the follower is there before any line.
      const run = await cluster.submit(CHATTY, { maxBatches: 60, onTaskOutput: false, config: { 'talk.kwargs.flood': 3, 'talk.kwargs.pauseMs': 300 } });
      const jobId = await run.accepted();
      const follower = head.inProcessClient().JobLogs({ job_id: jobId, follow: true }, tokenMetadata(head.token));
      follower.pause(); // a reader that does not read (a paused `| less`)
      const got: string[] = [];
      follower.on('data', (m: { lines: string[] }) => got.push(...m.lines));
      const ended = new Promise((resolve) => follower.on('end', resolve));
      for await (const b of run) void b; // the job runs to its end meanwhile
      await cluster.close();
      follower.resume();
      await ended;
      const printed = 60 * 3;
      const tagged = got.filter((l) => /^\(task=talk worker=\S+\) /.test(l));
      const notices = got.filter((l) => /^\(dpl\) \d+ lines? of job \S+ left out here: this reader fell behind/.test(l));
      expect(notices).toHaveLength(1);
      const missed = Number(/^\(dpl\) (\d+)/.exec(notices[0]!)![1]);
      expect(missed).toBeGreaterThan(0);
      expect(tagged.length + missed).toBe(printed);
      expect(tagged.length).toBeLessThan(printed / 2);
    } finally {
      await worker.stop();
      await head.stop();
    }
  });

  it('goes to stderr, not into the summary on stdout (console and process.stdout; a raw write to fd 1 cannot be caught)', async () => {
    const r = await runDpl(['run', join(FIXTURES, 'chatty.ts'), '-n', '2', '--in-process', '-q']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/hello from batch/);
    expect(r.stderr).toMatch(/^hello from batch 0$/m);
    expect(r.stderr).toMatch(/^careful with batch 1$/m);
    expect(r.stdout).toMatch(/^talk\s+2\s+2$/m);
  });
});
