/**
 * An endless stream with a slow sink, for the memory benchmark: `make` turns each source batch
 * into 1,000 rows at once; `sink` takes 1 ms per batch. Work must wait upstream without piling up.
 */
import { PipelineGraph, PipelineTask } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';

export const make = new PipelineTask('make', (df: Table) => {
  const id = Number(df.getChild('id')!.get(0));
  return new Table({ id: makeVector(new Float64Array(1000).fill(id)) });
});

export const sink = new PipelineTask('sink', async (df: Table) => {
  await new Promise((r) => setTimeout(r, 1));
  return new Table({ id: makeVector(Float64Array.of(Number(df.getChild('id')!.get(0)))) });
});

export default new PipelineGraph([make, sink]);
