/**
 * A task that asks for a GPU: `embed` holds one GPU per call and runs only where one is
 * advertised (`dpl worker start --num-gpus N`, or what nvidia-smi lists); it sees its GPU in
 * CUDA_VISIBLE_DEVICES. Where no worker has a GPU, dpl refuses it with the task and the resource
 * named (at once for `dpl run`, after --infeasible-timeout-ms on a cluster).
 *
 *   npx --no dpl run examples/gpu.ts -n 10 --num-gpus 1
 */
import { PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
import type { Table } from 'apache-arrow';

export const prepare = new PipelineTask('prepare', (df: Table) =>
  assign(df, { x: Float64Array.from(column(df, 'id').toArray() as BigInt64Array, (v) => Number(v) / 10) }),
);

export const embed = new PipelineTask(
  'embed',
  (df: Table) => {
    // A real task would hand CUDA_VISIBLE_DEVICES' GPU to its framework (e.g. onnxruntime-node).
    const gpu = process.env.CUDA_VISIBLE_DEVICES ?? '';
    const x = column(df, 'x').toArray() as Float64Array;
    return assign(df, { embedding: x.map((v) => Math.tanh(v)), gpu: Array.from(x, () => gpu) });
  },
  { numGpus: 1 },
);

export default new PipelineGraph([prepare, embed]);
