/**
 * The default source's batches as Arrow IPC bytes, made fast: every batch is the same one-row
 * table `{ run_id, id }` but for the 8 bytes of `id`, so the head encodes it once with a marker
 * id and, for each batch, copies those bytes and writes the id where the marker was. Encoding a
 * table with apache-arrow costs ~100 µs; this costs a copy of ~440 bytes.
 *
 * The copies are 8-byte aligned pieces of a shared slab (as Node's Buffer pool does), not an
 * ArrayBuffer each: a backing store of its own costs a malloc, a free and the collector's
 * bookkeeping, for every batch. A slab is small enough that a batch the lineage keeps does not
 * keep much more alive (and that the in-process link passes the bytes by reference).
 */
import { defaultSource, encodeIpc } from '@dpl/core';
import type { Table } from 'apache-arrow';

const MARKER = 0x0123_4567_89ab_cdefn;

/** Returns a function giving batch `n` of the default source for `runId`, encoded. */
export function defaultSourceIpc(runId: string): (n: bigint) => Uint8Array {
  const template = encodeIpc(nth(runId, MARKER));
  const at = markerOffset(template);
  // Not found exactly once (a format change): encode every batch, correct if slower.
  if (at === undefined) return (n) => encodeIpc(nth(runId, n));
  const length = template.byteLength;
  const stride = length + ((8 - (length % 8)) % 8);
  let slab = new ArrayBuffer(0);
  let view = new DataView(slab);
  let used = 0;
  return (n) => {
    if (used + stride > slab.byteLength) {
      slab = new ArrayBuffer(Math.max(SLAB_BYTES, stride));
      view = new DataView(slab);
      used = 0;
    }
    const out = new Uint8Array(slab, used, length);
    out.set(template);
    view.setBigInt64(used + at, n, true);
    used += stride;
    return out;
  };
}

/** The slab the batches' bytes are cut from. */
const SLAB_BYTES = 16 * 1024;

/** The default source's batch with id `n` (the source numbers batches from 0). */
function nth(runId: string, n: bigint): Table {
  return defaultSource(runId, n).next().value as Table;
}

/** Where the marker's 8 bytes are in `bytes`, when they are there exactly once. */
function markerOffset(bytes: Uint8Array): number | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let found: number | undefined;
  for (let i = 0; i + 8 <= bytes.byteLength; i++) {
    if (view.getBigInt64(i, true) === BigInt.asIntN(64, MARKER)) {
      if (found !== undefined) return undefined;
      found = i;
    }
  }
  return found;
}
