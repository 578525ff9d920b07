/** One task that returns its input: measures the cost of a call through the cluster. */
import { PipelineGraph, PipelineTask } from '@dpl/core';

export default new PipelineGraph([new PipelineTask('noop', (df) => df, { numCpus: 1 })]);
