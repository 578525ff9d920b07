/**
 * dplutils' README pipeline in dpl: generate a random `sample` per row, `round` it in batches of
 * 10 rows to `decimals` places, and compute the `residual`.
 *
 *   npx --no dpl run examples/quickstart.ts -n 100 -o out/
 *   npx --no dpl run examples/quickstart.ts -n 100 -s round.kwargs.decimals=3
 */
import { PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
import type { Table } from 'apache-arrow';

function generateSample(df: Table): Table {
  return assign(df, { sample: Float64Array.from({ length: df.numRows }, () => Math.random()) });
}

function roundSample(df: Table, { decimals }: Record<string, unknown>): Table {
  const factor = 10 ** Number(decimals);
  const sample = column(df, 'sample').toArray() as Float64Array;
  return assign(df, { rounded: sample.map((v) => Math.round(v * factor) / factor) });
}

function calcResidual(df: Table): Table {
  const sample = column(df, 'sample').toArray() as Float64Array;
  const rounded = column(df, 'rounded').toArray() as Float64Array;
  return assign(df, { residual: rounded.map((r, i) => r - sample[i]!) });
}

export default new PipelineGraph([
  new PipelineTask('generate', generateSample),
  new PipelineTask('round', roundSample, { batchSize: 10, kwargs: { decimals: 1 } }),
  new PipelineTask('resid', calcResidual, { numCpus: 2 }),
]);
