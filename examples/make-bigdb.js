#!/usr/bin/env node
// Makes the DuckDB database the bigdb example reads: a table `samples(id BIGINT, label VARCHAR,
// weight DOUBLE)` with N rows. In a real deployment this is the large database that only one
// machine holds.
//
//   node examples/make-bigdb.js data/bigdb/bigdb.duckdb 100000
'use strict';
const { mkdirSync } = require('node:fs');
const { dirname, resolve } = require('node:path');
const { DuckDBInstance } = require('@duckdb/node-api');

async function main() {
  const file = resolve(process.argv[2] ?? 'data/bigdb/bigdb.duckdb');
  const rows = Number(process.argv[3] ?? 100000);
  mkdirSync(dirname(file), { recursive: true });
  const db = await DuckDBInstance.create(file);
  const con = await db.connect();
  await con.run('CREATE OR REPLACE TABLE samples AS ' +
    `SELECT i::BIGINT AS id, 'label-' || (i % 7) AS label, (i % 100) / 100.0 AS weight FROM range(${rows}) t(i)`);
  con.closeSync();
  db.closeSync();
  process.stdout.write(`wrote ${rows} rows to ${file}\n`);
}

main().catch((e) => {
  process.stderr.write(`make-bigdb: ${e.message}\n`);
  process.exit(1);
});
