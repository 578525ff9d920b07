import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Bool,
  Field,
  Float64,
  Int32,
  Int64,
  Schema,
  Table,
  Utf8,
  makeVector,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import {
  assign,
  column,
  concatTables,
  decodeIpc,
  encodeIpc,
  isTable,
  readParquet,
  sameSchema,
  splitTable,
  writeParquet,
  type ParquetCompression,
} from '@dpl/core';
import { intTable, rangeTable, values } from '../../../test/helpers/tables';
import { expectThrows } from '../../../test/helpers/errors';


/** The ArrayBuffer behind the first chunk of column `name`'s values. */
function valuesBuffer(table: Table, name: string): ArrayBufferLike {
  return table.getChild(name)!.data[0]!.values.buffer;
}

function columnNames(table: Table): string[] {
  return table.schema.fields.map((f) => f.name);
}

function typeNames(table: Table): string[] {
  return table.schema.fields.map((f) => `${f.name}:${String(f.type)}`);
}

/** A table with Int64, Float64, Utf8 and Bool columns, each holding a null. */
function mixedTable(): Table {
  return new Table({
    i: vectorFromArray([1n, null, -3n, 9007199254740993n], new Int64()),
    f: vectorFromArray([1.5, 2.25, null, -0.5], new Float64()),
    s: vectorFromArray(['a', null, 'ccc', ''], new Utf8()),
    b: vectorFromArray([true, false, null, true], new Bool()),
  });
}

/** Rows as plain JSON-friendly objects (bigints as strings). */
function rows(table: Table): Record<string, unknown>[] {
  return table.toArray().map((r: Record<string, unknown>) => {
    const out: Record<string, unknown> = {};
    for (const name of columnNames(table)) {
      const v = r[name];
      out[name] = typeof v === 'bigint' ? String(v) : v;
    }
    return out;
  });
}

const MIXED_ROWS = [
  { i: '1', f: 1.5, s: 'a', b: true },
  { i: null, f: 2.25, s: null, b: false },
  { i: '-3', f: null, s: 'ccc', b: null },
  { i: '9007199254740993', f: -0.5, s: '', b: true },
];

describe('splitTable', () => {
  it('cuts 10 rows with maxRows 3 into slices of 3, 3, 3 and 1, in order', () => {
    const parts = splitTable(rangeTable(0, 10), 3);
    expect(parts.map((p) => p.numRows)).toEqual([3, 3, 3, 1]);
    expect(parts.map((p) => values(p))).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    expect(parts.map((p) => p.getChild('s')!.toArray())).toEqual([
      ['0', '1', '2'],
      ['3', '4', '5'],
      ['6', '7', '8'],
      ['9'],
    ]);
  });

  it('makes zero-copy slices that share the original ArrayBuffer', () => {
    const table = rangeTable(0, 10);
    const original = valuesBuffer(table, 'v');
    for (const part of splitTable(table, 3)) {
      expect(valuesBuffer(part, 'v')).toBe(original);
    }
  });

  it('gives one slice when maxRows is at least the row count', () => {
    const parts = splitTable(rangeTable(0, 4), 4);
    expect(parts.map((p) => p.numRows)).toEqual([4]);
    expect(splitTable(rangeTable(0, 4), 100).map((p) => p.numRows)).toEqual([4]);
  });

  it('gives no slices for an empty table', () => {
    expect(splitTable(rangeTable(0, 0), 3)).toEqual([]);
    expect(splitTable(new Table(), 3)).toEqual([]);
  });

  it('splits a table made of several record batches across their boundaries', () => {
    const table = concatTables([rangeTable(0, 4), rangeTable(4, 4)]);
    const parts = splitTable(table, 3);
    expect(parts.map((p) => values(p))).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 7],
    ]);
  });

  it.each([0, -1, 1.5, NaN, Infinity])('rejects maxRows %p with a TypeError', (maxRows) => {
    expectThrows(
      () => splitTable(rangeTable(0, 3), maxRows),
      TypeError,
      `maxRows must be an integer >= 1, got ${maxRows}`,
    );
  });
});

describe('concatTables', () => {
  it('keeps the order of the tables and of their rows', () => {
    const out = concatTables([intTable([1, 2]), intTable([3]), intTable([4, 5, 6])]);
    expect(values(out)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.batches).toHaveLength(3);
  });

  it('does not copy: the result holds the input record batches', () => {
    const a = intTable([1, 2]);
    const b = intTable([3]);
    const out = concatTables([a, b]);
    expect(out.getChild('v')!.data[0]!.values.buffer).toBe(valuesBuffer(a, 'v'));
    expect(out.getChild('v')!.data[1]!.values.buffer).toBe(valuesBuffer(b, 'v'));
  });

  it('skips empty tables, whatever their schema', () => {
    const out = concatTables([intTable([]), intTable([1]), intTable([], 'other'), intTable([2])]);
    expect(values(out)).toEqual([1, 2]);
    expect(columnNames(out)).toEqual(['v']);
  });

  it('returns the only non-empty table as it is', () => {
    const only = intTable([7]);
    expect(concatTables([intTable([]), only])).toBe(only);
  });

  it('returns an empty table for an empty list or a list of empty tables', () => {
    expect(concatTables([]).numRows).toBe(0);
    const empty = intTable([]);
    expect(concatTables([empty, intTable([], 'w')])).toBe(empty);
  });

  it('throws a TypeError naming both schemas when two non-empty tables differ', () => {
    expectThrows(
      () => concatTables([intTable([1]), intTable([2], 'w')]),
      TypeError,
      'cannot concatenate tables with different schemas: {v: Int32} and {w: Int32}; ' +
        'make every batch that reaches a task have the same columns and types',
    );
  });

  it('concatenates tables whose string columns were added by separate assign calls', () => {
    // assign turns a plain string array into a dictionary column with its own dictionary id;
    // two such batches have the same columns and types, so they must merge (as batchSize
    // merging does).
    const a = assign(intTable([1, 2]), { s: ['x', 'y'] });
    const b = assign(intTable([3]), { s: ['z'] });
    const out = concatTables([a, b]);
    expect(values(out)).toEqual([1, 2, 3]);
    expect(out.getChild('s')!.toArray()).toEqual(['x', 'y', 'z']);
    expect(decodeIpc(encodeIpc(out)).getChild('s')!.toArray()).toEqual(['x', 'y', 'z']);
  });

  it('treats the same names with different types as different schemas', () => {
    const floats = new Table({ v: makeVector(Float64Array.of(1)) });
    expect(() => concatTables([intTable([1]), floats])).toThrow(
      'cannot concatenate tables with different schemas: {v: Int32} and {v: Float64}',
    );
    expect(sameSchema(intTable([1]).schema, floats.schema)).toBe(false);
    expect(sameSchema(intTable([1]).schema, intTable([5, 6]).schema)).toBe(true);
  });
});

describe('assign', () => {
  it('adds columns at the end, accepting typed arrays, Arrow vectors and plain arrays', () => {
    const out = assign(intTable([1, 2, 3]), {
      f: Float64Array.of(0.5, 1.5, 2.5),
      big: BigInt64Array.of(1n, 2n, 3n),
      vec: vectorFromArray(['x', 'y', 'z'], new Utf8()),
      arr: [10, 20, 30],
    });
    expect(columnNames(out)).toEqual(['v', 'f', 'big', 'vec', 'arr']);
    expect(typeNames(out)).toEqual([
      'v:Int32',
      'f:Float64',
      'big:Int64',
      'vec:Utf8',
      'arr:Float64',
    ]);
    expect(values(out, 'f')).toEqual([0.5, 1.5, 2.5]);
    expect(values(out, 'big')).toEqual([1, 2, 3]);
    expect(out.getChild('vec')!.toArray()).toEqual(['x', 'y', 'z']);
    expect(values(out, 'arr')).toEqual([10, 20, 30]);
  });

  it('uses a typed array without copying it', () => {
    const f = Float64Array.of(1, 2, 3);
    const out = assign(intTable([1, 2, 3]), { f });
    expect(valuesBuffer(out, 'f')).toBe(f.buffer);
  });

  it('replaces an existing column in its position', () => {
    const out = assign(rangeTable(0, 3), { v: Float64Array.of(9, 8, 7) });
    expect(typeNames(out)).toEqual(['v:Float64', 's:Utf8']);
    expect(values(out)).toEqual([9, 8, 7]);
    expect(out.getChild('s')!.toArray()).toEqual(['0', '1', '2']);
  });

  it('keeps the column order of a table whose column names look like numbers', () => {
    // Built as {b, 1} and reordered to b, 1 (a plain object would put "1" first).
    const table = new Table({
      b: makeVector(Int32Array.of(1, 2)),
      '1': makeVector(Int32Array.of(3, 4)),
    }).select(['b', '1']);
    expect(columnNames(table)).toEqual(['b', '1']);
    expect(columnNames(assign(table, { c: [5, 6] }))).toEqual(['b', '1', 'c']);
    // A new column made of several chunks (here from a merged table) takes the same care.
    const chunked = concatTables([intTable([5]), intTable([6])]).getChild('v')!;
    expect(chunked.data).toHaveLength(2);
    const out = assign(table, { c: chunked });
    expect(columnNames(out)).toEqual(['b', '1', 'c']);
    expect(values(out, 'c')).toEqual([5, 6]);
    expect(values(out, '1')).toEqual([3, 4]);
  });

  it('does not change the input table', () => {
    const table = rangeTable(0, 3);
    assign(table, { v: Float64Array.of(9, 8, 7), x: [1, 2, 3] });
    expect(typeNames(table)).toEqual(['v:Int32', 's:Utf8']);
    expect(values(table)).toEqual([0, 1, 2]);
  });

  it('adds a column to a table made of several record batches', () => {
    const table = concatTables([intTable([1, 2]), intTable([3])]);
    const out = assign(table, { w: Float64Array.of(10, 20, 30) });
    expect(out.numRows).toBe(3);
    expect(values(out)).toEqual([1, 2, 3]);
    expect(values(out, 'w')).toEqual([10, 20, 30]);
    const replaced = assign(table, { v: Float64Array.of(7, 8, 9) });
    expect(typeNames(replaced)).toEqual(['v:Float64']);
    expect(values(replaced)).toEqual([7, 8, 9]);
  });

  it('throws a TypeError naming the column when its length differs from the row count', () => {
    expectThrows(
      () => assign(intTable([1, 2, 3]), { w: [1, 2] }),
      TypeError,
      'column "w" has 2 values but the table has 3 rows',
    );
    expectThrows(
      () => assign(intTable([1, 2, 3]), { w: Float64Array.of(1, 2, 3, 4) }),
      TypeError,
      'column "w" has 4 values but the table has 3 rows',
    );
  });

  it('throws a TypeError naming the column when the value is not a column', () => {
    expectThrows(
      () => assign(intTable([1]), { w: 'nope' as unknown as number[] }),
      TypeError,
      'column "w" must be an Arrow Vector, a typed array or an array',
    );
  });
});

describe('column and isTable', () => {
  it('returns the named column', () => {
    expect(Array.from(column(rangeTable(0, 2), 's').toArray() as string[])).toEqual(['0', '1']);
  });

  it('throws a TypeError listing the existing columns when there is no such column', () => {
    expectThrows(
      () => column(rangeTable(0, 2), 'x'),
      TypeError,
      'table has no column "x"; columns: v, s',
    );
    expectThrows(
      () => column(new Table(), 'x'),
      TypeError,
      'table has no column "x"; columns: (none)',
    );
  });

  it('recognises tables and rejects other values', () => {
    expect(isTable(rangeTable(0, 1))).toBe(true);
    expect(isTable({ numRows: 1, schema: {} })).toBe(false);
    expect(isTable(null)).toBe(false);
  });
});

describe('encodeIpc and decodeIpc', () => {
  it('round-trips a table with Utf8, Int64, Float64, Bool and nulls', () => {
    const table = mixedTable();
    const back = decodeIpc(encodeIpc(table));
    expect(back).toEqualTable(table);
    expect(typeNames(back)).toEqual(['i:Int64', 'f:Float64', 's:Utf8', 'b:Bool']);
    expect(rows(back)).toEqual(MIXED_ROWS);
    expect(back.getChild('i')!.nullCount).toBe(1);
  });

  it('round-trips an empty table with a schema (no record batches)', () => {
    const schema = new Schema([
      new Field('v', new Int32(), true),
      new Field('s', new Utf8(), true),
    ]);
    const empty = new Table(schema);
    expect(empty.batches).toHaveLength(0);
    const back = decodeIpc(encodeIpc(empty));
    expect(back.numRows).toBe(0);
    expect(typeNames(back)).toEqual(['v:Int32', 's:Utf8']);
  });

  it('round-trips an empty table with a schema and one empty record batch', () => {
    const empty = rangeTable(0, 0);
    const back = decodeIpc(encodeIpc(empty));
    expect(back.numRows).toBe(0);
    expect(back).toEqualTable(empty);
  });

  it('round-trips a table made of several record batches, keeping them apart', () => {
    const table = concatTables([rangeTable(0, 3), rangeTable(3, 2), rangeTable(5, 4)]);
    const back = decodeIpc(encodeIpc(table));
    expect(back.batches.map((b) => b.numRows)).toEqual([3, 2, 4]);
    expect(back).toEqualTable(table);
    expect(values(back)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('round-trips a zero-copy slice at a non-zero row offset', () => {
    const slice = splitTable(mixedTable(), 3)[1]!;
    expect(rows(decodeIpc(encodeIpc(slice)))).toEqual(MIXED_ROWS.slice(3));
  });

  it('encodes to bytes that start at an 8-byte-aligned offset', () => {
    expect(encodeIpc(rangeTable(0, 5)).byteOffset % 8).toBe(0);
  });

  it('decodes aligned input without copying: the columns are views on the input buffer', () => {
    const bytes = encodeIpc(rangeTable(0, 5));
    const back = decodeIpc(bytes);
    expect(valuesBuffer(back, 'v')).toBe(bytes.buffer);
    expect(valuesBuffer(back, 's')).toBe(bytes.buffer);
  });

  it('decodes aligned input at a non-zero offset of a larger buffer without copying', () => {
    const bytes = encodeIpc(rangeTable(0, 5));
    const big = new Uint8Array(bytes.byteLength + 16);
    big.set(bytes, 8);
    const view = big.subarray(8, 8 + bytes.byteLength);
    const back = decodeIpc(view);
    expect(values(back)).toEqual([0, 1, 2, 3, 4]);
    expect(valuesBuffer(back, 'v')).toBe(big.buffer);
  });

  it.each([1, 3, 5, 7])('decodes bytes at a misaligned byteOffset (%i) correctly', (offset) => {
    const table = mixedTable();
    const bytes = encodeIpc(table);
    const big = new Uint8Array(bytes.byteLength + offset + 8);
    big.set(bytes, offset);
    const misaligned = big.subarray(offset, offset + bytes.byteLength);
    expect(misaligned.byteOffset % 8).toBe(offset);
    const back = decodeIpc(misaligned);
    expect(back).toEqualTable(table);
    expect(rows(back)).toEqual(MIXED_ROWS);
    // The copy is aligned, so the Int64 and Float64 columns are valid typed-array views.
    expect(back.getChild('i')!.data[0]!.values.byteOffset % 8).toBe(0);
    expect(back.getChild('f')!.data[0]!.values.byteOffset % 8).toBe(0);
  });

  it('decodes the Arrow IPC file format too', () => {
    const table = rangeTable(0, 4);
    expect(decodeIpc(tableToIPC(table, 'file'))).toEqualTable(table);
  });
});

describe('writeParquet and readParquet', () => {
  const compressions: ParquetCompression[] = ['uncompressed', 'snappy', 'zstd', 'lz4'];

  it.each(compressions)(
    'round-trips Int64, Float64, Utf8, Bool and nulls with %s compression',
    (compression) => {
      const table = mixedTable();
      const bytes = writeParquet(table, { compression });
      expect(Buffer.from(bytes.subarray(0, 4)).toString('latin1')).toBe('PAR1');
      const back = readParquet(bytes);
      expect(typeNames(back)).toEqual(['i:Int64', 'f:Float64', 's:Utf8', 'b:Bool']);
      expect(back).toEqualTable(table);
      expect(rows(back)).toEqual(MIXED_ROWS);
    },
  );

  it('writes snappy by default', () => {
    const table = rangeTable(0, 100);
    expect(readParquet(writeParquet(table))).toEqualTable(table);
  });

  it('compresses repetitive data with zstd to fewer bytes than uncompressed', () => {
    // Distinct values (no dictionary win) that share long prefixes (a compression win).
    const text = Array.from(
      { length: 5_000 },
      (_, i) => `${'the same long prefix, '.repeat(4)}${i}`,
    );
    const table = new Table({ s: vectorFromArray(text, new Utf8()) });
    expect(writeParquet(table, { compression: 'zstd' }).byteLength).toBeLessThan(
      writeParquet(table, { compression: 'uncompressed' }).byteLength,
    );
  });

  it('round-trips a table of several record batches and a misaligned slice', () => {
    const table = concatTables([rangeTable(0, 3), rangeTable(3, 4)]);
    expect(values(readParquet(writeParquet(table)))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const slice = table.slice(1, 6);
    expect(readParquet(writeParquet(slice))).toEqualTable(slice);
  });

  it('round-trips an empty table, keeping its schema', () => {
    const empty = rangeTable(0, 0);
    const back = readParquet(writeParquet(empty));
    expect(back.numRows).toBe(0);
    expect(typeNames(back)).toEqual(['v:Int32', 's:Utf8']);
  });

  it('rejects an unknown compression with a TypeError listing the known ones', () => {
    expectThrows(
      () => writeParquet(rangeTable(0, 1), { compression: 'gzip' as ParquetCompression }),
      TypeError,
      'compression must be one of uncompressed, snappy, zstd, lz4, got gzip',
    );
  });
});

describe('parquet files written by writeParquet, read by other readers', () => {
  let dir: string;
  let file: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dpl-data-test-'));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    file = join(dir, `t-${Math.random().toString(36).slice(2)}.parquet`);
  });

  it.each(['snappy', 'zstd', 'lz4', 'uncompressed'] as const)(
    'are readable by DuckDB (%s)',
    async (compression) => {
      writeFileSync(file, writeParquet(mixedTable(), { compression }));
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { DuckDBInstance } = require('@duckdb/node-api') as typeof import('@duckdb/node-api');
      const db = await DuckDBInstance.create(':memory:');
      const c = await db.connect();
      try {
        const r = await c.runAndReadAll(
          `select i::varchar as i, f, s, b, typeof(i) as ti ` +
            `from read_parquet('${file}', file_row_number = true) order by file_row_number`,
        );
        expect(r.getRowObjectsJson()).toEqual(MIXED_ROWS.map((row) => ({ ...row, ti: 'BIGINT' })));
      } finally {
        c.closeSync();
        db.closeSync();
      }
    },
  );

  it('are readable by polars, with the same shape, columns and values', () => {
    writeFileSync(file, writeParquet(mixedTable()));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pl = require('nodejs-polars') as typeof import('nodejs-polars');
    const df = pl.readParquet(file);
    expect(df.shape).toEqual({ height: 4, width: 4 });
    expect(df.columns).toEqual(['i', 'f', 's', 'b']);
    expect(df.getColumn('f').toArray()).toEqual([1.5, 2.25, null, -0.5]);
    expect(df.getColumn('s').toArray()).toEqual(['a', null, 'ccc', '']);
    expect(df.getColumn('b').toArray()).toEqual([true, false, null, true]);
    expect(df.getColumn('i').dtype.equals(pl.Int64)).toBe(true);
    // polars-js turns Int64 into (lossy) JS numbers; compare the exact values as text.
    expect(df.getColumn('i').cast(pl.Utf8).toArray()).toEqual([
      '1',
      null,
      '-3',
      '9007199254740993',
    ]);
  });
});
