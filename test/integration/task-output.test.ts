/**
 * What tasks print on a cluster reaches the job's client, tagged with task and worker, bounded:
 * real head and worker processes, `dpl submit` and the SDK.
 */
import { connect, tokenFor, type Cluster, type TaskOutputLine } from '@dpl/client';
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
  it('goes to stderr, not into the summary on stdout (console and process.stdout; a raw write to fd 1 cannot be caught)', async () => {
    const r = await runDpl(['run', join(FIXTURES, 'chatty.ts'), '-n', '2', '--in-process', '-q']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/hello from batch/);
    expect(r.stderr).toMatch(/^hello from batch 0$/m);
    expect(r.stderr).toMatch(/^careful with batch 1$/m);
    expect(r.stdout).toMatch(/^talk\s+2\s+2$/m);
  });
});
