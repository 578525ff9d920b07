import {
  DplError,
  DplErrorCode,
  MAX_PENDING_CALLS_CAP,
  PipelineGraph,
  pendingCallsFor,
  StreamingScheduler,
  TaskError,
  type BatchRef,
  type TaskCall,
} from '@dpl/core';
import { counter, lengths, simTask, simulate, type Rows } from './scheduler-sim';
import { rng } from '../../../test/helpers/random';

const tenRows = (rows: Rows): Rows => rows.flatMap((r) => Array.from({ length: 10 }, () => r));

describe('StreamingScheduler golden traces (dplutils reference/dplutils-features.md §2.9)', () => {
  const dummySteps = (batchSize?: number) =>
    new PipelineGraph([simTask('task1'), simTask('task2', { batchSize })]);

  it('dummy_steps, max_batches=2: same trace as dplutils', () => {
    const { log } = simulate(dummySteps(), { task1: tenRows }, counter(), { maxBatches: 2 });
    expect(log.join(' ')).toBe(
      'task1(1) | task2(10) | OUT:task2[10] task1(1) | task2(10) | OUT:task2[10]',
    );
  });

  it('dummy_steps, task2.batchSize=5: slices instead of split jobs, so no split rounds', () => {
    // dplutils: task1(1) | split(10/5) task1(1) | split(10/5) task2(5) | OUT ... four outputs of 5.
    // dpl slices without a split job, so task2 starts one round earlier; still four calls of 5.
    const { log, outputs } = simulate(dummySteps(5), { task1: tenRows }, counter(), { maxBatches: 2 });
    expect(outputs.map((o) => o.rows.length)).toEqual([5, 5, 5, 5]);
    expect(log.join(' ')).toBe(
      'task1(1) | task2(5) | OUT:task2[5] task2(5) | OUT:task2[5] task1(1) | task2(5) | OUT:task2[5] task2(5) | OUT:task2[5]',
    );
  });

  it('dummy_steps, task2.batchSize=20, max_batches=3: merges 10+10, flushes the last 10', () => {
    const { log } = simulate(dummySteps(20), { task1: tenRows }, counter(), { maxBatches: 3 });
    expect(log.join(' ')).toBe(
      'task1(1) | task1(1) | task2(10+10) | OUT:task2[20] task1(1) | task2(10) | OUT:task2[10]',
    );
  });

  it('diamond, max_batches=2: same trace as dplutils', () => {
    const [t1, t2A, t2B, t3] = ['task1', 'task2A', 'task2B', 'task3'].map((n) => simTask(n)) as [
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
    ];
    const graph = new PipelineGraph([[t1, t2A], [t1, t2B], [t2A, t3], [t2B, t3]]);
    const { log } = simulate(graph, {}, counter(), { maxBatches: 2 });
    expect(log.join(' ')).toBe(
      'task1(1) | task2A(1) | task3(1) | OUT:task3[1] task2B(1) | task3(1) | OUT:task3[1] ' +
        'task1(1) | task2A(1) | task3(1) | OUT:task3[1] task2B(1) | task3(1) | OUT:task3[1]',
    );
  });

  it('multi_output, max_batches=2: same trace as dplutils', () => {
    const t1 = simTask('task1');
    const graph = new PipelineGraph([[t1, simTask('task2A')], [t1, simTask('task2B')]]);
    const { log } = simulate(graph, {}, counter(), { maxBatches: 2 });
    expect(log.join(' ')).toBe(
      'task1(1) | task2A(1) | OUT:task2A[1] task2B(1) | OUT:task2B[1] task1(1) | task2A(1) | OUT:task2A[1] task2B(1) | OUT:task2B[1]',
    );
  });

  it('multi_source (srcA bs=4, srcB), max_batches=4 and 10: same outputs as dplutils', () => {
    const sink = simTask('sink');
    const graph = () => new PipelineGraph([[simTask('srcA', { batchSize: 4 }), sink], [simTask('srcB'), sink]]);
    const four = simulate(graph(), {}, counter(), { maxBatches: 4 });
    expect(four.log.slice(0, 6).join(' ')).toBe('srcA(1+1+1+1) | sink(4) | OUT:sink[4] srcB(1)');
    expect(four.outputs.map((o) => o.rows.length)).toEqual([4, 1, 1, 1, 1]);
    const ten = simulate(graph(), {}, counter(), { maxBatches: 10 });
    expect(ten.outputs.map((o) => o.rows.length)).toEqual([4, 1, 1, 1, 1, 4, 1, 1, 1, 1, 2, 1, 1]);
  });

  it('merges source batches in generator order (fixes dplutils LIFO [[2,1,0],[5,4,3]])', () => {
    const { outputs } = simulate(new PipelineGraph([simTask('t', { batchSize: 3 })]), {}, lengths(1, 1, 1, 1, 1, 1));
    expect(outputs.map((o) => o.rows)).toEqual([[0, 1, 2], [3, 4, 5]]);
  });

  it('merges non-source batches in order', () => {
    const graph = new PipelineGraph([simTask('s'), simTask('t', { batchSize: 3 })]);
    const { outputs } = simulate(graph, {}, lengths(1, 1, 1, 1, 1, 1));
    expect(outputs.map((o) => o.rows)).toEqual([[0, 1, 2], [3, 4, 5]]);
  });

  it('gives calls of exactly batchSize rows (dplutils: 10,15,7,3 -> [25, 10]; dpl: [20, 15])', () => {
    const graph = new PipelineGraph([simTask('s'), simTask('t', { batchSize: 20 })]);
    const { outputs } = simulate(graph, {}, lengths(10, 15, 7, 3));
    expect(outputs.map((o) => o.rows.length)).toEqual([20, 15]);
    expect(outputs.flatMap((o) => o.rows)).toEqual(Array.from({ length: 35 }, (_, i) => i));
  });

  it('splits an oversize batch into exact batches (dplutils: 45,3 -> [33, 15]; dpl: [20, 20, 8])', () => {
    const graph = new PipelineGraph([simTask('s'), simTask('t', { batchSize: 20 })]);
    const { outputs } = simulate(graph, {}, lengths(45, 3));
    expect(outputs.map((o) => o.rows.length)).toEqual([20, 20, 8]);
  });

  it('batches a single source exactly, in order (dplutils: 45,3 -> [30, 18])', () => {
    const { outputs } = simulate(new PipelineGraph([simTask('t', { batchSize: 20 })]), {}, lengths(45, 3));
    expect(outputs.map((o) => o.rows)).toEqual([
      Array.from({ length: 20 }, (_, i) => i),
      Array.from({ length: 20 }, (_, i) => 20 + i),
      [40, 41, 42, 43, 44, 45, 46, 47],
    ]);
  });

  it('drops and counts an empty generator batch (dplutils ran the task on 0 rows)', () => {
    const { log, outputs, scheduler } = simulate(new PipelineGraph([simTask('t')]), {}, lengths(0, 1));
    expect(log.filter((l) => l.startsWith('t('))).toEqual(['t(1)']);
    expect(outputs.map((o) => o.rows.length)).toEqual([1]);
    expect(scheduler.stats().emptySourceBatches).toBe(1);
  });

  it('drops and counts empty task outputs; they reach neither children nor the consumer', () => {
    const graph = new PipelineGraph([simTask('a'), simTask('b')]);
    const { outputs, counts, scheduler } = simulate(graph, { a: (r) => (r[0]! % 2 === 0 ? [] : r) }, counter(), {
      maxBatches: 6,
    });
    expect(outputs.map((o) => o.rows)).toEqual([[1], [3], [5]]);
    expect(counts.b).toBe(3);
    expect(scheduler.stats().tasks.a!.emptyOutputs).toBe(3);
  });

  it('prioritises tasks nearest the sinks and alternates equal ranks (4 submissions per poll)', () => {
    const a = simTask('a', { batchSize: 16 });
    const [b, c, d, e] = ['b', 'c', 'd', 'e'].map((n) => simTask(n, { batchSize: 1 })) as [
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
      ReturnType<typeof simTask>,
    ];
    const graph = () => new PipelineGraph([[a, b], [b, c], [c, d], [c, e]]);
    const run = (n: number) => simulate(graph(), {}, counter(), { maxBatches: 16, serial: false, perPoll: 4, stopAfterOutputs: n });
    // dplutils' own assertions, at the same points; its log has an extra empty round for the
    // split job that dpl does not need: a(16) | | b b b b | c c c c | d e d e |
    const first = run(4);
    expect(first.log.join(' ')).toBe(
      'a(1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1) | b(1) b(1) b(1) b(1) | c(1) c(1) c(1) c(1) | d(1) e(1) d(1) e(1) | OUT:d[1] OUT:e[1] OUT:d[1] OUT:e[1]',
    );
    expect([first.counts.d, first.counts.e, first.counts.b, first.counts.c]).toEqual([2, 2, 4, 4]);
    const second = run(8);
    expect([second.counts.d, second.counts.e, second.counts.b, second.counts.c]).toEqual([4, 4, 4, 4]);
    const third = run(12);
    expect([third.counts.d, third.counts.e, third.counts.b, third.counts.c]).toEqual([6, 6, 8, 8]);
    expect(run(Infinity).outputs).toHaveLength(32);
  });

  it('ends at once with maxBatches 0 (dplutils treated 0 as unlimited)', () => {
    const { outputs, counts } = simulate(new PipelineGraph([simTask('t')]), {}, counter(), { maxBatches: 0 });
    expect(outputs).toEqual([]);
    expect(counts).toEqual({});
  });
});

describe('StreamingScheduler state machine', () => {
  const line = () => new PipelineGraph([simTask('a'), simTask('b')]);
  const always = (calls: TaskCall<Rows>[]) => ({ fits: () => true, submit: (c: TaskCall<Rows>) => void calls.push(c) });

  it('keeps sources paused while maxPendingCalls calls are open or ready', () => {
    const s = new StreamingScheduler<Rows>(line(), { maxPendingCalls: 3 });
    const calls: TaskCall<Rows>[] = [];
    const backend = always(calls);
    let pulls = 0;
    for (let i = 0; i < 50; i++) {
      const r = s.schedule(backend);
      if (!r.wantsSourceData) break;
      s.addSourceBatch([i], 1);
      pulls++;
    }
    // Nothing completes, so after 3 open calls the source asks for no more data.
    expect(calls).toHaveLength(3);
    expect(pulls).toBe(3);
    expect(s.schedule(backend).wantsSourceData).toBe(false);
  });

  it('holds sources back when told to, and still runs downstream work', () => {
    const s = new StreamingScheduler<Rows>(line());
    const calls: TaskCall<Rows>[] = [];
    s.addSourceBatch([1], 1);
    s.schedule(always(calls));
    s.complete(calls[0]!.id, { rows: 1, data: [1] });
    s.addSourceBatch([2], 1);
    const r = s.schedule(always(calls), false);
    expect(calls.map((c) => c.task)).toEqual(['a', 'b']);
    expect(r.wantsSourceData).toBe(false);
  });

  it('retries a failed call with the same id and inputs, then fails for good after maxRetries', () => {
    const graph = new PipelineGraph([simTask('a').with({ maxRetries: 1 })]);
    const s = new StreamingScheduler<Rows>(graph, { maxBatches: 1 });
    const calls: TaskCall<Rows>[] = [];
    s.addSourceBatch([7], 1);
    s.schedule(always(calls));
    const err = new TaskError('a', 'a#0', 1, 'boom');
    expect(s.fail(calls[0]!.id, err)).toBe('retry');
    expect(s.schedule(always(calls)).submitted).toBe(0); // waits for retry()
    s.retry(calls[0]!.id);
    s.schedule(always(calls));
    expect(calls[1]).toMatchObject({ id: 'a#0', attempt: 2, inputs: calls[0]!.inputs });
    expect(s.fail(calls[1]!.id, new TaskError('a', 'a#0', 2, 'boom'))).toBe('fatal');
    expect(s.isDone()).toBe(false);
  });

  it('runs an interrupted call again as the same attempt, without using up a retry', () => {
    const graph = new PipelineGraph([simTask('a').with({ maxRetries: 0 })]);
    const s = new StreamingScheduler<Rows>(graph, { maxBatches: 1 });
    const calls: TaskCall<Rows>[] = [];
    s.addSourceBatch([7], 1);
    s.schedule(always(calls));
    for (let i = 0; i < 3; i++) {
      s.interrupt(calls[i]!.id); // e.g. its worker was lost
      expect(s.stats().tasks.a!.running).toBe(0);
      s.retry(calls[i]!.id);
      s.schedule(always(calls));
    }
    expect(calls.map((c) => [c.id, c.attempt])).toEqual([['a#0', 1], ['a#0', 1], ['a#0', 1], ['a#0', 1]]);
    expect(s.stats().tasks.a!.retries).toBe(0);
    expect(s.complete('a#0', { rows: 1, data: [7] })).toMatchObject({ id: 'a#0' });
    expect(s.isDone()).toBe(true);
    expect(() => s.interrupt('a#0')).toThrow('not running');
  });

  it('never retries errors that are final (INFEASIBLE, CANCELLED, VALIDATION)', () => {
    const s = new StreamingScheduler<Rows>(new PipelineGraph([simTask('a')]), { maxBatches: 1 });
    const calls: TaskCall<Rows>[] = [];
    s.addSourceBatch([1], 1);
    s.schedule(always(calls));
    expect(s.fail(calls[0]!.id, new DplError(DplErrorCode.INFEASIBLE, 'no gpu'))).toBe('fatal');
  });

  it('ignores a second completion of the same call (exactly once)', () => {
    const s = new StreamingScheduler<Rows>(new PipelineGraph([simTask('a')]), { maxBatches: 1 });
    const calls: TaskCall<Rows>[] = [];
    s.addSourceBatch([1], 1);
    s.schedule(always(calls));
    expect(s.complete(calls[0]!.id, { rows: 1, data: [1] })).toBeDefined();
    expect(s.complete(calls[0]!.id, { rows: 1, data: [1] })).toBeUndefined();
    expect(s.stats().outputs).toBe(1);
    expect(s.isDone()).toBe(true);
  });

  it('rejects a bad maxBatches', () => {
    expect(() => new StreamingScheduler(line(), { maxBatches: -1 })).toThrow('maxBatches must be an integer >= 0, got -1');
  });
});


describe('StreamingScheduler invariants on random DAGs with random completion order', () => {
  it.each(Array.from({ length: 40 }, (_, i) => i + 1))('seed %i', (seed) => {
    const rand = rng(seed);
    const n = 1 + Math.floor(rand() * 6);
    const tasks = Array.from({ length: n }, (_, i) =>
      simTask(`t${i}`, { batchSize: rand() < 0.5 ? undefined : 1 + Math.floor(rand() * 7) }),
    );
    const edges: [(typeof tasks)[number], (typeof tasks)[number]][] = [];
    for (let j = 1; j < n; j++) {
      // Each task gets 1-2 parents among the earlier ones: a random DAG, connected.
      const parents = new Set([Math.floor(rand() * j), Math.floor(rand() * j)]);
      for (const p of parents) edges.push([tasks[p]!, tasks[j]!]);
    }
    const graph = n === 1 ? new PipelineGraph([tasks[0]!]) : new PipelineGraph(edges);
    const released = new Set<string>();
    const s = new StreamingScheduler<Rows>(graph, {
      maxPendingCalls: 1 + Math.floor(rand() * 8),
      onRelease: (ref: BatchRef<Rows>) => {
        expect(released.has(ref.id)).toBe(false); // released once
        released.add(ref.id);
      },
    });
    const capacity = 1 + Math.floor(rand() * 4);
    const running: TaskCall<Rows>[] = [];
    const shortCalls = new Map<string, number>();
    const backend = {
      fits: () => running.length < capacity,
      submit: (call: TaskCall<Rows>) => {
        for (const sl of call.inputs) expect(released.has(sl.ref.id)).toBe(false); // inputs still held
        const bs = graph.taskMap.get(call.task)!.batchSize;
        if (bs !== undefined) {
          expect(call.rows).toBeLessThanOrEqual(bs);
          if (call.rows < bs) shortCalls.set(call.task, (shortCalls.get(call.task) ?? 0) + 1);
        }
        running.push(call);
      },
    };
    const batches = 1 + Math.floor(rand() * 25);
    let value = 0;
    let sourceRows = 0;
    const outputs: { id: string; task: string; rows: Rows }[] = [];
    for (let step = 0; step < 100_000 && !s.isDone(); step++) {
      const r = s.schedule(backend);
      if (r.wantsSourceData) {
        if (sourceRows > 0 && value >= 0 && s.stats().sourceBatches + s.stats().emptySourceBatches >= batches) s.endSource();
        else {
          const len = Math.floor(rand() * 5);
          const rows = Array.from({ length: len }, () => value++);
          sourceRows += len;
          s.addSourceBatch(rows, len);
        }
        continue;
      }
      expect(running.length).toBeGreaterThan(0); // not done and nothing to do would be a deadlock
      const call = running.splice(Math.floor(rand() * running.length), 1)[0]!;
      const input = call.inputs.flatMap((sl) => sl.ref.data.slice(sl.offset, sl.offset + sl.rows));
      const out = s.complete(call.id, { rows: input.length, data: input });
      if (out !== undefined) outputs.push({ id: out.id, task: out.task, rows: out.ref.data });
    }
    expect(s.isDone()).toBe(true);
    // Each output once.
    expect(new Set(outputs.map((o) => o.id)).size).toBe(outputs.length);
    // Row conservation: a sink receives every source row once per path from the sources.
    const paths = new Map<string, number>();
    for (const t of graph.tasks) {
      const preds = graph.predecessors(t.name);
      paths.set(t.name, preds.length === 0 ? 1 : preds.reduce((k, p) => k + paths.get(p)!, 0));
    }
    for (const sink of graph.sinkTasks) {
      const got = outputs.filter((o) => o.task === sink.name).flatMap((o) => o.rows).sort((x, y) => x - y);
      const want = Array.from({ length: value }, (_, v) => Array<number>(paths.get(sink.name)!).fill(v)).flat();
      expect(got).toEqual(want);
    }
    // At most one call smaller than batchSize per task: the final flush.
    for (const count of shortCalls.values()) expect(count).toBeLessThanOrEqual(1);
  });
});

describe('pendingCallsFor', () => {
  it('allows 4 calls per CPU, at least 16, and never more than the cap however many CPUs are claimed', () => {
    expect(pendingCallsFor(0)).toBe(16);
    expect(pendingCallsFor(2)).toBe(16);
    expect(pendingCallsFor(8)).toBe(32);
    expect(pendingCallsFor(1e9)).toBe(MAX_PENDING_CALLS_CAP);
    expect(pendingCallsFor(Infinity)).toBe(MAX_PENDING_CALLS_CAP);
    expect(pendingCallsFor(NaN)).toBe(MAX_PENDING_CALLS_CAP);
  });
});
