import {
  Bool,
  Dictionary,
  Field,
  Int32,
  List,
  Struct,
  Table,
  TimestampMillisecond,
  Utf8,
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  makeVector,
  Int8,
  LargeUtf8,
  Float32,
  DateDay,
  Binary,
  Uint16,
  Null,
  FixedSizeList,
  Float64,
  Data,
  LargeList,
  RecordBatch,
} from 'apache-arrow';
import { concatTables, decodeIpc, encodeIpc } from '@dpl/core';
import { readIpcStream } from '../src/data/ipc-reader';

/** A column's data as arrow holds it: type, lengths, null counts, buffer kinds, children. */
function layout(d: Data): unknown {
  const kind = (a: ArrayBufferView | undefined) => (a === undefined ? undefined : `${a.constructor.name}(${(a as Uint8Array).length})`);
  return {
    type: String(d.type),
    offset: d.offset,
    length: d.length,
    nullCount: d.nullCount,
    values: kind(d.values as ArrayBufferView | undefined),
    valueOffsets: kind(d.valueOffsets as ArrayBufferView | undefined),
    nullBitmap: kind(d.nullBitmap),
    children: d.children.map(layout),
  };
}

/** Both readers' view of a table: schema, batch layout, each column's data and every value. */
function shape(t: Table): unknown {
  return {
    fields: t.schema.fields.map((f) => `${f.name}:${String(f.type)}:${f.nullable}`),
    metadata: [...t.schema.metadata],
    batches: t.batches.map((b) => ({ rows: b.numRows, nullCount: b.nullCount, metadata: [...b.metadata], data: b.data.children.map(layout) })),
    nullCount: t.nullCount,
    rows: t.toArray().map((r) => JSON.stringify(r?.toJSON(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))),
  };
}

function expectSameAsArrow(table: Table): void {
  const bytes = encodeIpc(table);
  const fast = readIpcStream(bytes);
  expect(fast).toBeDefined();
  expect(shape(fast!)).toEqual(shape(tableFromIPC(bytes)));
}

const n = 37;
const ints = Int32Array.from({ length: n }, (_, i) => i * 3 - 50);

describe('readIpcStream', () => {
  it('reads numeric, boolean, string, binary and date columns as tableFromIPC does', () => {
    expectSameAsArrow(
      new Table({
        i8: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 5 === 0 ? null : i - 20)), new Int8()),
        u16: vectorFromArray(Array.from({ length: n }, (_, i) => i * 7), new Uint16()),
        i32: makeVector(ints),
        i64: makeVector(BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * 10_000_000_000n)),
        f32: vectorFromArray(Array.from({ length: n }, (_, i) => i / 4), new Float32()),
        f64: makeVector(Float64Array.from({ length: n }, (_, i) => Math.sin(i))),
        ok: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 3 === 0 ? null : i % 2 === 0)), new Bool()),
        s: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 4 === 0 ? null : `row ${i} ✓`)), new Utf8()),
        ls: vectorFromArray(Array.from({ length: n }, (_, i) => `large ${i}`), new LargeUtf8()),
        bin: vectorFromArray(Array.from({ length: n }, (_, i) => Uint8Array.of(i, i + 1)), new Binary()),
        day: vectorFromArray(Array.from({ length: n }, (_, i) => new Date(86_400_000 * i)), new DateDay()),
        ts: vectorFromArray(Array.from({ length: n }, (_, i) => 1_700_000_000_000 + i), new TimestampMillisecond()),
      }),
    );
  });

  it('reads dictionary, list and struct columns', () => {
    const list = new List(new Field('item', new Int32(), true));
    const struct = new Struct([new Field('a', new Int32(), true), new Field('b', new Utf8(), true)]);
    expectSameAsArrow(
      new Table({
        dict: vectorFromArray(Array.from({ length: n }, (_, i) => ['red', 'green', null][i % 3]), new Dictionary(new Utf8(), new Int32())),
        list: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 6 === 0 ? null : Array.from({ length: i % 4 }, (_, k) => k + i))), list),
        struct: vectorFromArray(Array.from({ length: n }, (_, i) => ({ a: i, b: `b${i}` })), struct),
      }),
    );
    // tableFromArrays dictionary-encodes strings.
    expectSameAsArrow(tableFromArrays({ run_id: ['a-run'], id: BigInt64Array.of(7n) }));
  });

  it('reads null, fixed-size list, large list and nested columns, and batches that behave as arrow\'s', () => {
    const fixed = new FixedSizeList(2, new Field('xy', new Float64(), true));
    const large = new LargeList(new Field('item', new Utf8(), true));
    const nested = new Struct([new Field('inner', new List(new Field('item', new Int32(), true)), true)]);
    const t = new Table({
      nothing: vectorFromArray(Array.from({ length: n }, () => null), new Null()),
      xy: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 5 === 1 ? null : [i, -i])), fixed),
      words: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 7 === 0 ? null : Array.from({ length: i % 3 }, (_, k) => `w${k}`))), large),
      nested: vectorFromArray(Array.from({ length: n }, (_, i) => (i % 4 === 2 ? null : { inner: [i, i + 1] })), nested),
    });
    expectSameAsArrow(t);
    const fast = readIpcStream(encodeIpc(t))!;
    const batch = fast.batches[0]!;
    expect(batch).toBeInstanceOf(RecordBatch);
    expect(RecordBatch.isRecordBatch(batch)).toBe(true);
    expect(batch.schema).toBe(fast.schema);
    expect(batch.slice(1, 3).numRows).toBe(2);
    expect(batch.select(['xy']).schema.fields.map((f) => f.name)).toEqual(['xy']);
    expect(fast.getChild('xy')!.get(2)!.toArray()).toEqual(Float64Array.of(2, -2));
    expect(fast.concat(fast).numRows).toBe(2 * n);
  });

  it('reads several batches, an empty table and a slice', () => {
    const a = tableFromArrays({ x: Int32Array.of(1, 2, 3), y: Float64Array.of(0.5, 1.5, 2.5) });
    const b = tableFromArrays({ x: Int32Array.of(4), y: Float64Array.of(3.5) });
    expectSameAsArrow(concatTables([a, b, a]));
    expectSameAsArrow(a.slice(0, 0));
    expectSameAsArrow(a.slice(1, 3));
    expectSameAsArrow(new Table({ x: makeVector(new Int32Array(0)) }));
  });

  it('shares one parsed schema between batches of the same shape', () => {
    const one = readIpcStream(encodeIpc(tableFromArrays({ v: Int32Array.of(1) })))!;
    const two = readIpcStream(encodeIpc(tableFromArrays({ v: Int32Array.of(2) })))!;
    expect(two.schema).toBe(one.schema);
    expect(two.getChild('v')!.get(0)).toBe(2);
  });

  it('leaves the file format and garbage to arrow', () => {
    const t = tableFromArrays({ v: Int32Array.of(1, 2) });
    expect(readIpcStream(tableToIPC(t, 'file'))).toBeUndefined();
    expect(decodeIpc(tableToIPC(t, 'file')).getChild('v')!.toArray()).toEqual(Int32Array.of(1, 2));
    expect(() => decodeIpc(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9))).toThrow();
  });
});
