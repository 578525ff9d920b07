/**
 * A cheap check of Arrow IPC stream framing, for bytes that arrive from another process (a
 * worker's answer, an object fetched from a peer, a batch from the head): each message's
 * metadata is read, no column is. Bad bytes are then named where they arrive, with the worker
 * that sent them, instead of failing later inside arrow in a task that did nothing wrong.
 * @internal
 */
import { MessageHeader } from 'apache-arrow';

/**
 * What is wrong with `bytes` as an Arrow IPC stream, or undefined when its framing holds: it
 * starts with a schema message, every message's metadata and body lie inside the bytes, and it
 * ends with the end-of-stream marker or with its last message.
 */
export function ipcStreamProblem(bytes: Uint8Array): string | undefined {
  const checked = checkIpcStream(bytes);
  return typeof checked === 'string' ? checked : undefined;
}

/**
 * The rows of the record batches in `bytes` when its framing holds (see {@link
 * ipcStreamProblem}), else what is wrong: a batch's row count without decoding it.
 */
export function checkIpcStream(bytes: Uint8Array): string | { rows: number } {
  let rows = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  let at = 0;
  let messages = 0;
  while (at < end) {
    if (at + 4 > end) return `${end - at} stray bytes after message ${messages} (at byte ${at})`;
    let length = view.getInt32(at, true);
    let metaAt = at + 4;
    if (length === -1) {
      if (metaAt + 4 > end) return `the stream stops inside the header of message ${messages + 1} (at byte ${at})`;
      length = view.getInt32(metaAt, true);
      metaAt += 4;
    }
    if (length === 0) return messages === 0 ? 'it ends before its schema' : { rows }; // end of stream
    if (length < 0 || metaAt + length > end) {
      return `message ${messages + 1} (at byte ${at}) claims ${length} bytes of metadata, past the end of the ${end} bytes`;
    }
    const m = messageFields(view, metaAt, length);
    if (m === undefined) return `message ${messages + 1} (at byte ${at}) has metadata that is not an Arrow message`;
    messages++;
    if (messages === 1 && m.headerType !== (MessageHeader.Schema as number)) return `it does not start with a schema message (the first is of type ${m.headerType})`;
    at = metaAt + length;
    if (m.bodyLength < 0 || at + m.bodyLength > end) {
      return `message ${messages} claims a body of ${m.bodyLength} bytes, past the end of the ${end} bytes`;
    }
    at += m.bodyLength;
    rows += m.rows;
  }
  return messages === 0 ? 'it is empty' : { rows };
}

/**
 * The header type and body length of the flatbuffer `Message` table in `length` bytes at `at`
 * (Arrow's Message.fbs: field 1 header_type, a ubyte; field 3 bodyLength, a long), read straight
 * from its vtable without decoding the message; undefined when its offsets point outside.
 */
function messageFields(view: DataView, at: number, length: number): { headerType: number; bodyLength: number; rows: number } | undefined {
  if (length < 8) return undefined;
  const end = at + length;
  const table = tableAt(view, at, at, end);
  if (table < 0) return undefined;
  const typeAt = fieldAt(view, table, 1);
  const headerAt = fieldAt(view, table, 2);
  const bodyAt = fieldAt(view, table, 3);
  if ((typeAt !== 0 && table + typeAt + 1 > end) || (bodyAt !== 0 && table + bodyAt + 8 > end) || (headerAt !== 0 && table + headerAt + 4 > end)) return undefined;
  const headerType = typeAt === 0 ? 0 : view.getUint8(table + typeAt);
  const bodyLength = bodyAt === 0 ? 0 : Number(view.getBigInt64(table + bodyAt, true));
  let rows = 0;
  if (headerType === (MessageHeader.RecordBatch as number)) {
    // RecordBatch.fbs: field 0 is the batch's length (a long).
    const batch = headerAt === 0 ? -1 : tableAt(view, table + headerAt, at, end);
    if (batch < 0) return undefined;
    const lengthAt = fieldAt(view, batch, 0);
    if (lengthAt !== 0 && batch + lengthAt + 8 > end) return undefined;
    rows = lengthAt === 0 ? 0 : Number(view.getBigInt64(batch + lengthAt, true));
    if (rows < 0) return undefined;
  }
  return { headerType, bodyLength, rows };
}

/**
 * Where the flatbuffer table that the offset at `ref` points to starts; -1 when it or its
 * vtable lies outside `[start, end)` (then no field of it is read).
 */
function tableAt(view: DataView, ref: number, start: number, end: number): number {
  if (ref + 4 > end) return -1;
  const at = ref + view.getUint32(ref, true);
  if (at + 4 > end) return -1;
  const vtable = at - view.getInt32(at, true);
  if (vtable < start || vtable + 4 > end) return -1;
  const vtableBytes = view.getUint16(vtable, true);
  if (vtableBytes < 4 || vtable + vtableBytes > end) return -1;
  return at;
}

/** Field `n`'s offset in the table at `table` (checked by tableAt); 0 for an absent field. */
function fieldAt(view: DataView, table: number, n: number): number {
  const vtable = table - view.getInt32(table, true);
  const vtableBytes = view.getUint16(vtable, true);
  return 4 + 2 * n + 2 <= vtableBytes ? view.getUint16(vtable + 4 + 2 * n, true) : 0;
}
