import {
  Binary,
  Bool,
  DateDay,
  DurationMillisecond,
  FixedSizeBinary,
  Float16,
  IntervalDayTime,
  LargeUtf8,
  Null,
  Uint64,
  Dictionary,
  Field,
  Float64,
  Int32,
  Int64,
  List,
  RecordBatch,
  Schema,
  Struct,
  Table,
  TimestampMillisecond,
  Utf8,
  makeData,
  makeVector,
  tableFromArrays,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import { assign, concatTables, decodeIpc, defaultSource, encodeIpc } from '@dpl/core';
import { ipcStreamParts, writeIpcStream } from '../src/data/ipc-writer';

const sameAsArrow = (t: Table): void => {
  const fast = writeIpcStream(t);
  expect(fast).toBeDefined();
  expect(Buffer.from(fast!).equals(Buffer.from(tableToIPC(t, 'stream')))).toBe(true);
  expect(fast!.byteOffset % 8).toBe(0);
};

describe('writeIpcStream', () => {
  it('writes the bytes arrow writes, for the tables tasks pass around', () => {
    const src = defaultSource('run-1');
    const one = src.next().value as Table;
    sameAsArrow(one);
    // Twice with the same schema: the second takes the cached schema message.
    sameAsArrow(assign(one, { sample: Float64Array.of(0.25) }));
    sameAsArrow(assign(src.next().value as Table, { sample: Float64Array.of(0.75) }));
    sameAsArrow(tableFromArrays({ a: Int32Array.of(1, 2, 3), c: Float64Array.of(1.5, 2.5, 3.5) }));
    sameAsArrow(new Table({ s: vectorFromArray(['x', null, 'zzz'], new Utf8()) }));
    sameAsArrow(new Table({ n: vectorFromArray([1, null, 3], new Int32()), ok: vectorFromArray([true, null, false], new Bool()) }));
    sameAsArrow(new Table({ d: vectorFromArray([new Date(0), new Date(86_400_000)], new DateDay()), ts: vectorFromArray([new Date(5)], new TimestampMillisecond()) }).slice(0, 1));
    sameAsArrow(new Table({ u: makeVector(Uint16Array.of(7, 8)), big: makeVector(BigInt64Array.of(1n, -2n)) }));
    // Several record batches, and an empty one.
    sameAsArrow(concatTables([one, one.slice(0, 0), src.next().value as Table]));
  });

  it('leaves nested, dictionary and metadata-carrying schemas to arrow', () => {
    const nested = new Table({ l: vectorFromArray([[1, 2], [3]], new List(new Field('item', new Int32(), true))) });
    expect(writeIpcStream(nested)).toBeUndefined();
    const struct = new Table({ s: vectorFromArray([{ a: 1 }], new Struct([new Field('a', new Int32())])) });
    expect(writeIpcStream(struct)).toBeUndefined();
    const dict = new Table({ d: vectorFromArray(['a', 'b', 'a'], new Dictionary(new Utf8(), new Int32())) });
    expect(writeIpcStream(dict)).toBeUndefined();
    const withMeta = new Table(new Schema([new Field('x', new Int64())], new Map([['k', 'v']])), []);
    expect(writeIpcStream(withMeta)).toBeUndefined();
    // encodeIpc still encodes them all, through arrow.
    for (const t of [nested, struct, dict]) expect(decodeIpc(encodeIpc(t)).numRows).toBe(t.numRows);
  });

  it('keys the cached schema by name, type and nullability', () => {
    const a = new Table({ x: vectorFromArray([1], new Int32()) });
    const b = new Table({ x: vectorFromArray([1], new Float64()) });
    const c = new Table({ y: vectorFromArray([1], new Int32()) });
    for (const t of [a, b, c, a]) sameAsArrow(t);
    const x = vectorFromArray([1, 2], new Int32());
    const withField = (nullable: boolean): Table => {
      const schema = new Schema([new Field('x', new Int32(), nullable)]);
      return new Table(schema, [new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: 2, nullCount: 0, children: [x.data[0]!] }))]);
    };
    sameAsArrow(withField(true));
    sameAsArrow(withField(false));
  });
});

describe('writeIpcStream record batch messages', () => {
  it('writes each batch as arrow does, from the first of its kind on: every flat type, slices, nulls, empty batches', () => {
    const columns = (k: number) => ({
      i: vectorFromArray(Array.from({ length: 20 }, (_, r) => (r % 3 === k % 3 ? null : r * k)), new Int32()),
      u: vectorFromArray(Array.from({ length: 20 }, (_, r) => BigInt(r + k)), new Uint64()),
      h: vectorFromArray(Array.from({ length: 20 }, (_, r) => r / 4), new Float16()),
      b: vectorFromArray(Array.from({ length: 20 }, (_, r) => (r % 5 === 0 ? null : r % 2 === 0)), new Bool()),
      nb: vectorFromArray(Array.from({ length: 20 }, () => null), new Bool()),
      s: vectorFromArray(Array.from({ length: 20 }, (_, r) => (r % 4 === 1 ? null : `s${r}${'x'.repeat(k)}`)), new Utf8()),
      ls: vectorFromArray(Array.from({ length: 20 }, (_, r) => `l${r}`), new LargeUtf8()),
      bin: vectorFromArray(Array.from({ length: 20 }, (_, r) => Uint8Array.of(r, k)), new Binary()),
      fsb: vectorFromArray(Array.from({ length: 20 }, (_, r) => Uint8Array.of(r, r, k)), new FixedSizeBinary(3)),
      ivl: vectorFromArray(Array.from({ length: 20 }, (_, r) => Int32Array.of(r, k)), new IntervalDayTime()),
      dur: vectorFromArray(Array.from({ length: 20 }, (_, r) => BigInt(r * 1000)), new DurationMillisecond()),
      nul: vectorFromArray(Array.from({ length: 20 }, () => null), new Null()),
    });
    for (let k = 0; k < 3; k++) {
      const whole = new Table(columns(k));
      sameAsArrow(whole);
      // Slices at offsets that are not a whole byte of bits, of strings that do not start at 0.
      for (const [from, to] of [[3, 11], [1, 2], [7, 20], [5, 5]] as const) sameAsArrow(whole.slice(from, to));
      // Several batches of one schema, one of them empty, in one stream.
      sameAsArrow(concatTables([whole.slice(0, 9), whole.slice(9, 9), whole.slice(9, 17)]));
    }
  });

  it('leaves batches with metadata of their own to arrow, which writes it', () => {
    const x = vectorFromArray([1, 2], new Int32());
    const schema = new Schema([new Field('x', new Int32(), true)]);
    const data = makeData({ type: new Struct(schema.fields), length: 2, nullCount: 0, children: [x.data[0]!] });
    const plain = new Table(schema, [new RecordBatch(schema, data)]);
    const tagged = new Table(schema, [new RecordBatch(schema, data, new Map([['k', 'v']]))]);
    for (const t of [plain, tagged, plain, tagged]) sameAsArrow(t);
  });
});

describe('ipcStreamParts', () => {
  it('gives the pieces of the bytes writeIpcStream writes, for many batches and a string column', () => {
    const batch = (k: number) => assign(tableFromArrays({ x: Float64Array.from({ length: 5 + k }, (_, i) => i * k) }), { s: Array.from({ length: 5 + k }, (_, i) => `v${i}`.repeat(k + 1)) });
    const table = concatTables(Array.from({ length: 40 }, (_, k) => batch(k)));
    const pieces = ipcStreamParts(table)!;
    const joined = Buffer.concat(pieces.parts);
    expect(joined.byteLength).toBe(pieces.byteLength);
    expect(Buffer.compare(joined, Buffer.from(writeIpcStream(table)!))).toBe(0);
  });
});
