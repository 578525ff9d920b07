/**
 * Workers that leave gracefully, with real processes: SIGTERM (or dpl worker drain --leave)
 * makes a worker take no new calls, finish its running ones, let the others take over what only
 * it holds, and exit 0, with nothing lost, duplicated or recomputed; a second signal, or the end
 * of its grace period, makes it go at once (lineage then covers what it held).
 */
import { join } from 'node:path';
import { connect, tokenFor, type ClusterRun } from '@dpl/client';
import { column, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, runDpl, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers, type HeadProcess } from '../helpers/cluster';
import { dashboardAddress, prometheusSamples } from '../helpers/metrics';

afterEach(killDplProcesses);

/** The head's call counters of one job: outcome → calls (over all tasks). */
async function callOutcomes(head: HeadProcess, jobId: string): Promise<Record<string, number>> {
  const res = await fetch(`http://${dashboardAddress(head.process.stdout)}/metrics`, { headers: { authorization: `Bearer ${tokenFor(head.address, undefined)}` } });
  const out: Record<string, number> = {};
  for (const [name, v] of prometheusSamples(await res.text())) {
    const m = /^dpl_task_calls_total\{job="([^"]+)",task="[^"]+",outcome="([^"]+)"\}$/.exec(name);
    if (m !== null && m[1] === jobId) out[m[2]!] = (out[m[2]!] ?? 0) + v;
  }
  return out;
}

/** Every output of a run, and the source batch ids (the `id` column) they hold. */
async function drain(run: ClusterRun): Promise<{ out: OutputBatch[]; ids: number[] }> {
  const out: OutputBatch[] = [];
  for await (const b of run) out.push(b);
  return { out, ids: out.flatMap((b) => [...column(b.data, 'id')].map(Number)).sort((a, b) => a - b) };
}

describe('a worker leaving gracefully', () => {
  it('on SIGTERM mid-run hands over what only it holds: nothing lost, duplicated or recomputed, and it exits 0', async () => {
    const head = await startHeadProcess();
    const leaving = startWorkerProcess(head.address, ['--num-cpus', '2']);
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'leave-pipeline.ts'), { maxBatches: 300 });
      const all = drain(run);
      // Mid-run: outputs of `make` wait on both workers for `gather` to have ten.
      await waitFor(() => (run.stats().tasks.make?.calls ?? 0) >= 60, { timeoutMs: 30_000, what: '60 calls of make' });
      leaving.child.kill('SIGTERM');
      const { ids } = await all;
      expect(ids).toEqual(Array.from({ length: 300 }, (_, i) => i)); // each source batch once
      const left = await leaving.exited;
      expect(left.code).toBe(0);
      expect(left.stdout).toMatch(/leaving the head at .*: finishing its running calls and handing over what only it holds \(up to 30 s; SIGTERM again stops at once\)/);
      expect(left.stdout).toMatch(/^dpl worker \S+ left: \d+ objects? handed over, \d+ queued calls? handed back$/m);
      const outcomes = await callOutcomes(head, run.jobId!);
      expect(outcomes.recomputed ?? 0).toBe(0);
      expect(outcomes.interrupted ?? 0).toBe(0);
      expect(outcomes.done).toBe(330); // 300 make + 30 gather: no call ran twice
    } finally {
      await cluster.close();
    }
  });

  it('leaves when asked by dpl worker drain --leave, and exits 0', async () => {
    const head = await startHeadProcess();
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1']);
    const id = (await waitForWorkers(head.address, 1)).workers[0]!.id;
    const r = await runDpl(['worker', 'drain', '--address', head.address, '--worker', id, '--leave']);
    expect(r.code).toBe(0);
    const left = await worker.exited;
    expect(left.code).toBe(0);
    expect(left.stdout).toContain(`dpl worker left the head at ${head.address} (asked to: dpl worker drain --leave)`);
    await waitForWorkers(head.address, 0);
    const both = await runDpl(['worker', 'drain', '--address', head.address, '--worker', id, '--leave', '--undo']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--undo and --leave do opposite things; give one');
  });

  it('goes at once on a second SIGTERM, and after its grace period; lineage covers the rest and the job finishes', async () => {
    const head = await startHeadProcess();
    const keeper = startWorkerProcess(head.address, ['--num-cpus', '1']);
    const slow = startWorkerProcess(head.address, ['--num-cpus', '1', '--grace-period', '60']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'slow-call.ts'), { maxBatches: 4, config: { 'slow.kwargs.ms': 2000 } });
      const all = drain(run);
      await waitFor(() => (run.stats().tasks.slow?.running ?? 0) >= 2, { timeoutMs: 20_000, what: 'a call running on each worker' });
      slow.child.kill('SIGTERM');
      await waitFor(() => slow.stdout.includes('SIGTERM again stops at once'), { what: 'the worker to start leaving' });
      slow.child.kill('SIGTERM');
      const gone = await slow.exited;
      expect(gone.code).toBe(0);
      expect(gone.stdout).toMatch(/stopping at once \(what it held is recomputed from lineage\)/);
      expect((await all).ids).toEqual([0, 1, 2, 3]);
    } finally {
      await cluster.close();
    }
    // With a grace period shorter than its running call: it leaves when the period ends.
    const short = startWorkerProcess(head.address, ['--num-cpus', '1', '--grace-period', '0.5']);
    await waitForWorkers(head.address, 2);
    const again = await connect(head.address);
    try {
      const run = await again.submit(join(FIXTURES, 'slow-call.ts'), { maxBatches: 2, config: { 'slow.kwargs.ms': 3000 } });
      const all = drain(run);
      await waitFor(() => (run.stats().tasks.slow?.running ?? 0) >= 2, { timeoutMs: 20_000, what: 'a call running on each worker' });
      short.child.kill('SIGTERM');
      const gone = await short.exited;
      expect(gone.code).toBe(0);
      expect(gone.stdout).toMatch(/left after its grace period of 0\.5 s \(what it still held is recomputed from lineage\)/);
      expect((await all).ids).toEqual([0, 1]);
    } finally {
      await again.close();
      keeper.child.kill('SIGTERM');
    }
  });
});
