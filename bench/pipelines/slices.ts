/**
 * A task that returns rows of its stored input, whose output two tasks read (bench:ab's case for
 * views): `expand` makes 100,000 rows per one-row source batch (~1.2 MB), which `recent` and
 * `check` read; `recent` drops the first fifth of them (a slice: the warm-up of a simulated run),
 * and `score` and `spread` each reduce `recent`'s rows to one. Every task here but the sinks
 * feeds two, so the head fuses none of them: `expand`'s output is stored, and so is `recent`'s,
 * as a view of `expand`'s object since views (written again before).
 */
import { PipelineGraph, PipelineTask, column } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';
import { expand } from './rows';

const ROWS = 100_000; // expand's

const recent = (df: Table): Table => df.slice(ROWS / 5);

const score = (df: Table): Table => {
  const x = column(df, 'x').toArray() as Float64Array;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i]!;
  return new Table({ mean: makeVector(Float64Array.of(sum / x.length)) });
};

const spread = (df: Table): Table => {
  const x = column(df, 'x').toArray() as Float64Array;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < x.length; i++) {
    lo = Math.min(lo, x[i]!);
    hi = Math.max(hi, x[i]!);
  }
  return new Table({ range: makeVector(Float64Array.of(hi - lo)) });
};

const check = (df: Table): Table => new Table({ rows: makeVector(Int32Array.of(df.numRows)) });

const expandTask = new PipelineTask('expand', expand);
const recentTask = new PipelineTask('recent', recent);

export default new PipelineGraph([
  [expandTask, recentTask],
  [expandTask, new PipelineTask('check', check)],
  [recentTask, new PipelineTask('score', score)],
  [recentTask, new PipelineTask('spread', spread)],
]);
