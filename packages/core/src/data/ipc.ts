/**
 * Arrow IPC stream encoding, the format batches travel in between processes.
 */
import { tableFromIPC, tableToIPC, type Table } from 'apache-arrow';
import { ownTable } from './adopt';
import { readIpcStream } from './ipc-reader';
import { writeIpcStream } from './ipc-writer';

/**
 * Encodes a table as Arrow IPC *stream* bytes. The result starts at an 8-byte-aligned offset
 * of its own buffer, so {@link decodeIpc} on the same bytes is zero-copy.
 */
export function encodeIpc(of: Table): Uint8Array {
  // arrow's own writer writes a table of another copy of arrow into bytes nobody can read.
  const table = ownTable(of);
  const bytes = writeIpcStream(table) ?? tableToIPC(table, 'stream');
  return bytes.byteOffset % 8 === 0 ? bytes : alignedCopy(bytes);
}

/**
 * Decodes Arrow IPC stream (or file) bytes into a table. Aligned input is used in place (the
 * table's columns are views on `bytes`); misaligned input is copied once into an aligned buffer,
 * because arrow would otherwise copy every column on its own.
 */
export function decodeIpc(bytes: Uint8Array): Table {
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : alignedCopy(bytes);
  let table: Table | undefined;
  try {
    table = readIpcStream(aligned);
  } catch {
    // Malformed or unusual bytes: arrow's own reader decides (and names the problem).
  }
  return table ?? tableFromIPC(aligned);
}

function alignedCopy(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}
