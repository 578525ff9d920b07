/**
 * Jobs on a cluster of real processes: placement by resources, infeasible requests, fractional
 * GPUs, data between workers, workers joining mid-run, the SDK and `dpl submit`.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ClusterExecutor, connect } from '@dpl/client';
import { CHANNEL_OPTIONS, loadDplProto, type HasModuleResponse, type HeadServiceClient } from '@dpl/wire';
import clusterGraph from '../fixtures/cluster-pipeline';
import { startHead } from '@dpl/head';
import { startWorker } from '@dpl/worker';
import { column, isDplError, readParquet, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, runDpl, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);
const tempDir = useTempDirs('dpl-jobs-');
const fixture = (name: string) => join(FIXTURES, name);

async function collect(run: AsyncIterable<OutputBatch>): Promise<OutputBatch[]> {
  const out: OutputBatch[] = [];
  for await (const b of run) out.push(b);
  return out;
}

const values = (batches: OutputBatch[], name: string): unknown[] => batches.flatMap((b) => [...column(b.data, name)]);

describe('jobs on a cluster of real processes', () => {
  it('runs every bigdb task on the bigdb worker and no other; the token never reaches tasks', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: 'tok' });
    const plainA = startWorkerProcess(head.address, ['--num-cpus', '2'], { DPL_TOKEN: 'tok' });
    const plainB = startWorkerProcess(head.address, ['--num-cpus', '2'], { DPL_TOKEN: 'tok' });
    const big = startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"bigdb":1}'], { DPL_TOKEN: 'tok' });
    await waitForWorkers(head.address, 3, 'tok');
    const cluster = await connect(head.address, { token: 'tok' });
    try {
      const run = await cluster.submit(fixture('cluster-pipeline.ts'), { maxBatches: 30 });
      const out = await collect(run);
      expect(out).toHaveLength(30);
      expect(new Set(values(out, 'lookup_ppid'))).toEqual(new Set([big.child.pid]));
      const elsewhere = new Set([...values(out, 'source_ppid'), ...values(out, 'tag_ppid')]);
      for (const pid of elsewhere) expect([plainA.child.pid, plainB.child.pid, big.child.pid]).toContain(pid);
      expect(new Set(values(out, 'tag_token'))).toEqual(new Set(['']));
      expect(values(out, 'id').map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    } finally {
      await cluster.close();
    }
  });

  it('refuses a 2-GPU task on two 1-GPU workers as infeasible, naming the task and the resource', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-gpus', '1']);
    startWorkerProcess(head.address, ['--num-gpus', '1']);
    await waitForWorkers(head.address, 2);
    const notices: string[] = [];
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(fixture('gpu-pair.ts'), {
        maxBatches: 1,
        infeasibleTimeoutMs: 1_000,
        onNotice: (m) => notices.push(m),
      });
      const err = await collect(run).then(() => undefined, (e: unknown) => e);
      expect(isDplError(err, 'INFEASIBLE')).toBe(true);
      expect((err as Error).message).toMatch(/^task "pair" needs \{CPU:1, GPU:2\} but no live worker can ever fit it: GPU>=2 \(largest live worker has 1\)/);
      expect(notices[0]).toMatch(/task "pair" needs \{CPU:1, GPU:2\}; no live worker can fit it.*waiting for one to join/);
    } finally {
      await cluster.close();
    }
  });

  it('packs four quarter-GPU calls onto one GPU at once, with CUDA_VISIBLE_DEVICES set', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-gpus', '1', '--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const out = await collect(await cluster.submit(fixture('gpu-pipeline.ts'), { maxBatches: 8 }));
      expect(out).toHaveLength(8);
      expect(new Set(values(out, 'gpus'))).toEqual(new Set(['0']));
      const spans = out.map((b) => [Number(column(b.data, 'start').get(0)), Number(column(b.data, 'end').get(0))] as const);
      const peak = Math.max(...spans.map(([s]) => spans.filter(([s2, e2]) => s2 <= s && s < e2).length));
      expect(peak).toBe(4);
    } finally {
      await cluster.close();
    }
  });

  it('uses a worker that joins mid-run', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"bigdb":1}']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(fixture('cluster-pipeline.ts'), {
        maxBatches: 40,
        config: { 'source.kwargs.sleepMs': 100, 'tag.kwargs.sleepMs': 100 },
      });
      const out: OutputBatch[] = [];
      let late: ReturnType<typeof startWorkerProcess> | undefined;
      for await (const b of run) {
        out.push(b);
        if (out.length === 3) late = startWorkerProcess(head.address, ['--num-cpus', '2']);
      }
      expect(out).toHaveLength(40);
      // Tags stay next to their input (locality); the new worker takes source calls.
      expect([...values(out, 'source_ppid'), ...values(out, 'tag_ppid')]).toContain(late!.child.pid);
    } finally {
      await cluster.close();
    }
  });

  it('cancels the job when the consumer stops early, and runs two jobs at once', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"bigdb":1}']);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"bigdb":1}']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const endless = await cluster.submit(fixture('cluster-pipeline.ts'));
      let n = 0;
      for await (const _ of endless) if (++n === 5) break;
      await waitFor(async () => (await statusOf(head.address)).jobs.some((j) => j.id === endless.jobId && j.state === 'cancelled'), {
        what: 'the job to be cancelled',
      });
      const [a, b] = await Promise.all([
        cluster.submit(fixture('cluster-pipeline.ts'), { maxBatches: 12 }),
        cluster.submit(fixture('cluster-pipeline.ts'), { maxBatches: 7 }),
      ]);
      const [outA, outB] = await Promise.all([collect(a), collect(b)]);
      expect([outA.length, outB.length]).toEqual([12, 7]);
      expect(new Set(values(outA, 'run_id'))).toEqual(new Set([a.runId]));
      const jobs = (await statusOf(head.address)).jobs;
      expect(jobs.filter((j) => j.state === 'finished').map((j) => j.id).sort()).toEqual([a.jobId, b.jobId].sort());
    } finally {
      await cluster.close();
    }
  });

  it("runs a module's generator on a worker, in order, and stops at maxBatches", async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const all = await collect(await cluster.submit(fixture('generator-pipeline.ts')));
      expect(values(all, 'n').map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => i)); // module maxBatches 5
      expect(values(all, 'doubled').map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => 2 * i));
      const three = await collect(await cluster.submit(fixture('generator-pipeline.ts'), { maxBatches: 3 }));
      expect(three.map((b) => b.data.numRows)).toEqual([3, 3, 3]);
      // Counted from the bytes' record batch headers, before (and without) decoding them.
      expect(three.map((b) => b.rows)).toEqual([3, 3, 3]);
      expect(JSON.parse(JSON.stringify(three[0]))).toEqual({ task: three[0]!.task, id: three[0]!.id, rows: 3 });
      const failing = await cluster.submit(fixture('generator-throws.ts'));
      const got: number[] = [];
      const err = await (async () => {
        for await (const b of failing) got.push(Number(column(b.data, 'n').get(0)));
      })().then(() => undefined, (e: unknown) => e);
      expect((err as Error).message).toMatch(/^the module's generator failed: the generator threw: sensor offline/);
    } finally {
      await cluster.close();
    }
  });

  it('runs a graph object with ClusterExecutor, the LocalExecutor surface', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"bigdb":1}']);
    await waitForWorkers(head.address, 1);
    const executor = new ClusterExecutor(clusterGraph, { address: head.address, maxBatches: 6 });
    try {
      executor.setConfig('tag.kwargs.sleepMs', 1);
      const dir = await tempDir();
      const summary = await executor.writeTo(dir);
      expect(summary.batches).toBe(6);
      const files = readdirSync(dir).filter((f) => f.endsWith('.parquet'));
      expect(files).toHaveLength(6);
      // Written from the IPC bytes the batches arrived as: the same rows and columns.
      const tables = files.map((f) => readParquet(readFileSync(join(dir, f))));
      expect(tables.reduce((n, t) => n + t.numRows, 0)).toBe(summary.rows);
      expect(summary.rows).toBeGreaterThan(0);
      for (const t of tables) expect(t.schema.fields.map((f) => f.name)).toContain('tag_ppid');
      expect(() => executor.setConfig('nope.kwargs.x', 1).validate()).toThrow(/no task named "nope"/);
    } finally {
      executor.close();
    }
  });

  it('uploads the module again and starts the job once more when the head evicted it after the check', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const { HeadService } = loadDplProto();
    const real = new HeadService(head.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    // The race, made certain: the head answers "present" for a module it no longer has (as when
    // it evicts the module between the client's check and the job's start).
    let lies = 1;
    let checks = 0;
    const racing = Object.create(real) as HeadServiceClient;
    (racing as unknown as { HasModule: unknown }).HasModule = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: HasModuleResponse) => void) => {
      checks++;
      if (lies-- > 0) cb(null, { present: true, max_bytes: String(64 << 20) });
      else real.HasModule(req as { hash: string }, md, opts, cb);
    };
    const executor = await ClusterExecutor.load(fixture('generator-pipeline.ts'), { address: head.address, headClient: racing, maxBatches: 2 });
    try {
      const out = await collect(executor.run());
      expect(out.map((b) => b.rows)).toEqual([3, 3]);
      expect(checks).toBe(2);
      // A head that keeps saying "present" for a module it never had: the refusal stands, as the head worded it.
      lies = 10;
      checks = 0;
      const never = await ClusterExecutor.load(fixture('cluster-pipeline.ts'), { address: head.address, headClient: racing, maxBatches: 2 });
      await expect(collect(never.run())).rejects.toThrow(/^module [0-9a-f]+ was not uploaded to the head; upload it first$/);
      expect(checks).toBe(2); // checked again once, found "present", gave up
    } finally {
      executor.close();
      real.close();
    }
  });

  it('dpl submit writes parquet and reports the run', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const dir = await tempDir();
    const r = await runDpl(['submit', 'examples/quickstart.ts', '--address', head.address, '-n', '50', '-o', dir, '-s', 'round.batchSize=25']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/finished in .* s: 2 batches, 50 rows/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.parquet'))).toHaveLength(2);
  });
});

describe('the data plane (daemons in this process, real gRPC and executor processes)', () => {
  it('moves intermediate batches worker to worker; the head fetches only the small outputs', async () => {
    const head = await startHead({ port: 0 });
    const { token } = head; // generated by the head
    const maker = await startWorker({ address: head.address, token, numCpus: 1, resources: { maker: 1 } });
    const shrinker = await startWorker({ address: head.address, token, numCpus: 1, resources: { shrinker: 1 } });
    const cluster = await connect(head.address, { token });
    try {
      await Promise.all([maker.registered(), shrinker.registered()]);
      const out = await collect(await cluster.submit(fixture('big-intermediate.ts'), { maxBatches: 4 }));
      expect(out.map((b) => Number(column(b.data, 'rows').get(0)))).toEqual([262_144, 262_144, 262_144, 262_144]);
      expect(shrinker.bytesFetched).toBeGreaterThanOrEqual(4 * 2 * 1024 * 1024);
      expect(maker.bytesServed).toBe(shrinker.bytesFetched);
      expect(head.bytesFetched).toBeLessThan(4 * 4096);
      await waitFor(() => maker.store.size === 0 && shrinker.store.size === 0, { what: 'objects to be released' });
    } finally {
      await cluster.close();
      await Promise.all([maker.stop(), shrinker.stop()]);
      await head.stop();
    }
  });
});
