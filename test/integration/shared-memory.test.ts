/**
 * Large task outputs in shared memory, with real processes: an executor leaves a 2 MiB output
 * as a file in the worker's folder under --shm-dir, the next task on that worker reads it from
 * there, the file goes when the head releases the object, and a worker killed with SIGKILL
 * leaves a folder that the next worker started on the machine removes. In the embedded cluster
 * (`dpl run`), a sink's large output reaches the client from its file, and executors that can
 * fill every core collect garbage on one thread each.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ClusterExecutor, connect } from '@dpl/client';
import { column, type OutputBatch } from '@dpl/core';
import { startHead, type Head } from '@dpl/head';
import { startWorker, type WorkerOptions } from '@dpl/worker';
import { FIXTURES, killDplProcesses, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);
const tempDir = useTempDirs('dpl-shm-');

/** The store folders (`dpl-objects-<pid>-XXXXXX`) under `dir`, and the object files in them. */
const folders = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('dpl-objects-'));
const files = (dir: string): string[] => folders(dir).flatMap((f) => readdirSync(join(dir, f)));

async function runBig(address: string): Promise<{ rows: number[] }> {
  const cluster = await connect(address);
  try {
    const run = await cluster.submit(join(FIXTURES, 'big-intermediate.ts'), { maxBatches: 6 });
    const out: OutputBatch[] = [];
    for await (const b of run) out.push(b);
    return { rows: out.map((b) => Number(column(b.data, 'rows').get(0))) };
  } finally {
    await cluster.close();
  }
}

describe('shared-memory outputs', () => {
  it('pass a large output to the next task on the worker through a file, removed once released', async () => {
    const shm = await tempDir();
    const head = await startHeadProcess();
    const worker = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1,"shrinker":1}', '--shm-dir', shm]);
    await waitForWorkers(head.address, 1);
    expect(folders(shm)).toEqual([expect.stringMatching(new RegExp(`^dpl-objects-${worker.child.pid}-`))]);
    // Watch the folder while the job runs: maker's 2 MiB outputs appear there as files.
    let sawFile = false;
    const watch = setInterval(() => (sawFile ||= files(shm).length > 0), 5);
    try {
      const { rows } = await runBig(head.address);
      expect(rows).toEqual(Array(6).fill(256 * 1024));
    } finally {
      clearInterval(watch);
    }
    expect(sawFile).toBe(true);
    await waitFor(() => files(shm).length === 0, { timeoutMs: 5_000, what: 'the object files to be removed' });

    // SIGKILL: no close() runs, the folder stays; the next worker on this machine removes it.
    const left = folders(shm)[0]!;
    worker.child.kill('SIGKILL');
    await worker.exited;
    expect(existsSync(join(shm, left))).toBe(true);
    const next = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1,"shrinker":1}', '--shm-dir', shm]);
    await waitFor(() => folders(shm).some((f) => f.startsWith(`dpl-objects-${next.child.pid}-`)), { what: "the new worker's folder" });
    expect(existsSync(join(shm, left))).toBe(false);
    expect((await runBig(head.address)).rows).toEqual(Array(6).fill(256 * 1024));
  });

  it('removes the file an executor killed while writing left behind, at once, while the worker runs on', async () => {
    const shm = await tempDir();
    const head = await startHeadProcess();
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1', '--shm-dir', shm]);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'killed-while-writing.ts'), { maxBatches: 1, config: { 'stuck.kwargs.shmDir': shm } });
      let sawStray = false;
      const watch = setInterval(() => (sawStray ||= files(shm).some((f) => f.endsWith('-999999.arrow'))), 5);
      try {
        await expect((async () => { for await (const b of run) void b; })()).rejects.toThrow(/ran longer than its timeoutMs of 500 ms/);
      } finally {
        clearInterval(watch);
      }
      expect(sawStray).toBe(true);
      await waitFor(() => files(shm).length === 0, { timeoutMs: 5_000, what: 'the unfinished file to be removed' });
      expect(worker.child.exitCode).toBeNull();
    } finally {
      await cluster.close();
    }
  });

  it('go through the executor socket when the shared folder is full, with the same results', async () => {
    // A 1 MiB tmpfs (as root; a container's /dev/shm is often 64 MiB): every 2 MiB output is refused.
    const shm = await tempDir();
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', shm], { stdio: 'pipe' });
    } catch (e) {
      console.warn(`full shared-memory test skipped: cannot mount a tmpfs (${String((e as Error).message).split('\n')[0]})`);
      return;
    }
    try {
      const head = await startHeadProcess();
      startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1,"shrinker":1}', '--shm-dir', shm]);
      await waitForWorkers(head.address, 1);
      expect((await runBig(head.address)).rows).toEqual(Array(6).fill(256 * 1024));
      expect(files(shm)).toEqual([]);
      await killDplProcesses();
    } finally {
      execFileSync('umount', [shm]);
    }
  });

  it('are sent through the executor socket with --shm-dir none, with the same results', async () => {
    const head = await startHeadProcess();
    const worker = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1,"shrinker":1}', '--shm-dir', 'none']);
    await waitForWorkers(head.address, 1);
    expect((await runBig(head.address)).rows).toEqual(Array(6).fill(256 * 1024));
    // No folder of this worker in the default place either.
    const mine = `dpl-objects-${worker.child.pid}-`;
    expect(existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((n) => n.startsWith(mine)) : []).toEqual([]);
  });
});

/**
 * Runs `fixture` for `maxBatches` batches in an embedded cluster as `dpl run` makes it (head,
 * worker and client linked in memory); `after` reads the head before it stops.
 */
async function embeddedRun(fixture: string, worker: Partial<WorkerOptions>, maxBatches: number, after?: (head: Head) => void): Promise<OutputBatch[]> {
  const head = await startHead({ host: '127.0.0.1', port: 0 });
  const w = await startWorker({ address: head.address, token: head.token, headClient: head.inProcessClient(), ...worker });
  try {
    await w.registered();
    const executor = await ClusterExecutor.load(join(FIXTURES, fixture), { address: head.address, token: head.token, maxBatches, headClient: head.inProcessClient() });
    const out: OutputBatch[] = [];
    for await (const b of executor.run()) out.push(b);
    executor.close();
    after?.(head);
    return out;
  } finally {
    await w.stop();
    await head.stop();
  }
}

describe('the embedded cluster (dpl run: head, worker and client in one process)', () => {
  it("hands a sink's output to the client from its shared-memory file, not through the reply", async () => {
    const shm = await tempDir();
    let sawFile = false;
    let fetched = 0;
    const watch = setInterval(() => (sawFile ||= files(shm).length > 0), 2);
    try {
      const out = await embeddedRun('large-sink.ts', { numCpus: 1, sharedMemoryDir: shm }, 5, (head) => (fetched = head.bytesFetched));
      expect(out.map((b) => b.data.numRows)).toEqual(Array(5).fill(40_000));
      const ids = out.map((b) => [...new Set(column(b.data, 'x').toArray() as Float64Array)]);
      expect(ids.flat().sort()).toEqual([0, 1, 2, 3, 4]);
    } finally {
      clearInterval(watch);
    }
    // Each 320 KB output went to a file the head read from the worker's store in memory;
    // before, it rode in the reply (the head fetches nothing for an inlined output).
    expect(sawFile).toBe(true);
    expect(fetched).toBeGreaterThanOrEqual(5 * 40_000 * 8);
  });

  it("keeps the same outputs in the store for a worker that talks to its head over gRPC too, and inlines small ones", async () => {
    let fetched = -1;
    const out = await embeddedRun('large-sink.ts', { numCpus: 1, headClient: undefined }, 5, (head) => (fetched = head.bytesFetched));
    expect(out.map((b) => b.data.numRows)).toEqual(Array(5).fill(40_000));
    // Over the head's 64 KiB inline limit: fetched from the worker over the data plane, not
    // carried through the executor's socket, protobuf and HTTP/2.
    expect(fetched).toBeGreaterThanOrEqual(5 * 40_000 * 8);
    const small = await embeddedRun('generator-pipeline.ts', { numCpus: 1, headClient: undefined }, 5, (head) => (fetched = head.bytesFetched));
    expect(small.map((b) => b.data.numRows)).toEqual(Array(5).fill(3));
    expect(fetched).toBe(0); // in TaskDone
  });

  it("gives executors one garbage-collection thread each where they can fill every core, else V8's default", async () => {
    const argvWith = async (numCpus: number): Promise<string[][]> =>
      (await embeddedRun('exec-argv.ts', { numCpus }, 2)).map((b) => String(column(b.data, 'argv').get(0)).split(' '));
    for (const argv of await argvWith(availableParallelism())) expect(argv).toContain('--single-threaded-gc');
    if (availableParallelism() > 1) for (const argv of await argvWith(1)) expect(argv).not.toContain('--single-threaded-gc');
  });
});

describe('outputs that are rows of their inputs (views)', () => {
  /**
   * The source batches each sum row came from, checked: two of them, the first half of each
   * (20,000 rows), and the sum of exactly those rows.
   */
  function pairsOf(out: OutputBatch[]): number[][] {
    return out.map((b) => {
      const ids = String(column(b.data, 'ids').get(0)).split(',').map(Number);
      expect(ids).toHaveLength(2);
      expect(Number(column(b.data, 'rows').get(0))).toBe(40_000);
      expect(column(b.data, 'firstHalves').get(0)).toBe(true);
      expect(Number(column(b.data, 'sum').get(0))).toBe((ids[0]! + ids[1]!) * 20_000 * 40_000 + 19_999 * 20_000);
      return ids;
    });
  }

  it('are kept as views of the objects they come from: no bytes written, the right rows read, everything freed after', async () => {
    const shm = await tempDir();
    for (const fuseTasks of [false, true]) {
      const head = await startHead({ host: '127.0.0.1', port: 0, fuseTasks });
      const w = await startWorker({
        address: head.address,
        token: head.token,
        headClient: head.inProcessClient(),
        numCpus: 2,
        resources: { maker: 1, summer: 1 },
        sharedMemoryDir: shm,
      });
      try {
        await w.registered();
        const executor = await ClusterExecutor.load(join(FIXTURES, 'views.ts'), { address: head.address, token: head.token, maxBatches: 6, headClient: head.inProcessClient() });
        const out: OutputBatch[] = [];
        for await (const b of executor.run()) out.push(b);
        executor.close();
        // Every source batch's first half, each in one pair.
        expect(pairsOf(out).flat().sort()).toEqual([0, 1, 2, 3, 4, 5]);
        // Unfused: 6 slices (half) and 3 pass-throughs of two objects (pair) are views; fused,
        // make and half run as one call whose output is new, and pair's 3 are views.
        expect(w.store.stats().views).toBe(fuseTasks ? 3 : 9);
        await waitFor(() => w.store.stats().objects === 0, { timeoutMs: 5_000, what: 'the store to be empty' });
        expect(w.store.stats().memoryBytes).toBe(0);
        expect(files(shm)).toEqual([]);
      } finally {
        await w.stop();
        await head.stop();
      }
    }
  });

  it('are delivered exactly once when the worker that holds them and the objects they name is killed', async () => {
    const head = await startHeadProcess(['--no-fuse-tasks', '--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500']);
    const doomed = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']);
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"summer":1}']);
    await waitForWorkers(head.address, 3);
    const cluster = await connect(head.address);
    const n = 24;
    try {
      // The sink is slow: the makers run ahead, and the doomed one holds views when it dies.
      const run = await cluster.submit(join(FIXTURES, 'views.ts'), { maxBatches: n, config: { 'sum.kwargs.ms': 60 } });
      const out: OutputBatch[] = [];
      for await (const b of run) {
        out.push(b);
        if (out.length === 3) doomed.child.kill('SIGKILL');
      }
      expect(pairsOf(out).flat().sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    } finally {
      await cluster.close();
    }
  });

  it("reach a task on another worker as their rows, encoded by the worker that holds them", async () => {
    const head = await startHeadProcess(['--no-fuse-tasks']);
    const maker = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1}']);
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"summer":1}']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'views.ts'), { maxBatches: 6 });
      const out: OutputBatch[] = [];
      for await (const b of run) out.push(b);
      expect(pairsOf(out).flat().sort()).toEqual([0, 1, 2, 3, 4, 5]);
      expect(maker.child.exitCode).toBeNull();
      // The maker's worker kept half's 6 and pair's 3 outputs as views (as its heartbeat tells).
      let views = -1;
      await waitFor(
        async () => {
          const status = await statusOf(head.address);
          views = Math.max(...status.workers.map((w) => w.objectStore.views));
          return views === 9;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: "the maker's worker to report 9 views" },
      );
    } finally {
      await cluster.close();
    }
  });
});
