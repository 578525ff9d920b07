import {
  Binary,
  Bool,
  DateDay,
  DateMillisecond,
  Decimal,
  Dictionary,
  Float16,
  Float32,
  Int16,
  Int32,
  Int64,
  Int8,
  IntervalDayTime,
  FixedSizeBinary,
  Null,
  Table,
  TimestampMicrosecond,
  TimeMillisecond,
  Uint64,
  Uint8,
  Utf8,
  makeBuilder,
  makeVector,
  tableFromArrays,
  vectorFromArray,
  type DataType,
} from 'apache-arrow';
import { compactTable, concatTables, encodeIpc, decodeIpc } from '@dpl/core';

const rows = (t: Table): unknown[] => t.toArray().map((r) => JSON.stringify(r?.toJSON(), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));

describe('compactTable', () => {
  it('turns many small record batches into one with the same rows and schema', () => {
    const parts = Array.from({ length: 10 }, (_, i) =>
      new Table({
        s: vectorFromArray([i % 3 === 0 ? null : `row ${i}`], new Utf8()),
        id: makeVector(BigInt64Array.of(BigInt(i))),
        x: makeVector(Float64Array.of(i / 2)),
      }),
    );
    const merged = concatTables(parts);
    expect(merged.batches).toHaveLength(10);
    const compact = compactTable(merged);
    expect(compact.batches).toHaveLength(1);
    expect(compact.schema.fields.map(String)).toEqual(merged.schema.fields.map(String));
    expect(rows(compact)).toEqual(rows(merged));
    // And it survives the trip between processes.
    expect(rows(decodeIpc(encodeIpc(compact)))).toEqual(rows(merged));
  });

  it('leaves one batch, large tables and nested or dictionary columns as they are', () => {
    const one = tableFromArrays({ v: Int32Array.of(1, 2) });
    expect(compactTable(one)).toBe(one);
    const big = concatTables([tableFromArrays({ v: new Float64Array(40_000) }), tableFromArrays({ v: new Float64Array(1) })]);
    expect(compactTable(big)).toBe(big);
    const dict = concatTables([1, 2].map((i) => new Table({ d: vectorFromArray([`k${i}`], new Dictionary(new Utf8(), new Int32())) })));
    expect(compactTable(dict)).toBe(dict);
  });

  it('joins each type\'s chunks as arrow\'s builder would: sliced chunks, nulls, every flat type', () => {
    const bytes = (n: number): Uint8Array => Uint8Array.of(n, n + 1, n + 2);
    const columns: [string, DataType, (i: number) => unknown][] = [
      ['i8', new Int8(), (i) => (i % 4 === 1 ? null : i - 5)],
      ['i16', new Int16(), (i) => i * 300],
      ['i32', new Int32(), (i) => (i % 3 === 0 ? null : i * 7)],
      ['i64', new Int64(), (i) => BigInt(i) * 10n ** 12n],
      ['u8', new Uint8(), (i) => i],
      ['u64', new Uint64(), (i) => (i % 5 === 0 ? null : BigInt(i))],
      ['f16', new Float16(), (i) => i / 4],
      ['f32', new Float32(), (i) => (i % 2 === 0 ? null : i / 8)],
      ['day', new DateDay(), (i) => new Date(Date.UTC(2020, 0, 1 + i))],
      ['ms', new DateMillisecond(), (i) => (i % 3 === 2 ? null : new Date(Date.UTC(2021, 5, i, 3)))],
      ['ts', new TimestampMicrosecond(), (i) => 1_700_000_000_000 + i],
      ['time', new TimeMillisecond(), (i) => i * 1000],
      ['dec', new Decimal(2, 10, 128), (i) => Uint32Array.of(i, 0, 0, 0)],
      ['ivl', new IntervalDayTime(), (i) => Int32Array.of(i, i * 2)],
      ['fsb', new FixedSizeBinary(3), (i) => (i % 4 === 3 ? null : bytes(i))],
      ['bool', new Bool(), (i) => (i % 5 === 4 ? null : i % 3 === 0)],
      ['s', new Utf8(), (i) => (i % 4 === 0 ? null : `row ${i} ${'é'.repeat(i % 3)}`)],
      ['bin', new Binary(), (i) => (i % 6 === 5 ? null : bytes(i * 2))],
      ['null', new Null(), () => null],
    ];
    const built = (type: DataType, values: unknown[]) => {
      const b = makeBuilder({ type, nullValues: [null, undefined] });
      for (const v of values) b.append(v);
      return b.finish().toVector();
    };
    // Batches of 9 rows, some cut to rows 2..6 (a slice keeps its parent's bitmaps and offset).
    const parts = Array.from({ length: 6 }, (_, p) => {
      const n = 9;
      const cols = Object.fromEntries(columns.map(([name, type, value]) => [name, built(type, Array.from({ length: n }, (_, i) => value(p * n + i)))]));
      // Every other batch whole, as a builder left it (its buffers longer than its rows).
      return p % 2 === 0 ? new Table(cols).slice(2, 7) : new Table(cols);
    });
    const merged = concatTables(parts);
    const compact = compactTable(merged);
    expect(compact.batches).toHaveLength(1);
    expect(compact.schema.fields.map(String)).toEqual(merged.schema.fields.map(String));
    for (const [name, type] of columns) {
      const whole = built(type, [...merged.getChild(name)!]);
      const got = compact.getChild(name)!;
      expect([name, got.nullCount]).toEqual([name, whole.nullCount]);
      expect([name, JSON.stringify([...got], (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))]).toEqual([
        name,
        JSON.stringify([...whole], (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      ]);
    }
    expect(rows(compact)).toEqual(rows(merged));
    expect(rows(decodeIpc(encodeIpc(compact)))).toEqual(rows(merged));
  });
});

