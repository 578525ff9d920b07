/**
 * A faster writer for the Arrow IPC streams dpl passes between its processes, the reader's
 * counterpart (ipc-reader.ts).
 *
 * `tableToIPC` encodes the schema message anew for every table (a third of its ~55 µs for a
 * one-row batch) and gathers its output through a generic sink. A task's outputs share one
 * schema, so this writer keeps each flat schema's encoded message (keyed by the fields' names,
 * types and nullability) and writes record batches with arrow's own `VectorAssembler` and
 * metadata encoder straight into one buffer: the bytes are the ones `tableToIPC(table,
 * 'stream')` writes (a test holds it to that). Schemas it does not key safely (nested or
 * dictionary types, decimals, metadata) return undefined, and the caller uses `tableToIPC`.
 * @internal
 */
import { Message, Type, type Schema, type Table } from 'apache-arrow';
import { RecordBatch as RecordBatchHeader } from 'apache-arrow/ipc/metadata/message';
import { VectorAssembler } from 'apache-arrow/visitor/vectorassembler';
import { ownTable } from './adopt';

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
/** Schema key → the schema message as written (continuation, length, flatbuffer, padding). */
const schemas = new Map<string, Uint8Array>();

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

function schemaMessage(schema: Schema, key: string): Uint8Array {
  let bytes = schemas.get(key);
  if (bytes === undefined) {
    bytes = framed(Message.encode(Message.from(schema)));
    if (schemas.size >= SCHEMA_CACHE_ENTRIES) schemas.delete(schemas.keys().next().value!);
    schemas.set(key, bytes);
  }
  return bytes;
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
  const schema = schemaMessage(table.schema, key);
  const parts: Uint8Array[] = [schema];
  let size = schema.byteLength;
  for (const batch of table.batches) {
    const assembled = VectorAssembler.assemble(batch);
    const header = new RecordBatchHeader(batch.numRows, assembled.nodes, assembled.bufferRegions, null, assembled.variadicBufferCounts, batch.metadata);
    const meta = framed(Message.encode(Message.from(header, assembled.byteLength)));
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
