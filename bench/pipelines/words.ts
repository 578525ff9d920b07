/**
 * A string-column pipeline for bench:peers (issue 11's second data-heavy case): each one-row
 * source batch becomes 20,000 rows named `s<id>-<i>` (`label`), `code` adds the upper-cased
 * first three characters of each name, `pick` keeps the names that end in 7 (a tenth of the
 * rows, exactly 2,000 per batch, so every implementation delivers the same rows). The three tasks
 * only feed each other: the head fuses them unless told not to (--no-fuse-tasks). Strings go in
 * and out with dpl's `utf8Vector` and `strings` (one UTF-8 pass per column, not one per value).
 */
import { PipelineGraph, PipelineTask, assign, column, filter, strings, utf8Vector } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';

const ROWS = 20_000;

const label = (df: Table): Table => {
  const id = Number(df.getChild('id')!.get(0));
  const names = new Array<string>(ROWS);
  const x = new Int32Array(ROWS);
  for (let i = 0; i < ROWS; i++) {
    names[i] = `s${id}-${i}`;
    x[i] = i % 97;
  }
  return new Table({ name: utf8Vector(names), x: makeVector(x) });
};

const code = (df: Table): Table => {
  const names = strings(column(df, 'name')) as string[];
  return assign(df, { code: names.map((n) => n.slice(0, 3).toUpperCase()) });
};

const pick = (df: Table): Table => {
  const names = strings(column(df, 'name')) as string[];
  return filter(df, (i) => names[i]!.endsWith('7'));
};

export default new PipelineGraph([new PipelineTask('label', label), new PipelineTask('code', code), new PipelineTask('pick', pick)]);
