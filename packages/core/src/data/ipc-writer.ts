/**
 * A faster writer for the Arrow IPC streams dpl passes between its processes, the reader's
 * counterpart (ipc-reader.ts).
 *
 * `tableToIPC` encodes the schema message anew for every table (a third of its ~55 µs for a
 * one-row batch) and gathers its output through a generic sink. A task's outputs share one
 * schema, so this writer keeps each flat schema's encoded message (keyed by the fields' names,
 * types and nullability), gathers a batch's buffers as arrow's `VectorAssembler` does without
 * its visitor, and writes each record batch message as a copy of the first one arrow encoded for
 * that schema with the batch's numbers written in: the bytes are the ones `tableToIPC(table,
 * 'stream')` writes (a test holds it to that). Generic visitors and the flatbuffer builder were
 * most of a one-row call's encoding, and a large part of what a fresh executor compiles.
 * Schemas it does not key safely (nested or dictionary types, decimals, metadata) return
 * undefined, and the caller uses `tableToIPC`.
 * @internal
 */
import { Message, Type, type RecordBatch, type Schema, type Table } from 'apache-arrow';
import { BufferRegion, FieldNode, RecordBatch as RecordBatchHeader } from 'apache-arrow/ipc/metadata/message';
import { truncateBitmap } from 'apache-arrow/util/bit';
import { rebaseValueOffsets } from 'apache-arrow/util/buffer';
import { VectorAssembler } from 'apache-arrow/visitor/vectorassembler';
import { ownTable } from './adopt';
import { Flat } from './flat';

/** Types whose `toString()` names every parameter that changes their encoding. */
const FLAT_TYPES = new Set<Type>([
  Type.Null,
  Type.Int,
  Type.Float,
  Type.Binary,
  Type.Utf8,
  Type.Bool,
  Type.Date,
  Type.Time,
  Type.Timestamp,
  Type.Interval,
  Type.FixedSizeBinary,
  Type.LargeUtf8,
  Type.LargeBinary,
  Type.Duration,
]);

const SCHEMA_CACHE_ENTRIES = 64;
/** What is kept per schema: its message as written, and its record batch messages' templates. */
interface Cached {
  /** The schema message (continuation, length, flatbuffer, padding). */
  message: Uint8Array;
  /** By kind (whether the length and the body length are zero; see batchMessage): undefined until a batch of that kind came, null when it cannot be patched. */
  templates: (BatchTemplate | null | undefined)[];
}
/** Schema key → what is kept for it. */
const schemas = new Map<string, Cached>();

function schemaKey(schema: Schema): string | undefined {
  if (schema.metadata.size > 0) return undefined;
  let key = '';
  for (const f of schema.fields) {
    if (!FLAT_TYPES.has(f.typeId) || f.metadata.size > 0) return undefined;
    key += `${f.name}\u0000${f.typeId}\u0000${String(f.type)}\u0000${f.nullable ? 1 : 0}\u0001`;
  }
  return key;
}

/** A message as the stream format frames it: 0xFFFFFFFF, the padded length, the flatbuffer, zeros to 8. */
function framed(flatbuffer: Uint8Array): Uint8Array {
  const padded = (flatbuffer.byteLength + 8 + 7) & ~7;
  const out = new Uint8Array(padded);
  const view = new DataView(out.buffer);
  view.setInt32(0, -1, true);
  view.setInt32(4, padded - 8, true);
  out.set(flatbuffer, 8);
  return out;
}

function cachedSchema(schema: Schema, key: string): Cached {
  let cached = schemas.get(key);
  if (cached === undefined) {
    cached = { message: framed(Message.encode(Message.from(schema))), templates: [undefined, undefined, undefined, undefined] };
    if (schemas.size >= SCHEMA_CACHE_ENTRIES) schemas.delete(schemas.keys().next().value!);
    schemas.set(key, cached);
  }
  return cached;
}

/** A record batch's field nodes, buffers and where each buffer goes in the message body. */
interface Assembled {
  nodes: FieldNode[];
  buffers: ArrayBufferView[];
  bufferRegions: BufferRegion[];
  byteLength: number;
  variadicBufferCounts: number[];
}

const NO_BYTES = new Uint8Array(0);
/** The most rows a column of a record batch message may have (arrow's writer refuses more). */
const MAX_LENGTH = 2 ** 31 - 1;
const NO_COUNTS: number[] = [];

/**
 * What arrow's `VectorAssembler` makes of a batch of the flat types above, in its order (each
 * column's validity, then its offsets and values), without its visitor; undefined for a batch
 * it leaves to arrow (booleans not held as bits, a column without its buffers, one too long for
 * the format, which arrow refuses with its own error).
 */
function assembleFlat(batch: RecordBatch): Assembled | undefined {
  const nodes: FieldNode[] = [];
  const buffers: ArrayBufferView[] = [];
  const bufferRegions: BufferRegion[] = [];
  let byteLength = 0;
  const add = (b: ArrayBufferView): void => {
    buffers.push(b);
    const padded = (b.byteLength + 7) & ~7; // each buffer takes a multiple of 8 bytes
    bufferRegions.push(new BufferRegion(byteLength, padded));
    byteLength += padded;
  };
  for (const data of batch.data.children) {
    const { typeId, length, nullCount, offset } = data;
    if (length > MAX_LENGTH) return undefined;
    if (typeId !== Type.Null) add(nullCount <= 0 ? NO_BYTES : truncateBitmap(offset, length, data.nullBitmap));
    nodes.push(new FieldNode(length, nullCount));
    // A type's typeId is its family's (an Int32's is Type.Int); the default takes the fixed-width ones.
    // eslint-disable-next-line @typescript-eslint/switch-exhaustiveness-check -- schemaKey let only flat types through
    switch (typeId) {
      case Type.Null:
        break;
      case Type.Bool:
        if (nullCount >= length) add(new Uint8Array((length + 7) >> 3));
        else if (data.values instanceof Uint8Array) add(truncateBitmap(offset, length, data.values));
        else return undefined;
        break;
      case Type.Utf8:
      case Type.Binary:
      case Type.LargeUtf8:
      case Type.LargeBinary: {
        const offsets = data.valueOffsets as Int32Array | BigInt64Array | undefined;
        const values = data.values as Uint8Array | undefined;
        if (offsets === undefined || values === undefined) return undefined;
        const begin = Number(offsets[0]);
        const bytes = Math.min(Number(offsets[length]) - begin, values.byteLength - begin);
        add(offsets instanceof BigInt64Array ? rebaseValueOffsets(-begin, length + 1, offsets) : rebaseValueOffsets(-begin, length + 1, offsets));
        add(values.subarray(begin, begin + bytes));
        break;
      }
      default: {
        // Numbers, dates, times, intervals, durations, fixed-size binary: `stride` elements a row.
        const values = data.values as Uint8Array | undefined;
        if (values === undefined) return undefined;
        add(values.subarray(0, length * data.stride));
      }
    }
  }
  return { nodes, buffers, bufferRegions, byteLength, variadicBufferCounts: NO_COUNTS };
}

/**
 * A record batch message as arrow encodes it, for batches of one schema. Its flatbuffer's layout
 * depends only on the schema and on which of the batch's length and body length are zero (a
 * flatbuffer leaves out a field at its default); the rest are numbers in fixed places. So the
 * first batch of each kind is encoded by arrow, and later ones are a copy with their numbers
 * written in.
 */
interface BatchTemplate {
  bytes: Uint8Array;
  /** Where the batch's length, the body length and the first field node and buffer are (-1: left out). */
  lengthAt: number;
  bodyAt: number;
  nodesAt: number;
  buffersAt: number;
}

function batchMessage(cached: Cached, batch: RecordBatch, assembled: Assembled): Uint8Array {
  const length = batch.numRows;
  const body = assembled.byteLength;
  // Which fields a flatbuffer leaves out (at their default, 0) decides the layout.
  const kind = (length === 0 ? 0 : 2) + (body === 0 ? 0 : 1);
  const template = batch.metadata.size > 0 ? null : cached.templates[kind];
  if (template === null || template === undefined) {
    const header = new RecordBatchHeader(length, assembled.nodes, assembled.bufferRegions, null, assembled.variadicBufferCounts, batch.metadata);
    const bytes = framed(Message.encode(Message.from(header, body)));
    if (template === undefined) cached.templates[kind] = templateOf(bytes, assembled);
    return bytes;
  }
  const out = template.bytes.slice();
  const view = new DataView(out.buffer);
  if (template.lengthAt >= 0) setI64(view, template.lengthAt, length);
  if (template.bodyAt >= 0) setI64(view, template.bodyAt, body);
  for (let i = 0; i < assembled.nodes.length; i++) {
    const n = assembled.nodes[i]!;
    setI64(view, template.nodesAt + 16 * i, n.length);
    setI64(view, template.nodesAt + 16 * i + 8, n.nullCount);
  }
  for (let i = 0; i < assembled.bufferRegions.length; i++) {
    const r = assembled.bufferRegions[i]!;
    setI64(view, template.buffersAt + 16 * i, r.offset);
    setI64(view, template.buffersAt + 16 * i + 8, r.length);
  }
  return out;
}

/** Where a framed record batch message holds its numbers; null when it is not laid out as expected. */
function templateOf(bytes: Uint8Array, assembled: Assembled): BatchTemplate | null {
  const flat = new Flat(bytes.subarray(8));
  const message = flat.u32(0);
  const headerField = flat.field(message, 2);
  if (headerField === 0) return null;
  const header = flat.deref(headerField);
  const nodesField = flat.field(header, 1);
  const buffersField = flat.field(header, 2);
  if (nodesField === 0 || buffersField === 0) return null;
  const nodes = flat.deref(nodesField);
  const buffers = flat.deref(buffersField);
  if (flat.u32(nodes) !== assembled.nodes.length || flat.u32(buffers) !== assembled.bufferRegions.length) return null;
  // Any other field of the header (compression, variadic counts) would be a layout this does not patch.
  if (flat.field(header, 3) !== 0 || flat.field(header, 4) !== 0) return null;
  const at = (field: number): number => (field === 0 ? -1 : 8 + field);
  return { bytes, lengthAt: at(flat.field(header, 0)), bodyAt: at(flat.field(message, 3)), nodesAt: 8 + nodes + 4, buffersAt: 8 + buffers + 4 };
}

function setI64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** A table's IPC stream as the pieces it is made of, in order: no copy of the column buffers. */
export interface IpcParts {
  parts: Uint8Array[];
  byteLength: number;
}

const END_OF_STREAM = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const ZEROS = new Uint8Array(64);

/**
 * A table's Arrow IPC *stream* as a list of pieces (the messages, views of its column buffers,
 * the zeros between them), for a vectored write (`writev`) that sends the bytes without
 * gathering them into one buffer first; undefined for a table it leaves to `tableToIPC`. The
 * pieces joined are the bytes of {@link writeIpcStream}.
 */
export function ipcStreamParts(of: Table): IpcParts | undefined {
  const table = ownTable(of);
  if (table.batches.length === 0) return undefined;
  const key = schemaKey(table.schema);
  if (key === undefined) return undefined;
  const cached = cachedSchema(table.schema, key);
  const schema = cached.message;
  const parts: Uint8Array[] = [schema];
  let size = schema.byteLength;
  for (const batch of table.batches) {
    const assembled = assembleFlat(batch) ?? VectorAssembler.assemble(batch);
    const meta = batchMessage(cached, batch, assembled);
    parts.push(meta);
    size += meta.byteLength;
    const regions = assembled.bufferRegions;
    let at = 0;
    const gap = (to: number): void => {
      for (let n = to - at; n > 0; n -= ZEROS.byteLength) parts.push(ZEROS.subarray(0, Math.min(n, ZEROS.byteLength)));
      at = to;
    };
    assembled.buffers.forEach((b, i) => {
      if (b.byteLength === 0) return;
      gap(regions[i]!.offset);
      parts.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      at += b.byteLength;
    });
    gap(assembled.byteLength);
    size += assembled.byteLength;
  }
  parts.push(END_OF_STREAM);
  return { parts, byteLength: size + END_OF_STREAM.byteLength };
}

/**
 * Writes a table as Arrow IPC *stream* bytes in one buffer of its own (8-byte aligned), or
 * returns undefined for a table it leaves to `tableToIPC`.
 */
export function writeIpcStream(table: Table): Uint8Array | undefined {
  const pieces = ipcStreamParts(table);
  return pieces === undefined ? undefined : joinIpcParts(pieces);
}

/** The pieces in one buffer of their own (8-byte aligned). */
export function joinIpcParts(pieces: IpcParts): Uint8Array {
  const out = new Uint8Array(pieces.byteLength);
  let at = 0;
  for (const p of pieces.parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
