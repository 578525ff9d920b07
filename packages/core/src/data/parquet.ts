/**
 * Parquet files from and to Arrow tables, with parquet-wasm (the wasm loads synchronously when
 * this module is first required).
 */
import * as pq from 'parquet-wasm';
import type { Table } from 'apache-arrow';
import { decodeIpc, encodeIpc } from './ipc';

/** Parquet column compression. */
export type ParquetCompression = 'uncompressed' | 'snappy' | 'zstd' | 'lz4';

/** Options of {@link writeParquet}. */
export interface ParquetWriteOptions {
  /** @default 'snappy' (fast, and read by every parquet reader) */
  compression?: ParquetCompression;
}

const COMPRESSION: Record<ParquetCompression, pq.Compression> = {
  uncompressed: pq.Compression.UNCOMPRESSED,
  snappy: pq.Compression.SNAPPY,
  zstd: pq.Compression.ZSTD,
  lz4: pq.Compression.LZ4_RAW,
};

/** Encodes a table as the bytes of a parquet file. */
export function writeParquet(table: Table, options: ParquetWriteOptions = {}): Uint8Array {
  const compression = COMPRESSION[options.compression ?? 'snappy'];
  if (compression === undefined) {
    throw new TypeError(
      `compression must be one of ${Object.keys(COMPRESSION).join(', ')}, got ${String(options.compression)}`,
    );
  }
  const wasmTable = pq.Table.fromIPCStream(encodeIpc(table));
  const props = new pq.WriterPropertiesBuilder().setCompression(compression).build();
  // writeParquet takes ownership of both wasm objects and frees them.
  return pq.writeParquet(wasmTable, props);
}

/** Decodes the bytes of a parquet file into a table. */
export function readParquet(bytes: Uint8Array): Table {
  // The default of 1,024 rows per record batch makes reading ~5x slower on large files.
  const wasmTable = pq.readParquet(bytes, { batchSize: 65_536 });
  return decodeIpc(wasmTable.intoIPCStream());
}
