/**
 * Large task outputs in shared memory, with real processes: an executor leaves a 2 MiB output
 * as a file in the worker's folder under --shm-dir, the next task on that worker reads it from
 * there, the file goes when the head releases the object, and a worker killed with SIGKILL
 * leaves a folder that the next worker started on the machine removes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@dpl/client';
import { column, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';

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
