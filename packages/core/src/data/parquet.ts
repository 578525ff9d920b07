/**
 * Parquet files from and to Arrow tables, with parquet-wasm. The wasm loads (synchronously) on
 * the first read or write: most processes that load dpl never touch parquet (an executor, a
 * worker daemon), and compiling it costs each of them ~45 ms at start.
 */
import type * as Pq from 'parquet-wasm';
import type { Table } from 'apache-arrow';
import { decodeIpc, encodeIpc } from './ipc';

/** Parquet column compression. */
export type ParquetCompression = 'uncompressed' | 'snappy' | 'zstd' | 'lz4';

/** Options of {@link writeParquet}. */
export interface ParquetWriteOptions {
  /** @default 'snappy' (fast, and read by every parquet reader) */
  compression?: ParquetCompression;
}

let loaded: typeof Pq | undefined;
function parquetWasm(): typeof Pq {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, see above
  loaded ??= require('parquet-wasm') as typeof Pq;
  return loaded;
}

const COMPRESSION: Record<ParquetCompression, keyof typeof Pq.Compression> = {
  uncompressed: 'UNCOMPRESSED',
  snappy: 'SNAPPY',
  zstd: 'ZSTD',
  lz4: 'LZ4_RAW',
};

/** Encodes a table as the bytes of a parquet file. */
export function writeParquet(table: Table, options: ParquetWriteOptions = {}): Uint8Array {
  return parquetFromIpc(encodeIpc(table), options);
}

/** Encodes a table given as Arrow IPC stream bytes as the bytes of a parquet file. */
export function parquetFromIpc(ipc: Uint8Array, options: ParquetWriteOptions = {}): Uint8Array {
  const compression = COMPRESSION[options.compression ?? 'snappy'];
  if (compression === undefined) {
    throw new TypeError(
      `compression must be one of ${Object.keys(COMPRESSION).join(', ')}, got ${String(options.compression)}`,
    );
  }
  const pq = parquetWasm();
  const wasmTable = pq.Table.fromIPCStream(ipc);
  const props = new pq.WriterPropertiesBuilder().setCompression(pq.Compression[compression]).build();
  // writeParquet takes ownership of both wasm objects and frees them.
  return pq.writeParquet(wasmTable, props);
}

/** Decodes the bytes of a parquet file into a table. */
export function readParquet(bytes: Uint8Array): Table {
  // The default of 1,024 rows per record batch makes reading ~5x slower on large files.
  const wasmTable = parquetWasm().readParquet(bytes, { batchSize: 65_536 });
  return decodeIpc(wasmTable.intoIPCStream());
}
