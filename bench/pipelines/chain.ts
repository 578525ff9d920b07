/**
 * Three map tasks in a chain, one row per batch, for bench:peers: `parse` adds a column, `scale`
 * and `score` each compute one from the one before. Nothing between them has a batch size or
 * other resources, so the head fuses them into one call per batch (--no-fuse-tasks: three).
 */
import { PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
import type { Table } from 'apache-arrow';

const parse = (df: Table): Table => assign(df, { x: Float64Array.from({ length: df.numRows }, (_, i) => i + 0.5) });
const scale = (df: Table): Table => assign(df, { y: (column(df, 'x').toArray() as Float64Array).map((v) => v * 2) });
const score = (df: Table): Table => assign(df, { z: (column(df, 'y').toArray() as Float64Array).map((v) => v + 1) });

export default new PipelineGraph([new PipelineTask('parse', parse), new PipelineTask('scale', scale), new PipelineTask('score', score)]);
