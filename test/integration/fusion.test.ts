/**
 * Task fusion on a cluster of real processes: a chain of tasks that only feed each other runs
 * as one call per batch, with the same outputs and per-task figures as when each task runs as
 * its own call, and a failure names the task that failed.
 */
import { join } from 'node:path';
import { connect } from '@dpl/client';
import { column, isDplError, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, runDpl } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);

const numbers = (out: OutputBatch[], name: string): number[] => out.flatMap((b) => [...column(b.data, name)].map(Number));

async function runChain(headArgs: string[], config: Record<string, unknown> = {}) {
  const head = await startHeadProcess(headArgs);
  startWorkerProcess(head.address, ['--num-cpus', '2']);
  await waitForWorkers(head.address, 1);
  const cluster = await connect(head.address);
  try {
    const run = await cluster.submit(join(FIXTURES, 'fused-chain.ts'), { maxBatches: 20, config });
    const out: OutputBatch[] = [];
    for await (const b of run) out.push(b);
    return { out, stats: run.stats().tasks, headLog: head.process.stdout + head.process.stderr };
  } finally {
    cluster.close();
  }
}

describe('fused tasks', () => {
  it('give the same outputs and per-task figures as tasks run one call each, from one call per batch', async () => {
    const fused = await runChain(['--log-level', 'debug']);
    const apart = await runChain(['--no-fuse-tasks']);
    for (const r of [fused, apart]) {
      // parse keeps the even ids: ten outputs, each the whole chain's work on its batch.
      expect(numbers(r.out, 'id').sort((a, b) => a - b)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
      expect(r.out.every((b) => Number(column(b.data, 'z').get(0)) === Number(column(b.data, 'id').get(0)) * 3 + 1)).toBe(true);
      expect(r.out.every((b) => b.task === 'score' && /^score#\d+$/.test(b.id))).toBe(true);
      expect(r.stats.parse).toMatchObject({ calls: 20, rowsIn: 20, rowsOut: 10, emptyOutputs: 10, running: 0 });
      expect(r.stats.scale).toMatchObject({ calls: 10, rowsIn: 10, rowsOut: 10 });
      expect(r.stats.score).toMatchObject({ calls: 10, rowsIn: 10, rowsOut: 10 });
    }
    expect(fused.headLog).toContain('tasks fused into one call per chain');
    expect(apart.headLog).not.toContain('tasks fused');
    // Fused, scale and score of a batch ran in one executor turn: in the same process.
    const samePid = (r: typeof fused) => r.out.every((b) => column(b.data, 'scale_pid').get(0) === column(b.data, 'score_pid').get(0));
    expect(samePid(fused)).toBe(true);
  });

  it('name the task that failed inside a fused call, and say the chain ran fused', async () => {
    const err = await runChain([], { 'scale.kwargs.failOn': 4, 'scale.maxRetries': 0, 'parse.maxRetries': 0, 'score.maxRetries': 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDplError(err)).toBe(true);
    const message = (err as Error).message;
    expect(message).toContain('task "scale" failed on batch score#');
    expect(message).toContain('scale refuses id 4');
    expect(message).toContain('tasks parse → scale → score ran fused in one call');
  });
});

describe('a chain of 10,000 tasks', () => {
  it('runs in dpl run under a 400 MiB heap, fused and one call per task (each task\'s ancestors took n²/2 entries: out of memory)', async () => {
    const env = { LONG_CHAIN_TASKS: '10000', NODE_OPTIONS: '--max-old-space-size=400' };
    const fused = await runDpl(['run', join(FIXTURES, 'long-chain.ts'), '-n', '2', '-q'], { env });
    expect(fused.stderr).toBe('');
    expect(fused.code).toBe(0);
    expect(fused.stdout).toMatch(/^t9999\s+2\s+2$/m);
    // One call per task: 2,000 tasks (each pass once looked at every task of the job).
    const unfused = await runDpl(['run', join(FIXTURES, 'long-chain.ts'), '-n', '1', '-q', '--no-fuse-tasks'], { env: { ...env, LONG_CHAIN_TASKS: '2000' } });
    expect(unfused.code).toBe(0);
    expect(unfused.stdout).toMatch(/^t1999\s+1\s+1$/m);
  }, 120_000);
});
