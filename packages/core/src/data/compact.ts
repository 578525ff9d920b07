/**
 * Compaction of tables made of many small record batches (a task that merged ten one-row
 * batches holds ten record batches). Arrow's cost is per record batch (each one is a message to
 * encode and decode, ~20–40 µs even for one row), so such a table costs ten times what one batch
 * of the same rows costs at every process boundary after it. Below a size where copying is cheap
 * the rows are rebuilt into one record batch; larger tables keep their zero-copy batches.
 */
import { Data, DataType, Struct, Type, type Table, makeBuilder, makeData, type Field, type Vector } from 'apache-arrow';
import { recordBatchOf, tableOf } from './make';

/** Tables up to this many bytes (of column buffers) are compacted. */
export const COMPACT_MAX_BYTES = 256 * 1024;

/**
 * One record batch with the same rows and schema, when `table` has several and is small;
 * otherwise `table` itself.
 * @internal
 */
export function compactTable(table: Table, maxBytes = COMPACT_MAX_BYTES): Table {
  if (table.batches.length <= 1 || table.numRows === 0) return table;
  if (table.batches.reduce((n, b) => n + b.data.byteLength, 0) > maxBytes) return table;
  // Nested and dictionary columns keep their batches: rebuilding them value by value is neither
  // cheap nor needed for the common case (flat columns of numbers and strings).
  const fields: Field[] = table.schema.fields;
  if (!fields.every((f) => isFlat(f.type as DataType))) return table;
  const length = table.numRows;
  const children: Data[] = [];
  for (let i = 0; i < fields.length; i++) {
    const type = fields[i]!.type as DataType;
    const chunks = table.batches.map((batch) => batch.data.children[i]!);
    const joined = joinChunks(type, chunks, length) ?? rebuild(type, table.getChildAt(i)!);
    if (joined === undefined) return table;
    children.push(joined);
  }
  const data = makeData({ type: new Struct(fields), length, children });
  return tableOf(table.schema, [recordBatchOf(table.schema, data)]);
}

/** A column's values in one contiguous chunk, by arrow's builder for its type. */
function rebuild(type: DataType, column: Vector): Data | undefined {
  const builder = makeBuilder({ type, nullValues: [null, undefined] });
  for (const v of column) builder.append(v);
  const built = builder.finish().toVector();
  return built.data.length === 1 ? built.data[0] : undefined;
}

/**
 * A column's chunks as one, their buffers copied end to end: numbers, dates, times and other
 * fixed-width values, strings and binary with 32-bit offsets (rebased), booleans (bit by bit).
 * Undefined for other types, which go to arrow's builder; a chunk that does not have the layout
 * its type implies goes there too.
 *
 * A Data's buffers are, in order, value offsets, values and validity. Arrow keeps a chunk's
 * values and value offsets starting at its first row; only the bitmaps (validity, booleans)
 * count from its offset. Builders leave buffers longer than the rows.
 */
function joinChunks(type: DataType, chunks: readonly Data[], length: number): Data | undefined {
  const id = type.typeId;
  let nullCount = 0;
  for (const c of chunks) nullCount += c.nullCount;
  // A chunk without a validity bitmap has no nulls: all its bits are set (as arrow's getValid reads it).
  const validity = (): Uint8Array | undefined => (nullCount > 0 ? joinBits(chunks, length, (c) => (c.nullCount > 0 && c.nullBitmap !== undefined && c.nullBitmap.byteLength > 0 ? c.nullBitmap : undefined)) : undefined);
  if (id === Type.Bool) {
    if (!chunks.every((c) => c.values instanceof Uint8Array)) return undefined;
    return new Data(type, 0, length, nullCount, [undefined, joinBits(chunks, length, (c) => c.values as Uint8Array), validity()] as never);
  }
  if (id === Type.Utf8 || id === Type.Binary) {
    const offsets = new Int32Array(length + 1);
    let bytes = 0;
    for (const c of chunks) {
      const vo = c.valueOffsets as Int32Array | undefined;
      if (!(vo instanceof Int32Array) || vo.length < c.length + 1) return undefined;
      bytes += vo[c.length]! - vo[0]!;
    }
    const values = new Uint8Array(bytes);
    let row = 0;
    let at = 0;
    for (const c of chunks) {
      const vo = c.valueOffsets as Int32Array;
      const base = vo[0]!;
      for (let i = 1; i <= c.length; i++) offsets[row + i] = at + vo[i]! - base;
      values.set((c.values as Uint8Array).subarray(base, vo[c.length]), at);
      at += vo[c.length]! - base;
      row += c.length;
    }
    return new Data(type, 0, length, nullCount, [offsets, values, validity()] as never);
  }
  if (!FIXED_WIDTH.has(id)) return undefined;
  const stride = chunks[0]!.stride;
  const Values = (type as unknown as { ArrayType: new (n: number) => TypedArray }).ArrayType;
  for (const c of chunks) {
    const v = c.values as TypedArray | undefined;
    if (v === undefined || !(v instanceof Values) || c.stride !== stride || v.length < c.length * stride) return undefined;
  }
  const values = new Values(length * stride);
  let at = 0;
  for (const c of chunks) {
    values.set((c.values as TypedArray).subarray(0, c.length * stride) as never, at);
    at += c.length * stride;
  }
  return new Data(type, 0, length, nullCount, [undefined, values, validity()] as never);
}

type TypedArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

/** Types whose values are one typed array, `stride` elements a row, sliced to their rows. */
const FIXED_WIDTH = new Set<Type>([Type.Int, Type.Float, Type.Decimal, Type.Date, Type.Time, Type.Timestamp, Type.Interval, Type.Duration, Type.FixedSizeBinary]);

function bitmapBytes(length: number): number {
  return ((length + 63) & ~63) >> 3;
}

/**
 * One bitmap of each chunk's bits (from the chunk's offset) end to end: its booleans or its
 * validity. `bitsOf` undefined for a chunk: all its bits set.
 */
function joinBits(chunks: readonly Data[], length: number, bitsOf: (c: Data) => Uint8Array | undefined): Uint8Array {
  const out = new Uint8Array(bitmapBytes(length));
  let at = 0;
  for (const c of chunks) {
    const bits = bitsOf(c);
    for (let i = 0; i < c.length; i++, at++) {
      const j = c.offset + i;
      if (bits === undefined || (bits[j >> 3]! >> (j & 7)) & 1) out[at >> 3]! |= 1 << (at & 7);
    }
  }
  return out;
}

function isFlat(type: DataType): boolean {
  return !(
    DataType.isStruct(type) ||
    DataType.isList(type) ||
    DataType.isFixedSizeList(type) ||
    DataType.isMap(type) ||
    DataType.isUnion(type) ||
    DataType.isDictionary(type)
  );
}
