#!/usr/bin/env node
// Runs one SQL query with DuckDB (installed with this project's dev dependencies) and prints
// the rows as a table: for reading what `dpl run -o out/` wrote.
//
//   node examples/query.js "select count(*) as rows, avg(residual) from 'out/*.parquet'"
'use strict';
const { DuckDBInstance } = require('@duckdb/node-api');

async function main() {
  const sql = process.argv[2];
  if (sql === undefined || sql.trim() === '') {
    process.stderr.write(`usage: node examples/query.js "select * from 'out/*.parquet' limit 5"\n`);
    process.exit(2);
  }
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const reader = await con.runAndReadAll(sql);
  // BigInts (DuckDB's integers) print as numbers where they fit.
  const rows = reader.getRowObjectsJS().map((r) =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' && Number.isSafeInteger(Number(v)) ? Number(v) : v])),
  );
  console.table(rows);
  con.closeSync();
  db.closeSync();
}

main().catch((e) => {
  process.stderr.write(`query: ${e.message}\n`);
  process.exit(1);
});
