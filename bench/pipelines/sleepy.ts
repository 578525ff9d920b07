/**
 * A DAG of sleep tasks with mixed resource requests, for the makespan benchmark:
 *   prep (1 CPU, 40 ms) → embed (1 GPU, 60 ms) ↘
 *                        → score (2 CPU, 50 ms) → merge (1 CPU, 20 ms)
 */
import { PipelineGraph, PipelineTask } from '@dpl/core';
import type { Table } from 'apache-arrow';

const sleep = (df: Table, kw: Record<string, unknown>) =>
  new Promise<Table>((r) => setTimeout(() => r(df), Number(kw.ms)));

export const prep = new PipelineTask('prep', sleep, { numCpus: 1, kwargs: { ms: 40 } });
export const embed = new PipelineTask('embed', sleep, { numCpus: 0, numGpus: 1, kwargs: { ms: 60 } });
export const score = new PipelineTask('score', sleep, { numCpus: 2, kwargs: { ms: 50 } });
export const merge = new PipelineTask('merge', sleep, { numCpus: 1, kwargs: { ms: 20 } });

export default new PipelineGraph([
  [prep, embed],
  [prep, score],
  [embed, merge],
  [score, merge],
]);
