/**
 * The job engine driven by events alone: a fake clock, workers that exist only in the registry,
 * and a test that plays the workers and the client by answering the engine's commands. Traces
 * are the commands the engine gave, in order (passes and wake-ups left out).
 */
import { encodeIpc, silentLogger } from '@dpl/core';
import { tableFromArrays } from 'apache-arrow';
import { encodeKwargs, type AssignTask__Input, type JobSpec } from '@dpl/wire';
import { WorkerRegistry } from '@dpl/head';
import { JobEngine, RESERVE_AFTER_MS, type EngineCommand } from '../src/jobs/engine';
import { graphOfSpec } from '../src/jobs/job';

/** An answer's output when the call's input was not inline: a real one-row stream (the engine checks it). */
const ONE_ROW = encodeIpc(tableFromArrays({ x: Int32Array.of(1) }));

interface TaskSpec {
  name: string;
  cpus?: number;
  resources?: Record<string, number>;
  maxRetries?: number;
  batchSize?: number;
}

function spec(tasks: TaskSpec[], maxBatches: number, extra: Partial<Record<'infeasible_timeout_ms' | 'max_errored_batches', number> & { generator: boolean }> = {}): JobSpec {
  return {
    module_hash: 'h',
    run_id: 'run',
    max_batches: String(maxBatches),
    infeasible_timeout_ms: extra.infeasible_timeout_ms ?? 60_000,
    module_generator: extra.generator ?? false,
    max_errored_batches: extra.max_errored_batches ?? 0,
    edges: tasks.slice(1).map((t, i) => ({ from: tasks[i]!.name, to: t.name })),
    tasks: tasks.map((t) => ({
      name: t.name,
      num_cpus: t.cpus ?? 1,
      num_gpus: 0,
      resources: { values: t.resources ?? {} },
      batch_size: t.batchSize ?? 0,
      max_retries: t.maxRetries ?? 0,
      kwargs: encodeKwargs(t.name, {}),
      timeout_ms: 0,
    })),
  } as unknown as JobSpec;
}

interface Sent {
  workerId: string;
  call: AssignTask__Input;
}

/**
 * An engine over a registry of fake workers. `settle()` runs the passes the engine asks for;
 * the test answers calls with `done`/`fail`, moves the clock with `advance`, and plays the
 * client with `deliverAll`.
 */
function harness(workers: { cpus: number; resources?: Record<string, number> }[]) {
  let now = 1_000_000;
  const registry = new WorkerRegistry(() => now);
  const ids = workers.map((w, i) => registry.register({ address: `w${i + 1}:1`, hostname: `w${i + 1}`, pid: i + 1, resources: { CPU: w.cpus, ...w.resources } }).id);
  const engine = new JobEngine({ registry, clock: () => now, log: silentLogger });
  const names = new Map(ids.map((id, i) => [id, `w${i + 1}`]));
  const trace: string[] = [];
  const sent: Sent[] = [];
  const deliveries: { jobId: string; batchId: string; objectId: string; inline: boolean; tries: number }[] = [];
  const ended: Extract<EngineCommand, { kind: 'ended' }>[] = [];
  const outputs: string[] = [];
  let passWanted = false;
  const run = (cmds: EngineCommand[]): void => {
    for (const c of cmds) {
      switch (c.kind) {
        case 'assign':
          sent.push({ workerId: c.workerId, call: c.call });
          trace.push(`assign ${names.get(c.workerId)} ${c.call.call_id} a${c.call.attempt}`);
          break;
        case 'release':
          trace.push(`release ${names.get(c.workerId)} ${c.objectId}`);
          break;
        case 'deliver':
          deliveries.push({ jobId: c.jobId, batchId: c.output.id, objectId: c.output.ref.data.objectId, inline: c.output.ref.data.inline !== undefined, tries: c.tries });
          trace.push(`deliver ${c.output.id}`);
          break;
        case 'notice':
          trace.push(`notice ${c.message.slice(0, c.message.indexOf(';'))}`);
          break;
        case 'skipped':
          trace.push(`skipped ${c.batchId}`);
          break;
        case 'ended':
          ended.push(c);
          trace.push(`ended ${c.state}${c.error ? ` ${c.error.code}` : ''}`);
          break;
        case 'schedule':
          passWanted = true;
          break;
        case 'pullSource':
          trace.push(`pull ${names.get(c.workerId)} s${c.seq}`);
          break;
        case 'wake':
          break;
      }
    }
  };
  const settle = (): void => {
    for (let i = 0; passWanted && i < 100; i++) {
      passWanted = false;
      run(engine.pass());
    }
  };
  const find = (callId: string): Sent => {
    const i = sent.findIndex((s) => s.call.call_id === callId);
    if (i < 0) throw new Error(`no call ${callId} outstanding; sent: ${sent.map((s) => s.call.call_id).join(', ')}`);
    return sent.splice(i, 1)[0]!;
  };
  const h = {
    engine,
    registry,
    ids,
    trace,
    sent,
    ended,
    outputs,
    now: () => now,
    /** Starts job-1; its tasks are not fused unless `fuse` (traces show each task's calls). */
    start(tasks: TaskSpec[], maxBatches: number, extra?: Parameters<typeof spec>[2], fuse = false): string {
      const s = spec(tasks, maxBatches, extra);
      const built = graphOfSpec(s, { fuse });
      run(engine.addJob({ id: 'job-1', spec: s, ...built, log: silentLogger }));
      settle();
      return 'job-1';
    },
    /** Answers a call as done; `object` keeps its output on the worker (else inline). */
    done(callId: string, how: { object?: boolean; rows?: number; from?: Sent; stageRows?: number[]; runUs?: number } = {}): void {
      const s = how.from ?? find(callId);
      const bytes = (s.call.inputs as { inline_ipc: Uint8Array }[])[0]?.inline_ipc ?? new Uint8Array(0);
      const objectId = how.object === true ? `${s.call.job_id}/${callId}~${s.call.assignment}` : '';
      run(
        engine.callDone(s.workerId, {
          call_id: callId,
          job_id: String(s.call.job_id),
          output_id: objectId,
          rows: String(how.rows ?? 1),
          bytes: String(bytes.byteLength || ONE_ROW.byteLength),
          inline_ipc: objectId === '' ? (bytes.byteLength > 0 ? bytes : ONE_ROW) : new Uint8Array(0),
          assignment: String(s.call.assignment),
          observations: [],
          run_us: String(how.runUs ?? 50),
          stage_rows: (how.stageRows ?? []).map(String),
        } as never),
      );
      settle();
    },
    /** Answers the generator's pull `seq` from worker `i`: a batch kept there, its end, or an error. */
    sourceBatch(seq: number, how: 'batch' | 'done' | 'error', i = 0): void {
      run(
        engine.sourceBatch(ids[i]!, {
          job_id: 'job-1',
          seq: String(seq),
          object_id: how === 'batch' ? `job-1/s${seq}` : '',
          rows: how === 'batch' ? '1' : '0',
          bytes: how === 'batch' ? String(ONE_ROW.byteLength) : '0',
          done: how === 'done',
          error: how === 'error' ? { code: 'TASK_FAILED', message: 'the generator threw', stack: '', task: '', batch_id: '', attempt: 0, retryable: false } : null,
        } as never),
      );
      settle();
    },
    fail(callId: string, code: string, retryable: boolean, from?: Sent): void {
      const s = from ?? find(callId);
      run(
        engine.callFailed(s.workerId, {
          call_id: callId,
          job_id: String(s.call.job_id),
          assignment: String(s.call.assignment),
          observations: [],
          error: { code, message: `${code} in ${callId}`, stack: '', task: String(s.call.task), batch_id: callId, attempt: Number(s.call.attempt), retryable },
        } as never),
      );
      settle();
    },
    /** Answers every outstanding call as done, in order. */
    doneAll(how: { object?: boolean } = {}): number {
      let n = 0;
      while (sent.length > 0) {
        h.done(String(sent[0]!.call.call_id), how);
        n++;
      }
      return n;
    },
    loseWorker(i: number): void {
      registry.markDead(ids[i]!, 'test');
      run(engine.workerLost(ids[i]!));
      // Calls sent to it are gone with it.
      for (let k = sent.length - 1; k >= 0; k--) if (sent[k]!.workerId === ids[i]) sent.splice(k, 1);
      settle();
    },
    addWorker(cpus: number, resources: Record<string, number> = {}): string {
      const id = registry.register({ address: `w${ids.length + 1}:1`, hostname: 'x', pid: 99, resources: { CPU: cpus, ...resources } }).id;
      ids.push(id);
      names.set(id, `w${ids.length}`);
      run(engine.workerChanged());
      settle();
      return id;
    },
    advance(ms: number): void {
      now += ms;
      run(engine.tick());
      settle();
    },
    /** Plays the client: takes every output it was handed; a lost one is reported as such. */
    deliverAll(): void {
      while (deliveries.length > 0) {
        const d = deliveries.shift()!;
        const job = engine.job(d.jobId);
        const ref = job?.undelivered.get(d.batchId)?.ref.data;
        if (ref !== undefined && !ref.inline && ref.objectId === '') run(engine.deliveryFailed(d.jobId, d.batchId, d.tries, 'lost'));
        else {
          outputs.push(d.batchId);
          run(engine.delivered(d.jobId, d.batchId));
        }
      }
      settle();
    },
  };
  return h;
}

describe('JobEngine traces', () => {
  it('runs a two-task chain on one CPU: one call at a time, outputs delivered, the job finished', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }, { name: 'b' }], 2);
    // Before a's service time is known a lease holds two calls: one running, one queued.
    expect(h.trace.splice(0)).toEqual(['assign w1 a#0 a1', 'assign w1 a#1 a1']);
    h.done('a#0', { object: true });
    h.done('a#1', { object: true });
    // The sink goes first once its input is there; a's lease is idle and went back.
    expect(h.trace.splice(0)).toEqual(['assign w1 b#0 a1', 'assign w1 b#1 a1']);
    h.done('b#0');
    h.done('b#1');
    expect(h.trace.splice(0)).toEqual(['release w1 job-1/a#0~1', 'deliver b#0', 'release w1 job-1/a#1~2', 'deliver b#1']);
    h.deliverAll();
    expect(h.trace.splice(0)).toEqual(['ended finished']);
    expect(h.ended[0]!.summary).toMatchObject({ outputs: 2, rows: 2 });
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(1);
  });

  it('runs a call again elsewhere when its worker is lost mid-call, as the same attempt, and ignores the dead worker’s late answer', () => {
    const h = harness([{ cpus: 1 }, { cpus: 1 }]);
    h.start([{ name: 'a' }], 2);
    const first = h.sent.filter((s) => s.workerId === h.ids[0])[0]!;
    expect(first).toBeDefined();
    const callId = String(first.call.call_id);
    h.trace.length = 0;
    h.loseWorker(0);
    // The interrupted call runs again on w2 without using up a retry.
    expect(h.trace).toContain(`assign w2 ${callId} a1`);
    // The dead worker's answer arrives late: not delivered, its output released.
    h.trace.length = 0;
    h.done(callId, { object: true, from: first });
    expect(h.trace).toEqual([`release w1 job-1/${callId}~${first.call.assignment}`]);
    for (let i = 0; i < 10 && h.ended.length === 0; i++) {
      h.doneAll();
      h.deliverAll();
    }
    expect(h.ended[0]!.state).toBe('finished');
    expect([...h.outputs].sort()).toEqual(['a#0', 'a#1']);
  });

  it('ignores the answer of an assignment a retry replaced', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a', maxRetries: 1 }], 1);
    const first = h.sent[0]!;
    h.fail('a#0', 'TASK_FAILED', true);
    expect(h.sent).toHaveLength(0);
    h.advance(100); // the first retry waits 100 ms
    expect(h.trace.slice(-1)).toEqual(['assign w1 a#0 a2']);
    // The first assignment answers (again) after it was retried: nothing happens.
    h.trace.length = 0;
    h.done('a#0', { from: first });
    expect(h.trace).toEqual([]);
    h.done('a#0');
    h.deliverAll();
    expect(h.outputs).toEqual(['a#0']);
    expect(h.ended[0]!.state).toBe('finished');
  });

  it('waits out the backoff on the injected clock before a retry, and skips the batch once its retries are spent', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a', maxRetries: 1 }], 2, { max_errored_batches: 1 });
    h.fail('a#0', 'TASK_FAILED', true);
    h.advance(99);
    expect(h.trace.filter((t) => t.startsWith('assign w1 a#0'))).toEqual(['assign w1 a#0 a1']);
    h.advance(1);
    expect(h.trace.filter((t) => t.startsWith('assign w1 a#0'))).toEqual(['assign w1 a#0 a1', 'assign w1 a#0 a2']);
    h.fail('a#0', 'TASK_FAILED', true);
    expect(h.trace).toContain('skipped a#0');
    h.doneAll();
    h.deliverAll();
    expect(h.outputs).toEqual(['a#1']);
    expect(h.ended[0]).toMatchObject({ state: 'finished', summary: { skipped: 1 } });
  });

  it('fails the job when a call fails for good and no batch may be skipped', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }], 3);
    h.fail('a#0', 'TASK_FAILED', true);
    expect(h.ended.map((e) => [e.state, e.error?.message])).toEqual([['failed', 'TASK_FAILED in a#0']]);
    // Its other call is still answered; the slot comes back then.
    h.doneAll();
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(1);
  });

  it('recomputes a chain: a lost batch, and the freed input it was made from, when a sink call needs them', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }, { name: 'b' }, { name: 'c' }], 1);
    h.done('a#0', { object: true });
    h.done('b#0', { object: true });
    h.addWorker(1);
    expect(h.trace.splice(0)).toEqual(['assign w1 a#0 a1', 'assign w1 b#0 a1', 'release w1 job-1/a#0~1', 'assign w1 c#0 a1']);
    // w1 dies while c#0 runs: b#0's bytes are gone, and a#0's were freed once b#0 read them.
    h.loseWorker(0);
    expect(h.trace.splice(0)).toEqual(['assign w2 a#0 a1']);
    h.done('a#0', { object: true });
    expect(h.trace.splice(0)).toEqual(['assign w2 b#0 a1']);
    h.done('b#0', { object: true });
    // a#0 is freed again; the interrupted sink call runs again once its input is back.
    expect(h.trace.splice(0)).toEqual(['release w2 job-1/a#0~4', 'assign w2 c#0 a1']);
    h.done('c#0');
    h.deliverAll();
    expect(h.trace.splice(0)).toEqual(['release w2 job-1/b#0~5', 'deliver c#0', 'ended finished']);
    expect(h.outputs).toEqual(['c#0']);
  });

  it('sends an output lost before the client had it again once it is recomputed', () => {
    const h = harness([{ cpus: 1 }, { cpus: 1 }]);
    h.start([{ name: 'a' }, { name: 'b' }], 1);
    h.done('a#0', { object: true });
    h.done('b#0', { object: true }); // a sink output kept on its worker (too big to inline)
    const owner = h.engine.job('job-1')!.undelivered.get('b#0')!.ref.data.ownerId;
    h.loseWorker(h.ids.indexOf(owner));
    h.trace.length = 0;
    h.deliverAll(); // its fetch fails: the bytes are gone
    expect(h.outputs).toEqual([]);
    h.doneAll({ object: true });
    h.doneAll({ object: true });
    expect(h.trace.filter((t) => t.startsWith('deliver'))).toEqual(['deliver b#0']);
    h.deliverAll();
    expect(h.outputs).toEqual(['b#0']);
    expect(h.ended[0]!.state).toBe('finished');
  });

  it('tells the client once that a task waits for a resource, and places it when a worker that has it joins', () => {
    const h = harness([{ cpus: 2 }]);
    h.start([{ name: 'a' }, { name: 'q', resources: { bigdb: 1 } }], 1, { infeasible_timeout_ms: 10_000 });
    h.done('a#0', { object: true });
    h.advance(5_000);
    h.advance(4_000);
    expect(h.trace.filter((t) => t.startsWith('notice'))).toEqual(['notice task "q" needs {CPU:1, bigdb:1}']);
    expect(h.ended).toEqual([]);
    h.addWorker(1, { bigdb: 1 });
    expect(h.trace.slice(-1)).toEqual(['assign w2 q#0 a1']);
    h.done('q#0');
    h.deliverAll();
    h.advance(10_000); // past the timeout: the wait is over, nothing fails
    expect(h.ended.map((e) => e.state)).toEqual(['finished']);
  });

  it('fails the job when a task stays infeasible past its timeout', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'q', resources: { bigdb: 1 } }], 1, { infeasible_timeout_ms: 10_000 });
    // The engine's own timer brings the pass that fails it: nothing else has to ask.
    h.advance(9_999);
    expect(h.ended).toEqual([]);
    h.advance(1);
    expect(h.ended.map((e) => [e.state, e.error?.code])).toEqual([['failed', 'INFEASIBLE']]);
  });

  it('stops sources while the client is blocked, and goes on when it drains', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }], 100);
    h.engine.clientBlocked('job-1', true);
    h.doneAll();
    h.doneAll();
    expect(h.sent).toHaveLength(0);
    h.trace.length = 0;
    h.engine.clientBlocked('job-1', false);
    h.engine.pass().forEach((c) => c.kind === 'assign' && h.sent.push({ workerId: c.workerId, call: c.call }));
    expect(h.sent.length).toBeGreaterThan(0);
  });
});

describe('JobEngine with a module generator', () => {
  it('pulls a few batches ahead, in order, and ignores what answers after the generator ended', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }], -1, { generator: true });
    expect(h.trace.splice(0)).toEqual(['pull w1 s0', 'pull w1 s1', 'pull w1 s2', 'pull w1 s3']);
    h.sourceBatch(0, 'batch');
    // A call of the batch, and one more pull to keep four under way.
    expect(h.trace.splice(0).sort()).toEqual(['assign w1 a#0 a1', 'pull w1 s4']);
    h.sourceBatch(1, 'done');
    // Pulls sent ahead and answered after the end: a batch (it cannot be, but) goes back, an end changes nothing.
    h.sourceBatch(2, 'batch');
    h.sourceBatch(3, 'done');
    h.sourceBatch(4, 'error');
    expect(h.trace.splice(0)).toEqual(['release w1 job-1/s2']);
    h.doneAll();
    h.deliverAll();
    expect(h.trace.filter((t) => t.startsWith('pull') || t.startsWith('assign'))).toEqual([]);
    expect(h.ended.map((e) => e.state)).toEqual(['finished']);
    expect(h.ended[0]!.summary).toMatchObject({ outputs: 1 });
  });

  it('never has more pulls under way than maxBatches leaves', () => {
    const h = harness([{ cpus: 4 }]);
    h.start([{ name: 'a' }], 2, { generator: true });
    expect(h.trace.splice(0)).toEqual(['pull w1 s0', 'pull w1 s1']);
    h.sourceBatch(0, 'batch');
    h.sourceBatch(1, 'batch');
    expect(h.trace.filter((t) => t.startsWith('pull'))).toEqual([]);
    h.doneAll();
    h.deliverAll();
    expect(h.ended[0]!.summary).toMatchObject({ outputs: 2 });
  });

  it('fails the job when the generator fails', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'a' }], -1, { generator: true });
    h.sourceBatch(0, 'error');
    expect(h.ended.map((e) => [e.state, e.error?.message])).toEqual([['failed', "the module's generator failed: the generator threw"]]);
  });
});

describe('JobEngine with fused tasks', () => {
  it('runs a chain as one call and shows each of its tasks in the stats', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'parse' }, { name: 'scale' }, { name: 'score' }], 3, {}, true);
    expect(h.sent.map((s) => s.call.call_id)).toEqual(['score#0', 'score#1']);
    const facts = h.engine.jobFacts('job-1').tasks!;
    expect(facts.map((f) => [f.task, (f.fused_before ?? []).map((b) => b.task)])).toEqual([['score', ['parse', 'scale']]]);
    // score#0: every task made one row; score#1: parse made none, so scale and score never ran.
    h.done('score#0', { stageRows: [1, 1, 1] });
    h.done('score#1', { rows: 0, stageRows: [0] });
    h.done('score#2', { stageRows: [1, 2, 2], rows: 2 });
    h.deliverAll();
    expect(h.ended[0]!.state).toBe('finished');
    const tasks = h.ended[0]!.summary.tasks;
    expect(Object.keys(tasks)).toEqual(['parse', 'scale', 'score']);
    expect(tasks.parse).toMatchObject({ calls: 3, rowsIn: 3, rowsOut: 2, emptyOutputs: 1 });
    expect(tasks.scale).toMatchObject({ calls: 2, rowsIn: 2, rowsOut: 3, emptyOutputs: 0 });
    expect(tasks.score).toMatchObject({ calls: 2, rowsIn: 3, rowsOut: 3, queuedRows: 0 });
    expect(h.outputs).toEqual(['score#0', 'score#2']);
  });
});

describe('JobEngine leases', () => {
  /**
   * Runs a job to its end, answering every call each round, or each lease's oldest `perLease`
   * (each call ran `runUs`; a round takes `stepMs` of the clock); `check` runs after each pass
   * with the calls outstanding.
   */
  function drive(h: ReturnType<typeof harness>, check: (sent: readonly Sent[]) => void, { runUs = 50, stepMs = 0, perLease = Infinity } = {}): void {
    for (let i = 0; i < 5000 && h.ended.length === 0; i++) {
      check(h.sent);
      const queued = new Map<string, number>();
      const batch = h.sent.filter((s) => {
        const n = queued.get(String(s.call.lease)) ?? 0;
        queued.set(String(s.call.lease), n + 1);
        return n < perLease;
      });
      for (const s of batch) h.sent.splice(h.sent.indexOf(s), 1);
      if (stepMs > 0) h.advance(stepMs);
      for (const s of batch) h.done(String(s.call.call_id), { from: s, runUs });
      h.deliverAll();
    }
  }

  it('queues calls behind at most one lease per free slot and delivers each batch once', () => {
    const h = harness([{ cpus: 2 }]);
    h.start([{ name: 'noop' }], 60);
    drive(h, (sent) => {
      expect(new Set(sent.map((s) => s.call.lease)).size).toBeLessThanOrEqual(2);
      expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBeGreaterThanOrEqual(0);
    });
    expect(h.ended[0]!.state).toBe('finished');
    expect(h.outputs).toHaveLength(60);
    expect(new Set(h.outputs).size).toBe(60);
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(2);
  });

  it('queues more than one call per lease once the task is known to be quick', () => {
    const h = harness([{ cpus: 1 }]);
    h.start([{ name: 'noop' }], 100);
    let deepest = 0;
    drive(h, (sent) => {
      const perLease = new Map<string, number>();
      for (const s of sent) perLease.set(String(s.call.lease), (perLease.get(String(s.call.lease)) ?? 0) + 1);
      deepest = Math.max(deepest, ...perLease.values());
    });
    expect(h.ended[0]!.state).toBe('finished');
    expect(deepest).toBeGreaterThan(2);
  });

  it('drains the leases of a task when one nearer the sink needs the whole worker', () => {
    const h = harness([{ cpus: 2 }]);
    h.start([{ name: 'a', cpus: 1 }, { name: 'wide', cpus: 2 }], 30);
    let wide = 0;
    const order: string[] = [];
    // Calls of 5 ms are not short: "a" gets no slot "wide" waits for, from the first refusal.
    const runUs = 5_000;
    drive(
      h,
      (sent) => {
        order.push(...sent.map((s) => String(s.call.task)));
        // A call of "wide" holds both CPUs: nothing else is ever sent alongside it.
        const tasks = new Set(sent.map((s) => s.call.task));
        if (tasks.has('wide')) {
          expect(tasks).toEqual(new Set(['wide']));
          wide++;
        }
        expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBeGreaterThanOrEqual(0);
      },
      { runUs, stepMs: 5 },
    );
    expect(h.ended[0]!.state).toBe('finished');
    expect(wide).toBeGreaterThan(0);
    // Priority to the task nearer the sink: "wide" runs while "a" still has batches to make,
    // not only after the source is done (its leases would otherwise never drain).
    expect(order.lastIndexOf('a')).toBeGreaterThan(order.indexOf('wide'));
    expect(h.outputs).toHaveLength(30);
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(2);
  });

  it('lets short calls take the slots a wider call waits for, for a few milliseconds, then drains once for its gathered calls', () => {
    /**
     * "wide" (both CPUs, 10 rows a call) after "a" (1 CPU): each lease's executor answers its
     * oldest 20 calls every millisecond, each reported as having run `runUs`. Per round: the
     * clock and the tasks of the calls sent.
     */
    const flow = (runUs: number): { at: number; sent: string[] }[] => {
      const h = harness([{ cpus: 2 }]);
      h.start([{ name: 'a', cpus: 1 }, { name: 'wide', cpus: 2, batchSize: 10 }], 6000);
      const rounds: { at: number; sent: string[] }[] = [];
      let seen = 0;
      drive(
        h,
        (sent) => {
          // Call ids are "task#n".
          const assigned = h.trace.slice(seen).filter((t) => t.startsWith('assign '));
          rounds.push({ at: h.now(), sent: assigned.map((t) => t.split(' ')[2]!.split('#')[0]!) });
          seen = h.trace.length;
          // A call of "wide" holds both CPUs: nothing else is ever outstanding beside it.
          const tasks = new Set(sent.map((s) => String(s.call.task)));
          if (tasks.has('wide')) expect(tasks).toEqual(new Set(['wide']));
        },
        { runUs, stepMs: 1, perLease: 20 },
      );
      expect(h.ended[0]!.state).toBe('finished');
      expect(h.outputs).toHaveLength(600);
      expect(new Set(h.outputs).size).toBe(600);
      expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(2);
      return rounds;
    };
    /** The rounds that began a run of "wide" calls (after its leases drained), and how many calls each run had. */
    const drains = (rounds: { at: number; sent: string[] }[]): { at: number; calls: number }[] => {
      const out: { at: number; calls: number }[] = [];
      rounds.forEach((r, i) => {
        const n = r.sent.filter((t) => t === 'wide').length;
        if (n === 0) return;
        if (i > 0 && rounds[i - 1]!.sent.includes('wide')) out.at(-1)!.calls += n;
        else out.push({ at: r.at, calls: n });
      });
      return out;
    };
    // 5 ms calls are not short: every "wide" call gets its own drain, from its first refusal.
    expect(drains(flow(5_000))).toHaveLength(600);
    // 50 µs calls are: "a" goes on for RESERVE_AFTER_MS, and the "wide" calls gathered meanwhile
    // (4 a millisecond) share a drain. (Refusals firm at once, they gathered 13 per drain: the
    // calls that came while "a"'s deep leases drained.)
    const short = drains(flow(50));
    expect(short.reduce((n, d) => n + d.calls, 0)).toBe(600);
    expect(short.length).toBeLessThanOrEqual(600 / 40);
    // A wait is never much longer than RESERVE_AFTER_MS: drains follow each other that closely.
    for (let i = 1; i < short.length; i++) expect(short[i]!.at - short[i - 1]!.at).toBeLessThanOrEqual(RESERVE_AFTER_MS + 10);
  });

  it('gives a cancelled job’s slots back once its calls are answered', () => {
    const h = harness([{ cpus: 2 }]);
    h.start([{ name: 'noop' }], 1000);
    expect(h.sent.length).toBeGreaterThan(0);
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(0);
    h.engine.cancel('job-1');
    // The worker answers what it held for the job (it drops queued calls as CANCELLED).
    for (const s of h.sent.splice(0)) h.fail(String(s.call.call_id), 'CANCELLED', false, s);
    expect(h.registry.get(h.ids[0]!)!.available.get('CPU')).toBe(2);
    expect(h.engine.runningCalls).toBe(0);
  });
});
