/**
 * A pipeline where one task needs the machine that holds a big database: `lookup` asks for
 * `{ bigdb: 1 }`, so it runs only on a worker started with `--resources '{"bigdb":1}'`, and
 * joins each batch with rows of a DuckDB database file found there (context key `db_path`).
 * The other tasks run anywhere.
 *
 *   node examples/make-bigdb.js data/bigdb/bigdb.duckdb 100000
 *   npx --no dpl run examples/bigdb.ts -n 20 --resources '{"bigdb":1}' -c db_path=data/bigdb/bigdb.duckdb
 *   # on a cluster: dpl worker start --address HEAD --resources '{"bigdb":1}' on the database's machine, then
 *   npx --no dpl submit examples/bigdb.ts --address HEAD -n 20 -c db_path=/data/bigdb.duckdb -o out/
 */
import { PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';
// A native package, imported as anywhere else: dpl leaves it out of the bundle, and a worker
// loads it from this project's folder when it has it, else installs it into its cache.
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/** One connection per executor process and database file, opened on first use. */
const connections = new Map<string, Promise<DuckDBConnection>>();
function connection(path: string): Promise<DuckDBConnection> {
  let c = connections.get(path);
  if (c === undefined) {
    c = DuckDBInstance.create(path, { access_mode: 'READ_ONLY' }).then((db) => db.connect());
    connections.set(path, c);
  }
  return c;
}

export const spread = new PipelineTask('spread', (df: Table) => {
  // Each source batch becomes 50 sample ids to look up.
  const base = BigInt(column(df, 'id').get(0) as bigint) * 50n;
  return new Table({ sample_id: makeVector(BigInt64Array.from({ length: 50 }, (_, i) => base + BigInt(i))) });
});

export const lookup = new PipelineTask(
  'lookup',
  async (df: Table, { db_path }: Record<string, unknown>) => {
    const con = await connection(String(db_path));
    const ids = column(df, 'sample_id').toArray() as BigInt64Array;
    const reader = await con.runAndReadAll(
      `SELECT id, label, weight FROM samples WHERE id BETWEEN ${ids[0]} AND ${ids[ids.length - 1]} ORDER BY id`,
    );
    const byId = new Map<bigint, { label: string; weight: number }>();
    for (const [id, label, weight] of reader.getRows()) byId.set(BigInt(id as bigint), { label: String(label), weight: Number(weight) });
    const labels = Array.from(ids, (id) => byId.get(id)?.label ?? '');
    const weights = Float64Array.from(ids, (id) => byId.get(id)?.weight ?? NaN);
    return assign(df, { label: labels, weight: weights });
  },
  { resources: { bigdb: 1 }, contextKwargs: { db_path: 'db_path' }, required: ['db_path'] },
);

export const score = new PipelineTask('score', (df: Table) => {
  const weight = column(df, 'weight').toArray() as Float64Array;
  return assign(df, { score: weight.map((w) => Math.round(w * 1000) / 10) });
});

export default new PipelineGraph([spread, lookup, score]);
