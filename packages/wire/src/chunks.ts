/**
 * Bulk bytes travel as streams of chunks of at most {@link CHUNK_BYTES} (gRPC's 4 MiB message
 * limit is met by chunking, never by raising it).
 */

/** @default 1 MiB, measured as the best chunk size for grpc-js streams on this hardware */
export const CHUNK_BYTES = 1024 * 1024;

/** Views (no copies) of consecutive chunks of `bytes`; an empty input gives one empty chunk. */
export function* chunksOf(bytes: Uint8Array, size = CHUNK_BYTES): Generator<Uint8Array> {
  if (bytes.byteLength === 0) {
    yield bytes;
    return;
  }
  for (let at = 0; at < bytes.byteLength; at += size) {
    yield bytes.subarray(at, Math.min(at + size, bytes.byteLength));
  }
}

/**
 * Collects chunks into one buffer that starts at offset 0 (8-byte aligned, so Arrow can read it
 * without copying).
 */
export class ChunkAssembler {
  private parts: Uint8Array[] = [];
  private length = 0;
  /** With a known size, chunks are copied into place as they arrive (one pass, no list). */
  private readonly target: Uint8Array | undefined;

  constructor(private readonly expected?: number) {
    if (expected !== undefined && expected > 0) this.target = new Uint8Array(expected);
  }

  add(chunk: Uint8Array): void {
    if (this.target !== undefined && this.length + chunk.byteLength <= this.target.byteLength) {
      this.target.set(chunk, this.length);
    } else {
      this.parts.push(chunk);
    }
    this.length += chunk.byteLength;
  }

  get size(): number {
    return this.length;
  }

  /**
   * The whole payload.
   * @throws Error when the total differs from the announced size.
   */
  finish(): Uint8Array {
    if (this.expected !== undefined && this.expected !== this.length) {
      throw new Error(`expected ${this.expected} bytes, received ${this.length}`);
    }
    if (this.target !== undefined) return this.target;
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    this.parts = [];
    return out;
  }
}
