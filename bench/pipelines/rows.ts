/**
 * A data-heavy pipeline for bench:peers (issue 11's case): each one-row source batch becomes
 * 100,000 rows of a scrambled column (`expand`: a permutation of 0..1 steps, so that `keep`
 * leaves exactly half and every implementation delivers the same rows), `calc` adds an
 * arithmetic column, `keep` filters half of the rows out. The three tasks only feed each other, so the head fuses them into one
 * call per batch unless told not to (--no-fuse-tasks: two batches of ~1.6 MB cross between them).
 */
import { PipelineGraph, PipelineTask, assign, column, filter } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';

const ROWS = 100_000;

/** 100,000 rows from a one-row source batch: its id, and x scrambled over [0, 1). */
export const expand = (df: Table): Table => {
  const id = Number(df.getChild('id')!.get(0));
  const x = new Float64Array(ROWS);
  for (let i = 0; i < ROWS; i++) x[i] = ((i * 7919 + id * 104729) % ROWS) / ROWS;
  return new Table({ id: makeVector(new Int32Array(ROWS).fill(id)), x: makeVector(x) });
};

const calc = (df: Table): Table => {
  const x = column(df, 'x').toArray() as Float64Array;
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * 3 + 1;
  return assign(df, { y });
};

// As pandas' df[df.x < 0.5]: dpl's filter gathers every column's kept rows in one loop each.
const keep = (df: Table): Table => {
  const x = column(df, 'x').toArray() as Float64Array;
  return filter(df, (i) => x[i]! < 0.5);
};

export default new PipelineGraph([new PipelineTask('expand', expand), new PipelineTask('calc', calc), new PipelineTask('keep', keep)]);
