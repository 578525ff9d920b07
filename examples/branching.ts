/**
 * A branching pipeline with two sinks: `measure` makes one reading per row; `flag` keeps the
 * readings above a threshold (one sink), `summarize` reduces each batch of 25 rows to its mean
 * and maximum (the other sink). Written with -o, each sink gets its own hive folder:
 * out/task=flag/… and out/task=summarize/… (read both with DuckDB's hive_partitioning).
 *
 *   npx --no dpl run examples/branching.ts -n 100 -o out/
 *   npx --no dpl run examples/branching.ts -n 100 -s flag.kwargs.threshold=0.9
 */
import { PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';

export const measure = new PipelineTask('measure', (df: Table) =>
  assign(df, { reading: Float64Array.from({ length: df.numRows }, () => Math.random()) }),
);

export const flag = new PipelineTask(
  'flag',
  (df: Table, { threshold }: Record<string, unknown>) => {
    const reading = column(df, 'reading').toArray() as Float64Array;
    const keep: number[] = [];
    reading.forEach((v, i) => {
      if (v > Number(threshold)) keep.push(i);
    });
    const ids = column(df, 'id').toArray() as BigInt64Array;
    return new Table({
      id: makeVector(BigInt64Array.from(keep, (i) => ids[i]!)),
      reading: makeVector(Float64Array.from(keep, (i) => reading[i]!)),
    });
  },
  { kwargs: { threshold: 0.75 } },
);

export const summarize = new PipelineTask(
  'summarize',
  (df: Table) => {
    const reading = column(df, 'reading').toArray() as Float64Array;
    const ids = column(df, 'id').toArray() as BigInt64Array;
    const mean = reading.reduce((s, v) => s + v, 0) / Math.max(1, reading.length);
    return new Table({
      first_id: makeVector(BigInt64Array.of(ids[0] ?? 0n)),
      rows: makeVector(Int32Array.of(df.numRows)),
      mean: makeVector(Float64Array.of(mean)),
      max: makeVector(Float64Array.of(Math.max(...reading))),
    });
  },
  { batchSize: 25 },
);

export default new PipelineGraph([
  [measure, flag],
  [measure, summarize],
]);
