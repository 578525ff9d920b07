/**
 * Two stages whose batches stay on the workers between them, for the chaos benchmark: `make`
 * turns each source batch into 1,000 rows (kept in its worker's store), `check` reduces them to
 * one row with the source id and the row count, so the client can tell every batch arrived once
 * and whole.
 */
import { PipelineGraph, PipelineTask } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const make = new PipelineTask(
  'make',
  async (df: Table, { ms }: Record<string, unknown>) => {
    await sleep(Number(ms));
    const id = Number(df.getChild('id')!.get(0));
    return new Table({ id: makeVector(new Int32Array(1000).fill(id)) });
  },
  { kwargs: { ms: 40 } },
);

export const check = new PipelineTask(
  'check',
  async (df: Table, { ms }: Record<string, unknown>) => {
    await sleep(Number(ms));
    return new Table({ id: makeVector(Int32Array.of(Number(df.getChild('id')!.get(0)))), rows: makeVector(Int32Array.of(df.numRows)) });
  },
  { kwargs: { ms: 40 } },
);

export default new PipelineGraph([make, check]);
