/**
 * A driver for StreamingScheduler over plain arrays of row values, for golden traces and
 * invariant checks. Calls complete at the next "poll", as in dplutils' LocalSerialExecutor.
 */
import { PipelineGraph, PipelineTask, StreamingScheduler, type TaskCall } from '@dpl/core';
import type { Table } from 'apache-arrow';

export type Rows = number[];

export interface SimOptions {
  maxBatches?: number;
  /** true: at most one submission (of any task) per poll, like LocalSerialExecutor. */
  serial?: boolean;
  /** With serial false: submissions per poll before non-source tasks are refused. */
  perPoll?: number;
  /** Stop after this many outputs (the sim returns early, like a consumer that stops pulling). */
  stopAfterOutputs?: number;
  maxPendingCalls?: number;
}

export interface SimResult {
  log: string[];
  outputs: { task: string; rows: Rows }[];
  counts: Record<string, number>;
  scheduler: StreamingScheduler<Rows>;
}

/** A task over plain row arrays (its fn is not used by the simulator). */
export function simTask(name: string, opts: { batchSize?: number } = {}): PipelineTask {
  return new PipelineTask(name, (df: Table) => df, opts);
}

export function simulate(
  graph: PipelineGraph,
  fns: Record<string, (rows: Rows) => Rows>,
  generator: Iterable<Rows>,
  opts: SimOptions = {},
): SimResult {
  const scheduler = new StreamingScheduler<Rows>(graph, {
    maxBatches: opts.maxBatches,
    maxPendingCalls: opts.maxPendingCalls,
  });
  const log: string[] = [];
  const outputs: { task: string; rows: Rows }[] = [];
  const counts: Record<string, number> = {};
  const gen = generator[Symbol.iterator]();
  let pending: { call: TaskCall<Rows>; out: Rows }[] = [];
  let submittedThisPoll = 0;
  const backend = {
    fits: (_task: string, ctx: { isSource: boolean }) =>
      opts.serial !== false ? submittedThisPoll === 0 : ctx.isSource || submittedThisPoll < (opts.perPoll ?? 1),
    submit: (call: TaskCall<Rows>) => {
      submittedThisPoll++;
      counts[call.task] = (counts[call.task] ?? 0) + 1;
      const input = call.inputs.flatMap((s) => s.ref.data.slice(s.offset, s.offset + s.rows));
      const fn = fns[call.task] ?? ((r: Rows) => r);
      pending.push({ call, out: fn(input) });
      log.push(`${call.task}(${call.inputs.map((s) => s.rows).join('+')})`);
    },
  };
  for (let round = 0; round < 100_000; round++) {
    for (const p of pending) {
      const out = scheduler.complete(p.call.id, { rows: p.out.length, data: p.out });
      if (out !== undefined) {
        outputs.push({ task: out.task, rows: out.ref.data });
        log.push(`OUT:${out.task}[${out.ref.rows}]`);
        if (opts.stopAfterOutputs !== undefined && outputs.length >= opts.stopAfterOutputs) {
          return { log, outputs, counts, scheduler };
        }
      }
    }
    pending = [];
    if (scheduler.isDone()) return { log, outputs, counts, scheduler };
    submittedThisPoll = 0;
    for (;;) {
      const r = scheduler.schedule(backend);
      if (!r.wantsSourceData) break;
      const next = gen.next();
      if (next.done === true) scheduler.endSource();
      else scheduler.addSourceBatch(next.value, next.value.length);
    }
    log.push('|');
  }
  throw new Error('simulation did not end');
}

/** Generator batches of the given lengths, with consecutive row values. */
export function* lengths(...ls: number[]): Generator<Rows> {
  let v = 0;
  for (const l of ls) {
    yield Array.from({ length: l }, () => v++);
  }
}

/** The endless default-like source: one row per batch, values 0, 1, 2, … */
export function* counter(): Generator<Rows> {
  for (let i = 0; ; i++) yield [i];
}
