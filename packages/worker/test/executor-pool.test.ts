/**
 * The executor pool's processes: executors started before their worker (what `dpl run` does
 * first thing), which a pool takes when they were started its way; an idle executor that
 * becomes a job's generator process.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { BUNDLE_BANNER, encodeIpc, silentLogger } from '@dpl/core';
import { encodeKwargs } from '@dpl/wire';
import { Table, makeVector } from 'apache-arrow';
import { ExecutorPool } from '../src/executor/executor-pool';
import { EarlyExecutors, executorLaunch, schedBatchLauncher } from '../src/executor/fork';
import type { CallFacts, RunCall } from '../src/executor/protocol';

const dir = mkdtempSync(join(tmpdir(), 'dpl-early-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A bundle whose one task answers with the pid of the process that ran it. */
const bundlePath = join(dir, 'pid.mjs');
writeFileSync(
  bundlePath,
  `${BUNDLE_BANNER}
const { PipelineGraph, PipelineTask } = require('@dpl/core');
const { Table, makeVector } = require('apache-arrow');
export default new PipelineGraph([
  new PipelineTask('pid', () => new Table({ pid: makeVector(Int32Array.of(process.pid)) })),
  new PipelineTask('hang', () => new Promise(() => undefined)),
  // The kernel's scheduling policy of the process (field 41 of /proc/self/stat; 0 normal, 3 batch).
  new PipelineTask('policy', () => {
    const stat = require('node:fs').readFileSync('/proc/self/stat', 'utf8');
    const policy = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
    return new Table({ pid: makeVector(Int32Array.of(policy)) });
  }),
]);
export function* generator() {
  for (let i = 0; i < 2; i++) yield new Table({ pid: makeVector(Int32Array.of(process.pid)) });
}
`,
);

/** Each task's facts, one object per task as the worker makes them. */
const factsOf = new Map<string, CallFacts>();
function call(n: number, task = 'pid'): RunCall {
  let facts = factsOf.get(task);
  if (facts === undefined) {
    facts = { bundlePath, label: 'pid.mjs', jobId: 'job', task, kwargs: encodeKwargs(task, {}), maxAttempts: 1 };
    factsOf.set(task, facts);
  }
  return {
    facts,
    callId: `${task}#${n}`,
    inputs: [{ ipc: encodeIpc(new Table({ x: makeVector(Int32Array.of(n)) })), offset: 0, rows: 1 }],
    inputIds: [`s${n}`],
  };
}

const pidOf = (out: unknown): number => tableFromIPC((out as { ipc: Uint8Array }).ipc).getChild('pid')!.get(0) as number;

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
}

describe('EarlyExecutors', () => {
  it('hands a pool the processes started its way, and the pool runs calls in them', async () => {
    const launch = executorLaunch(1, undefined, []);
    const early = new EarlyExecutors(2, launch);
    const started = early.pids;
    expect(started).toHaveLength(2);
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch });
    try {
      pool.prestart(1, early);
      // The pool took one and started none of its own for it: one is left, and the call ran there.
      expect(early.pids).toHaveLength(1);
      const pid = pidOf(await pool.run(call(1), 1, ''));
      expect(started).toContain(pid);
      expect(early.pids).not.toContain(pid);
    } finally {
      pool.stop();
      early.stop();
    }
    await until(() => started.every(gone));
    expect(started.filter((p) => !gone(p))).toEqual([]);
  });

  it('hands none to a pool that starts its executors another way; stop() ends them', async () => {
    const early = new EarlyExecutors(1, executorLaunch(1, undefined, []));
    const [pid] = early.pids;
    expect(early.take(executorLaunch(1, 256, []), 4)).toEqual([]);
    expect(early.take(executorLaunch(1, undefined, ['--max-semi-space-size=16']), 4)).toEqual([]);
    expect(early.take(executorLaunch(1, undefined, [], 'normal'), 4)).toEqual([]);
    expect(early.pids).toEqual([pid]);
    early.stop();
    await until(() => gone(pid!));
    expect(gone(pid!)).toBe(true);
  });
});

const SCHED_NORMAL = 0;
const SCHED_BATCH = 3;
// Linux with util-linux's chrt (this project's CI machines): executors run as batch work.
const linuxWithChrt = process.platform === 'linux' && schedBatchLauncher() !== undefined;

describe('executor scheduling', () => {
  async function policyOf(scheduling: 'batch' | 'normal'): Promise<number> {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 1, launch: executorLaunch(1, undefined, [], scheduling) });
    try {
      return pidOf(await pool.run(call(1, 'policy'), 1, ''));
    } finally {
      pool.stop();
    }
  }

  (linuxWithChrt ? it : it.skip)('runs executors under SCHED_BATCH by default, and under the normal policy when asked', async () => {
    expect(await policyOf('batch')).toBe(SCHED_BATCH);
    expect(await policyOf('normal')).toBe(SCHED_NORMAL);
    // The early executors of `dpl run` start the same way.
    const early = new EarlyExecutors(1, executorLaunch(1, undefined, []));
    const pool = new ExecutorPool(silentLogger, { maxIdle: 1, launch: executorLaunch(1, undefined, []) });
    try {
      pool.prestart(1, early);
      expect(pidOf(await pool.run(call(2, 'policy'), 1, ''))).toBe(SCHED_BATCH);
    } finally {
      pool.stop();
      early.stop();
    }
  });

  (process.platform === 'linux' ? it : it.skip)('starts executors as normal ones where no chrt can be found', () => {
    // A process of its own: the launcher is looked up once per process.
    const script = `
      const { ExecutorPool } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'executor', 'executor-pool.js'))});
      const { executorLaunch, schedBatchLauncher } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'executor', 'fork.js'))});
      const { encodeIpc, silentLogger } = require('@dpl/core');
      const { encodeKwargs } = require('@dpl/wire');
      const { Table, makeVector, tableFromIPC } = require('apache-arrow');
      const pool = new ExecutorPool(silentLogger, { maxIdle: 1, launch: executorLaunch(1, undefined, [], 'batch') });
      const facts = { bundlePath: ${JSON.stringify(bundlePath)}, label: 'pid.mjs', jobId: 'job', task: 'policy', kwargs: encodeKwargs('policy', {}), maxAttempts: 1 };
      const inputs = [{ ipc: encodeIpc(new Table({ x: makeVector(Int32Array.of(1)) })), offset: 0, rows: 1 }];
      pool.run({ facts, callId: 'policy#1', inputs, inputIds: ['s1'] }, 1, '').then((out) => {
        console.log(JSON.stringify({ launcher: schedBatchLauncher() ?? null, policy: tableFromIPC(out.ipc).getChild('pid').get(0) }));
        pool.stop();
      }, (e) => { console.error(e); process.exit(1); });
    `;
    const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, PATH: dir }, cwd: join(__dirname, '..'), encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ launcher: null, policy: SCHED_NORMAL });
  });
});

/**
 * Two modules that leave a mark on their process: each call counts itself in a global and
 * answers with its pid, how many calls of its module the process ran, and whether the other
 * module's mark is there.
 */
function markingBundle(name: string, other: string): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(
    path,
    `${BUNDLE_BANNER}
const { PipelineGraph, PipelineTask } = require('@dpl/core');
const { Table, makeVector } = require('apache-arrow');
const mark = () => {
  globalThis.__dplMarks ??= {};
  globalThis.__dplMarks.${name} = (globalThis.__dplMarks.${name} ?? 0) + 1;
  const seen = globalThis.__dplMarks.${other} === undefined ? 0 : 1;
  return new Table({ pid: makeVector(Int32Array.of(process.pid)), calls: makeVector(Int32Array.of(globalThis.__dplMarks.${name})), other: makeVector(Int32Array.of(seen)) });
};
export default new PipelineGraph([new PipelineTask('mark', mark)]);
export function* generator() {
  yield mark();
}
`,
  );
  return path;
}

describe('ExecutorPool modules', () => {
  const bundles = { a: markingBundle('a', 'b'), b: markingBundle('b', 'a') };
  const markCall = (module: 'a' | 'b', jobId: string, n: number): RunCall => ({
    facts: { bundlePath: bundles[module], label: `${module}.mjs`, jobId, task: 'mark', kwargs: encodeKwargs('mark', {}), maxAttempts: 1 },
    callId: `mark#${n}`,
    inputs: [{ ipc: encodeIpc(new Table({ x: makeVector(Int32Array.of(n)) })), offset: 0, rows: 1 }],
    inputIds: [`s${n}`],
  });
  const marks = (out: unknown): { pid: number; calls: number; other: number } => {
    const t = tableFromIPC((out as { ipc: Uint8Array }).ipc);
    return { pid: t.getChild('pid')!.get(0) as number, calls: t.getChild('calls')!.get(0) as number, other: t.getChild('other')!.get(0) as number };
  };

  it("runs another module's calls in a fresh process, and the same module's jobs in its warm one", async () => {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(1, undefined, []) });
    try {
      const first = marks(await pool.run(markCall('a', 'job1', 1), 1, ''));
      expect(first.calls).toBe(1);
      // Module a's process is idle, but b's call does not go there: a fresh process, without a's mark.
      const other = marks(await pool.run(markCall('b', 'job2', 2), 1, ''));
      expect(other.pid).not.toBe(first.pid);
      expect(other).toMatchObject({ calls: 1, other: 0 });
      // A later job of module a runs in a's warm process, whose module state is still there.
      const again = marks(await pool.run(markCall('a', 'job3', 3), 1, ''));
      expect(again).toEqual({ pid: first.pid, calls: 2, other: 0 });
      // b's generator does not take a's idle process either.
      const source = marks(await pool.nextSource('job4', bundles.b, 'b.mjs'));
      expect(source.pid).not.toBe(first.pid);
      expect(source.other).toBe(0);
    } finally {
      pool.stop();
    }
  });

  it('gives an idle process that has run nothing to whichever module needs one', async () => {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(1, undefined, []) });
    try {
      pool.prestart(2);
      const a = marks(await pool.run(markCall('a', 'job1', 1), 1, ''));
      const b = marks(await pool.run(markCall('b', 'job2', 2), 1, ''));
      expect(b.pid).not.toBe(a.pid);
      expect(b.other).toBe(0);
      // Both prestarted processes are in use now, one per module, and each module keeps its own.
      expect(marks(await pool.run(markCall('a', 'job1', 3), 1, '')).pid).toBe(a.pid);
      expect(marks(await pool.run(markCall('b', 'job2', 4), 1, '')).pid).toBe(b.pid);
    } finally {
      pool.stop();
    }
  });
});

describe('ExecutorPool tasks', () => {
  it("gives an idle process of the module the next lease of the task it ran last, before another task's", async () => {
    const path = join(dir, 'two-tasks.mjs');
    writeFileSync(
      path,
      `${BUNDLE_BANNER}
const { PipelineGraph, PipelineTask } = require('@dpl/core');
const { Table, makeVector } = require('apache-arrow');
const pid = () => new Table({ pid: makeVector(Int32Array.of(process.pid)) });
export default new PipelineGraph([new PipelineTask('p', pid), new PipelineTask('q', pid)]);
`,
    );
    const taskCall = (task: 'p' | 'q', n: number): RunCall => ({
      facts: { bundlePath: path, label: 'two-tasks.mjs', jobId: 'job1', task, kwargs: encodeKwargs(task, {}), maxAttempts: 1 },
      callId: `${task}#${n}`,
      inputs: [{ ipc: encodeIpc(new Table({ x: makeVector(Int32Array.of(n)) })), offset: 0, rows: 1 }],
      inputIds: [`s${n}`],
    });
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(1, undefined, []) });
    try {
      pool.prestart(2);
      // At once: "p" takes the first process, "q" the other.
      const [p, q] = (await Promise.all([pool.run(taskCall('p', 1), 1, '', 0, 'lease-p1'), pool.run(taskCall('q', 2), 1, '', 0, 'lease-q1')])).map(pidOf);
      expect(q).not.toBe(p);
      // One at a time, on new leases, both processes idle: each task goes back to its own process
      // (not both to the first idle one), in either order.
      expect(pidOf(await pool.run(taskCall('q', 3), 1, '', 0, 'lease-q2'))).toBe(q);
      expect(pidOf(await pool.run(taskCall('p', 4), 1, '', 0, 'lease-p2'))).toBe(p);
      expect(pidOf(await pool.run(taskCall('q', 5), 1, '', 0, 'lease-q3'))).toBe(q);
    } finally {
      pool.stop();
    }
  });
});

describe('ExecutorPool task facts', () => {
  it('sends a task\'s facts into a process once, forgets the oldest past its limit and sends them again when needed', async () => {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 1, launch: executorLaunch(1, undefined, []) });
    try {
      // 70 jobs' facts for the same task, one after another in the one executor (more than it keeps).
      const base = call(0).facts;
      const facts: CallFacts[] = Array.from({ length: 70 }, (_, i) => ({ ...base, jobId: `job${i}` }));
      const pids = new Set<number>();
      for (const [i, f] of facts.entries()) pids.add(pidOf(await pool.run({ ...call(i), facts: f }, 1, '')));
      // The first ones were forgotten there: sent again, they run.
      for (const f of facts.slice(0, 3)) pids.add(pidOf(await pool.run({ ...call(100), facts: f }, 1, '')));
      pids.add(pidOf(await pool.run({ ...call(101), facts: facts[69]! }, 1, '')));
      expect(pids.size).toBe(1);
    } finally {
      pool.stop();
    }
  });
});

describe('ExecutorPool.stop', () => {
  it('lets an idle executor exit by itself (Node flags such as --cpu-prof then write their files) and kills a busy one', async () => {
    const profiles = mkdtempSync(join(tmpdir(), 'dpl-prof-'));
    try {
      const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(2, undefined, ['--cpu-prof', `--cpu-prof-dir=${profiles}`]) });
      // A call that never ends, in one executor; another runs a call and is idle.
      const hanging = pool.run(call(2, 'hang'), 1, '').catch((e: unknown) => e);
      const idle = pidOf(await pool.run(call(1), 1, ''));
      pool.stop();
      await until(() => gone(idle));
      expect(gone(idle)).toBe(true);
      await until(() => readdirSync(profiles).some((f) => f.includes(`.${idle}.`)));
      expect(readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${idle}.`))).toHaveLength(1);
      expect(String(await hanging)).toMatch(/killed by SIGKILL/);
    } finally {
      rmSync(profiles, { recursive: true, force: true });
    }
  });
});

describe('ExecutorPool generators', () => {
  it('makes an idle executor the generator\'s process, and starts another for calls', async () => {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(1, undefined, []) });
    try {
      pool.prestart(1);
      const executor = pidOf(await pool.run(call(1), 1, ''));
      // Idle now: the generator runs there, for the whole job.
      const first = await pool.nextSource('job', bundlePath, 'pid.mjs');
      const second = await pool.nextSource('job', bundlePath, 'pid.mjs');
      expect([pidOf(first), pidOf(second)]).toEqual([executor, executor]);
      expect(await pool.nextSource('job', bundlePath, 'pid.mjs')).toBeUndefined();
      // Calls go to the executor that took its place.
      const next = pidOf(await pool.run(call(2), 1, ''));
      expect(next).not.toBe(executor);
      pool.closeSource('job');
      await until(() => gone(executor));
      expect(gone(executor)).toBe(true);
      expect(gone(next)).toBe(false);
    } finally {
      pool.stop();
    }
  });

  it('answers pulls sent together in order, from one generator', async () => {
    const pool = new ExecutorPool(silentLogger, { maxIdle: 4, launch: executorLaunch(1, undefined, []) });
    try {
      const got = await Promise.all([1, 2, 3, 4].map(() => pool.nextSource('job', bundlePath, 'pid.mjs')));
      expect(got.map((r) => (r === undefined ? 'end' : 'batch'))).toEqual(['batch', 'batch', 'end', 'end']);
    } finally {
      pool.stop();
    }
  });
});
