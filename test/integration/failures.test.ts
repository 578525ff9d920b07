/**
 * Worker loss on a cluster of real processes: every batch reaches the client exactly once when
 * a worker is killed (SIGKILL) or stops answering (SIGSTOP) mid-run, running tasks and the
 * objects only it held included.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@dpl/client';
import { column, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);

const ints = (b: OutputBatch, name: string): number[] => [...column(b.data, name)].map(Number);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('losing a worker mid-run', () => {
  it.each([
    ['killed (SIGKILL): its connection closes', 'SIGKILL'],
    ['stopped (SIGSTOP): its heartbeats stop', 'SIGSTOP'],
  ] as const)('delivers every batch exactly once when a worker that holds needed batches is %s', async (_, signal) => {
    const head = await startHeadProcess(['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500']);
    const doomed = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']);
    const survivor = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"taker":2}']);
    await waitForWorkers(head.address, 3);
    const cluster = await connect(head.address);
    const n = 40;
    try {
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: n });
      const out: OutputBatch[] = [];
      let detected: Promise<number> | undefined;
      for await (const b of run) {
        out.push(b);
        // The makers run ahead of the slow sink: by now the doomed one holds batches it needs.
        if (out.length === 8 && detected === undefined) {
          const killedAt = Date.now();
          doomed.child.kill(signal);
          detected = waitFor(async () => (await statusOf(head.address)).workers.filter((w) => w.state === 'alive').length === 2, {
            timeoutMs: 20_000,
            intervalMs: 50,
            what: 'the head to notice the lost worker',
          }).then(() => Date.now() - killedAt);
        }
      }
      // Detected within the configured heartbeat timeout (1.5 s), with room for a slow machine.
      expect(await detected).toBeLessThan(2 * 1500 + 1000);
      // Exactly once: one output per source batch, each whole.
      expect(out.map((b) => ints(b, 'id')[0]).sort((a, b) => a! - b!)).toEqual(range(n));
      expect(new Set(out.map((b) => b.id)).size).toBe(n);
      expect(out.every((b) => ints(b, 'rows')[0] === 2000)).toBe(true);
      // Batches made after the loss come from the survivor, the lost ones included.
      const makers = new Set(out.slice(8).flatMap((b) => ints(b, 'maker_pid')));
      expect(makers.has(survivor.child.pid!)).toBe(true);
      // …because the batches only the doomed worker held were made again from their lineage.
      const headLog = head.process.stdout + head.process.stderr;
      expect(headLog).toContain('recomputing a batch lost with its worker');
      const status = await statusOf(head.address);
      expect(status.workers.filter((w) => w.state === 'alive')).toHaveLength(2);
      // Resources are all free again once the job is over.
      await waitFor(async () => {
        const s = await statusOf(head.address);
        return s.workers.filter((w) => w.state === 'alive').every((w) => JSON.stringify(w.resources.available) === JSON.stringify(w.resources.total));
      }, { timeoutMs: 5_000, what: 'resources to be free' });
    } finally {
      if (signal === 'SIGSTOP') doomed.child.kill('SIGKILL');
      await cluster.close();
    }
  });
});

describe('task failures on a cluster', () => {
  it('pins an executor crash on the call that caused it, though other calls waited in that process', async () => {
    // One CPU: one lease, whose calls are sent ahead into one executor process.
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'exits-on-one.ts'), { maxBatches: 40, maxErroredBatches: 1 });
      const ids: bigint[] = [];
      for await (const b of run) ids.push(b.data.getChild('id')!.get(0) as bigint);
      expect(ids).toHaveLength(39);
      expect(ids).not.toContain(7n);
      expect(run.erroredBatches).toHaveLength(1);
      expect(run.erroredBatches[0]!.inputs).toEqual(['s7']);
      expect(run.erroredBatches[0]!.message).toMatch(/executor process exited with code 3/);
    } finally {
      await cluster.close();
    }
  });


  it.each([
    ['throw', /bad threw on purpose/],
    ['reject', /RangeError: bad rejected on purpose|bad rejected on purpose/],
    ['non-table', /not an Arrow Table; a task must return a Table \(not retried: it would return the same again\)/],
    ['exit', /executor process exited with code 3/],
    ['abort', /executor process (was killed by SIGABRT|exited)/],
    ['oom', /executor process (was killed|exited).*running out of memory/],
    ['hang', /ran longer than its timeoutMs of 1500 ms and its executor process was killed/],
  ])('a task that does "%s" fails the job after its retries, naming it, and the worker goes on', async (mode, cause) => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2', '--executor-memory', '64']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'misbehaving.ts'), { maxBatches: 1, config: { 'bad.kwargs.mode': mode }, onTaskOutput: false });
      let error: Error & { code?: string; remoteStack?: string } = new Error('no failure');
      try {
        for await (const _ of run) throw new Error('an output came out');
      } catch (e) {
        error = e as typeof error;
      }
      expect(error.code).toBe('TASK_FAILED');
      // Every failure but one gets its retry: a task that returns no Table would return the same.
      const attempt = mode === 'non-table' ? 1 : 2;
      expect(error.message).toMatch(new RegExp(`^task "bad" failed on batch bad#0 \\(inputs s0; attempt ${attempt} of 2\\): `));
      expect(error.message).toMatch(cause);
      if (mode === 'throw') expect(error.remoteStack).toContain('misbehaving.ts');
      // The worker is still there and runs the next job.
      const again = await cluster.submit(join(FIXTURES, 'misbehaving.ts'), { maxBatches: 2 });
      let n = 0;
      for await (const _ of again) n++;
      expect(n).toBe(2);
      expect((await statusOf(head.address)).workers.filter((w) => w.state === 'alive')).toHaveLength(1);
    } finally {
      await cluster.close();
    }
  });
});

describe('a longer run under repeated losses, and a lost head', () => {
  it('delivers every batch exactly once while workers are killed one after another and replaced', async () => {
    const head = await startHeadProcess(['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500']);
    const makers = [0, 1, 2].map(() => startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']));
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"taker":3}']);
    await waitForWorkers(head.address, 4);
    const cluster = await connect(head.address);
    const n = 90;
    try {
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: n });
      const out: OutputBatch[] = [];
      let kills = 0;
      for await (const b of run) {
        out.push(b);
        // Every 20 outputs a maker dies and a new one joins.
        if (out.length % 20 === 0 && kills < 3) {
          makers[kills]!.child.kill('SIGKILL');
          kills++;
          makers.push(startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']));
        }
      }
      expect(kills).toBe(3);
      expect(out.map((b) => ints(b, 'id')[0]).sort((a, b) => a! - b!)).toEqual(range(n));
      expect(new Set(out.map((b) => b.id)).size).toBe(n);
      expect(out.every((b) => ints(b, 'rows')[0] === 2000)).toBe(true);
    } finally {
      await cluster.close();
    }
  });

  it('fails running jobs clearly when the head dies, and the workers rejoin a restarted head by themselves', async () => {
    const head = await startHeadProcess();
    const port = head.address.slice(head.address.lastIndexOf(':') + 1);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2,"taker":2}']);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'));
      let error: Error & { code?: string } = new Error('no failure');
      try {
        let seen = 0;
        for await (const _ of run) if (++seen === 3) head.process.child.kill('SIGKILL');
      } catch (e) {
        error = e as typeof error;
      }
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.message).toMatch(/^lost the head while the job ran: .*; submit it again when the head is back$/);

      // A new head on the same address: the workers find it without being restarted.
      const again = await startHeadProcess(['--port', port]);
      await waitForWorkers(again.address, 2, undefined, 20_000);
      const fresh = await connect(again.address);
      try {
        let n = 0;
        for await (const _ of await fresh.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 5 })) n++;
        expect(n).toBe(5);
      } finally {
        await fresh.close();
      }
    } finally {
      await cluster.close();
    }
  });
});

/** The spill files under `dir` (each worker keeps them in a private folder of its own there). */
function spillFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.arrow'));
}

describe('memory bounds', () => {
  const tempDir = useTempDirs('dpl-spill-');

  it('spills outputs past --object-store-memory, serves them from disk, and removes the files once released', async () => {
    const spill = await tempDir();
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}', '--object-store-memory', '1', '--spill-dir', spill]);
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"shrinker":1}']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const out: OutputBatch[] = [];
      let sawSpill = false;
      const run = await cluster.submit(join(FIXTURES, 'big-intermediate.ts'), { maxBatches: 8 });
      for await (const b of run) {
        out.push(b);
        sawSpill ||= spillFiles(spill).length > 0;
      }
      expect(out.map((b) => ints(b, 'rows')[0])).toEqual(Array(8).fill(256 * 1024));
      expect(sawSpill).toBe(true);
      await waitFor(() => spillFiles(spill).length === 0, { timeoutMs: 5_000, what: 'spill files to be removed' });
    } finally {
      await cluster.close();
    }
  });
});
