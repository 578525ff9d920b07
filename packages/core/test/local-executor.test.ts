import { Table, tableFromArrays } from 'apache-arrow';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LocalExecutor,
  PipelineGraph,
  PipelineTask,
  TaskError,
  assign,
  column,
  isDplError,
  readParquet,
  type OutputBatch,
} from '@dpl/core';
import { intTable, values } from '../../../test/helpers/tables';

const identity = (name: string, opts = {}) => new PipelineTask(name, (df) => df, opts);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function collect(run: AsyncIterable<OutputBatch>): Promise<OutputBatch[]> {
  const out: OutputBatch[] = [];
  for await (const b of run) out.push(b);
  return out;
}

describe('LocalExecutor', () => {
  it('streams the default { run_id, id } source through the tasks', async () => {
    const ex = new LocalExecutor([identity('a'), identity('b', { batchSize: 3 })], { maxBatches: 7, numCpus: 2 });
    const run = ex.run();
    const out = await collect(run);
    expect(out.map((b) => b.data.numRows)).toEqual([3, 3, 1]);
    expect(out.flatMap((b) => values(b.data, 'id'))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(new Set(out.flatMap((b) => [...column(b.data, 'run_id')]))).toEqual(new Set([run.runId]));
    expect(out.map((b) => b.task)).toEqual(['b', 'b', 'b']);
    expect(out.map((b) => b.id)).toEqual(['b#0', 'b#1', 'b#2']);
  });

  it('passes kwargs and context values to every call, context winning', async () => {
    const seen: unknown[] = [];
    const t = new PipelineTask(
      't',
      (df, kwargs) => {
        seen.push(kwargs);
        return df;
      },
      { kwargs: { a: 1, b: 2 }, contextKwargs: { b: 'bee' } },
    );
    const ex = new LocalExecutor([t], { maxBatches: 2 }).setContext('bee', 'B').setConfig('t.kwargs.a', 10);
    await collect(ex.run());
    expect(seen).toEqual([{ a: 10, b: 'B' }, { a: 10, b: 'B' }]);
  });

  it('gives each call its own kwargs object', async () => {
    const t = new PipelineTask('t', (df, kwargs) => {
      expect(kwargs.n).toBe(1);
      kwargs.n = 99;
      return df;
    }, { kwargs: { n: 1 } });
    await collect(new LocalExecutor([t], { maxBatches: 3 }).run());
  });

  it('never runs more calls at once than the CPUs allow', async () => {
    let running = 0;
    let peak = 0;
    const slow = new PipelineTask('slow', async (df) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(5);
      running--;
      return df;
    }, { numCpus: 1 });
    const out = await collect(new LocalExecutor([slow], { maxBatches: 20, numCpus: 3 }).run());
    expect(out).toHaveLength(20);
    expect(peak).toBe(3);
  });

  it('counts fractional GPUs and custom resources against what it is given', async () => {
    const running = new Map<string, number>();
    const peaks = new Map<string, number>();
    const track = (name: string) => async (df: Table) => {
      running.set(name, (running.get(name) ?? 0) + 1);
      peaks.set(name, Math.max(peaks.get(name) ?? 0, running.get(name)!));
      await sleep(5);
      running.set(name, running.get(name)! - 1);
      return df;
    };
    const gpu = new PipelineTask('gpu', track('gpu'), { numCpus: 0, numGpus: 0.25 });
    const db = new PipelineTask('db', track('db'), { numCpus: 0, resources: { bigdb: 1 } });
    const ex = new LocalExecutor([gpu, db], { maxBatches: 30, numCpus: 8, numGpus: 1, resources: { bigdb: 2 } });
    expect(await collect(ex.run())).toHaveLength(30);
    expect(peaks.get('gpu')).toBe(4);
    expect(peaks.get('db')).toBe(2);
  });

  it('reports a task whose request can never fit as a validation problem', () => {
    const ex = new LocalExecutor([identity('embed', { numGpus: 1 }), identity('q', { resources: { bigdb: 1 } })], { numGpus: 0 });
    expect(() => ex.run()).toThrow(/task "embed" needs \{CPU:1, GPU:1\} but no call can ever fit: GPU>=1 \(this machine has 0\)/);
    expect(ex.problems()).toHaveLength(2);
    expect(ex.problems()[1]).toContain('bigdb>=1 (this machine has 0)');
  });

  it('runs sync and async generators, and closes the generator when the consumer stops', async () => {
    let closed = false;
    async function* gen() {
      try {
        for (let i = 0; ; i++) yield intTable([i, i]);
      } finally {
        closed = true;
      }
    }
    const ex = new LocalExecutor([identity('a')], { generator: gen });
    let n = 0;
    for await (const b of ex.run()) {
      expect(b.data.numRows).toBe(2);
      if (++n === 5) break;
    }
    expect(closed).toBe(true);
    const sync = new LocalExecutor([identity('a')], { generator: () => [intTable([1]), intTable([2, 3])] });
    expect((await collect(sync.run())).map((b) => values(b.data))).toEqual([[1], [2, 3]]);
  });

  it('keeps no state between runs: an abandoned run leaks nothing into the next', async () => {
    const a = identity('a');
    const graph = new PipelineGraph([[a, identity('b')], [a, identity('c')]]);
    const ex = new LocalExecutor(graph, { maxBatches: 1 });
    const first = ex.run();
    for await (const _ of first) break; // take one output, abandon the other
    const second = ex.run();
    const out = await collect(second);
    expect(out).toHaveLength(2);
    expect(second.runId).not.toBe(first.runId);
    expect(out.every((b) => column(b.data, 'run_id').get(0) === second.runId)).toBe(true);
  });

  it('retries a failing call and then succeeds, with the same batch', async () => {
    const attempts: number[] = [];
    const flaky = new PipelineTask('flaky', (df) => {
      attempts.push(values(df, 'id')[0]!);
      if (attempts.length < 3) throw new Error('transient');
      return df;
    }, { maxRetries: 3 });
    const out = await collect(new LocalExecutor([flaky], { maxBatches: 1, retryBackoffMs: 1 }).run());
    expect(attempts).toEqual([0, 0, 0]);
    expect(out).toHaveLength(1);
  });

  it('fails the run naming the task, the batch, the attempt and the cause, after the retries', async () => {
    let calls = 0;
    const boom = new PipelineTask('boom', () => {
      calls++;
      throw new Error('bad input row');
    }, { maxRetries: 2 });
    const run = new LocalExecutor([identity('ok'), boom], { maxBatches: 1, retryBackoffMs: 1 }).run();
    const err = await collect(run).then(() => undefined, (e: unknown) => e);
    expect(isDplError(err, 'TASK_FAILED')).toBe(true);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).message).toBe(
      'task "boom" failed on batch boom#0 (inputs ok#0; attempt 3 of 3): bad input row',
    );
    expect((err as TaskError).remoteStack).toContain('bad input row');
    expect(calls).toBe(3);
  });

  it('delivers outputs finished before a failure, then the error', async () => {
    const t = new PipelineTask('t', (df) => {
      if (values(df, 'id')[0] === 2) throw new Error('no 2');
      return df;
    }, { maxRetries: 0 });
    const got: number[] = [];
    const run = new LocalExecutor([t], { maxBatches: 10, numCpus: 1 }).run();
    await expect((async () => {
      for await (const b of run) got.push(values(b.data, 'id')[0]!);
    })()).rejects.toThrow('task "t" failed on batch t#2');
    expect(got).toEqual([0, 1]);
  });

  it('fails a call whose task returns something other than a Table at once, without its retries', async () => {
    let calls = 0;
    const bad = new PipelineTask('bad', () => (calls++, { rows: [] }) as unknown as Table, { maxRetries: 3 });
    await expect(collect(new LocalExecutor([bad], { maxBatches: 1, retryBackoffMs: 1 }).run())).rejects.toThrow(
      'task "bad" failed on batch bad#0 (inputs s0; attempt 1 of 4): returned {"rows":[]}, not an Arrow Table; a task must return a Table (not retried: it would return the same again)',
    );
    expect(calls).toBe(1);
  });

  it('fails a call that outlives its timeoutMs, after its retries', async () => {
    let calls = 0;
    const hang = new PipelineTask('hang', () => (calls++, new Promise<Table>(() => undefined)), { maxRetries: 1, timeoutMs: 30 });
    await expect(collect(new LocalExecutor([hang], { maxBatches: 1, retryBackoffMs: 1 }).run())).rejects.toThrow(
      'task "hang" failed on batch hang#0 (inputs s0; attempt 2 of 2): it ran longer than its timeoutMs of 30 ms and was abandoned',
    );
    expect(calls).toBe(2);
  });

  it('skips up to maxErroredBatches failing batches, listing them, and fails on the next', async () => {
    const pick = new PipelineTask(
      'pick',
      (df: Table) => {
        if (Number(df.getChild('id')!.get(0)) % 4 === 1) throw new Error('bad batch');
        return df;
      },
      { maxRetries: 1 },
    );
    const run = new LocalExecutor([pick], { maxBatches: 8, retryBackoffMs: 1, maxErroredBatches: 2 }).run();
    const out = await collect(run);
    expect(out.map((b) => Number(b.data.getChild('id')!.get(0)))).toEqual([0, 2, 3, 4, 6, 7]);
    expect(run.erroredBatches).toEqual([
      { id: 'pick#1', task: 'pick', inputs: ['s1'], message: expect.stringContaining('attempt 2 of 2): bad batch') as unknown },
      { id: 'pick#5', task: 'pick', inputs: ['s5'], message: expect.stringContaining('attempt 2 of 2): bad batch') as unknown },
    ]);
    expect(run.stats().tasks.pick!.skipped).toBe(2);
    const strict = new LocalExecutor([pick], { maxBatches: 8, retryBackoffMs: 1, maxErroredBatches: 1 });
    await expect(collect(strict.run())).rejects.toThrow('task "pick" failed on batch pick#5');
  });

  it('fails the run when the generator yields a non-Table or throws', async () => {
    const ex = new LocalExecutor([identity('a')], { generator: () => [1 as unknown as Table] });
    await expect(collect(ex.run())).rejects.toThrow('the generator yielded 1, not an Arrow Table');
    const thrower = new LocalExecutor([identity('a')], {
      generator: function* () {
        yield intTable([1]);
        throw new Error('source down');
      },
    });
    await expect(collect(thrower.run())).rejects.toThrow('the generator threw: source down');
  });

  it('does not pile up work for a slow consumer: generator pulls stay bounded', async () => {
    let pulled = 0;
    function* gen() {
      for (;;) {
        pulled++;
        yield intTable([pulled]);
      }
    }
    const ex = new LocalExecutor([identity('a'), identity('b')], { generator: gen, maxBufferedOutputs: 4, maxPendingCalls: 8 });
    const it = ex.run()[Symbol.asyncIterator]();
    await it.next();
    await sleep(200); // the consumer stalls
    const stalled = pulled;
    await sleep(200);
    expect(pulled).toBe(stalled); // nothing more was pulled while the consumer waited
    expect(stalled).toBeLessThan(4 + 8 + 4);
    await it.return?.();
  });

  it('drops empty batches from the generator and from tasks, and counts them', async () => {
    const filter = new PipelineTask('filter', (df) => df.slice(0, values(df)[0]! % 2));
    const run = new LocalExecutor([filter], {
      generator: () => [intTable([]), intTable([1]), intTable([2]), intTable([3])],
    }).run();
    const out = await collect(run);
    expect(out.map((b) => values(b.data))).toEqual([[1], [3]]);
    expect(run.stats().emptySourceBatches).toBe(1);
    expect(run.stats().tasks.filter!.emptyOutputs).toBe(1);
  });

  it('validates before anything runs and reports every problem at once', () => {
    const fn = jest.fn((df: Table) => df);
    const ex = new LocalExecutor([new PipelineTask('t', fn, { required: ['x'], contextKwargs: { y: 'why' } })])
      .setConfig('t.batchSize', 0)
      .setConfig('nope.kwargs.a', 1);
    expect(() => ex.run()).toThrow(/4 problems/);
    expect(fn).not.toHaveBeenCalled();
  });

  it('writes parquet files named from the run id and a counter, in task= folders for several sinks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dpl-write-'));
    try {
      const src = identity('src');
      const ex = new LocalExecutor(new PipelineGraph([[src, identity('left')], [src, identity('right')]]), { maxBatches: 3 });
      const summary = await ex.writeTo(dir);
      expect(summary.batches).toBe(6);
      expect(readdirSync(dir).sort()).toEqual(['task=left', 'task=right']);
      const left = readdirSync(join(dir, 'task=left'));
      expect(left).toHaveLength(3);
      for (const f of left) expect(f).toMatch(new RegExp(`^${summary.runId}-\\d+\\.parquet$`));
      const all = summary.files.map((f) => readParquet(readFileSync(f)));
      expect(all.reduce((n, t) => n + t.numRows, 0)).toBe(6);

      const one = mkdtempSync(join(tmpdir(), 'dpl-write-'));
      const s2 = await new LocalExecutor([identity('only')], { maxBatches: 2 }).writeTo(one);
      expect(readdirSync(one).sort()).toEqual([`${s2.runId}-0.parquet`, `${s2.runId}-1.parquet`]);
      rmSync(one, { recursive: true });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('stops writing when its signal aborts, keeping whole files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dpl-abort-'));
    try {
      const controller = new AbortController();
      const ex = new LocalExecutor([identity('a')]);
      const summary = await ex.writeTo(dir, {
        signal: controller.signal,
        onBatch: () => {
          if (summary0.n++ === 4) controller.abort();
        },
      });
      expect(summary.cancelled).toBe(true);
      expect(summary.batches).toBeGreaterThanOrEqual(5);
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
  const summary0 = { n: 0 };

  it('runs the quickstart pipeline with typed columns', async () => {
    const generate = new PipelineTask('generate', (df) =>
      assign(df, { sample: Float64Array.from({ length: df.numRows }, () => 0.123456) }));
    const round = new PipelineTask('round', (df, { decimals }) => {
      const f = 10 ** (decimals as number);
      return assign(df, { rounded: (column(df, 'sample').toArray() as Float64Array).map((v) => Math.round(v * f) / f) });
    }, { batchSize: 10, kwargs: { decimals: 1 } });
    const ex = new LocalExecutor([generate, round], { maxBatches: 25 }).setConfig('round.kwargs.decimals', 2);
    const out = await collect(ex.run());
    expect(out.map((b) => b.data.numRows)).toEqual([10, 10, 5]);
    expect(column(out[0]!.data, 'rounded').get(0)).toBe(0.12);
    expect(out[0]!.data).toEqualTable(out[0]!.data);
    expect(tableFromArrays({ x: [1] }).numRows).toBe(1);
  });
});
