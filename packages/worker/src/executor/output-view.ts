/**
 * Outputs that are rows of a call's inputs: a task that returns its input, a slice of it
 * (`df.slice(a, b)`) or a concatenation of such slices (a pass-through with a `batchSize` that
 * merges several batches) makes no new bytes, so its executor writes none. It names the rows
 * instead — which rows of which input object, in order — and the worker keeps the output as a
 * view of those objects (docs/design/0004-same-host-data.md, "Views").
 *
 * An output is a view only when that is exactly what it is: every record batch of it has the
 * same buffers, offset, length and null count as a slice of a record batch of an input read from
 * the worker's store, under an equal schema. Anything else (a new column, a filter that gathered
 * rows, an input changed in place and returned as a new table) is written as before.
 * @internal
 */
import type { Data, Field, RecordBatch, Schema, Table } from 'apache-arrow';

/** Rows `[offset, offset + rows)` of the object the call's input `input` was read from. */
export interface ViewPart {
  input: number;
  offset: number;
  rows: number;
}

/** One input of the call, as the executor read it. */
export interface ViewInput {
  /** The whole object the input was read from; undefined when it is not in the worker's store (inline, fetched). */
  table: Table | undefined;
  /** The rows of that object the call was given. */
  offset: number;
  rows: number;
}

/** Record batches compared at most per output (outputs of thousands of tiny batches are written). */
const MAX_CHECKS = 4096;

/**
 * The parts of the inputs' objects that `output` is, in order, adjacent parts merged; undefined
 * when it is not such a view, or when it would keep much more of an object alive than it uses
 * (fewer than half of the rows the call was given from some object: `head(10)` of a large batch
 * is written, not kept as 10 rows of it).
 *
 * `input` is the table the task was called with: when `output` is that very table, it is all of
 * the call's inputs even where they were rebuilt into one record batch (many small ones).
 */
export function outputView(output: Table, input: Table, inputs: readonly ViewInput[]): ViewPart[] | undefined {
  if (output.numRows === 0 || inputs.length === 0) return undefined;
  let parts: ViewPart[] | undefined;
  if (output === input) {
    if (inputs.some((i) => i.table === undefined)) return undefined;
    parts = [];
    for (let k = 0; k < inputs.length; k++) if (inputs[k]!.rows > 0) parts.push({ input: k, offset: inputs[k]!.offset, rows: inputs[k]!.rows });
  } else {
    parts = batchParts(output, inputs);
  }
  if (parts === undefined) return undefined;
  const merged = mergeAdjacent(parts);
  return coversEnough(merged, inputs) ? merged : undefined;
}

/** Each record batch of `output` as rows of an input object, or undefined when one is not. */
function batchParts(output: Table, inputs: readonly ViewInput[]): ViewPart[] | undefined {
  const candidates: { input: number; batch: RecordBatch; start: number }[] = [];
  for (let k = 0; k < inputs.length; k++) {
    const t = inputs[k]!.table;
    if (t === undefined || !sameSchema(output.schema, t.schema)) continue;
    let start = 0;
    for (const batch of t.batches) {
      candidates.push({ input: k, batch, start });
      start += batch.numRows;
    }
  }
  if (candidates.length === 0) return undefined;
  const parts: ViewPart[] = [];
  let checks = 0;
  for (const b of output.batches) {
    if (b.numRows === 0) continue;
    let found: ViewPart | undefined;
    for (const c of candidates) {
      if (++checks > MAX_CHECKS) return undefined;
      const at = sliceAt(b, c.batch);
      if (at !== undefined) {
        found = { input: c.input, offset: c.start + at, rows: b.numRows };
        break;
      }
    }
    if (found === undefined) return undefined;
    parts.push(found);
  }
  return parts; // not empty: the output has rows
}

/**
 * Where `b` starts in `c` when its columns are a slice of `c`'s (the same memory): the offset of
 * its first column against `c`'s says where, and every column must then be `c`'s sliced there.
 * (Arrow slices a record batch by its columns; the batch's own struct keeps offset 0.)
 */
function sliceAt(b: RecordBatch, c: RecordBatch): number | undefined {
  const bc = b.data.children;
  const cc = c.data.children;
  if (bc.length === 0 || bc.length !== cc.length) return undefined;
  const at = bc[0]!.offset - cc[0]!.offset;
  if (at < 0 || at + b.numRows > c.numRows) return undefined;
  for (let i = 0; i < bc.length; i++) {
    if (bc[i]!.length !== b.numRows || !sameData(bc[i]!, cc[i]!.slice(at, b.numRows))) return undefined;
  }
  return at;
}

function mergeAdjacent(parts: ViewPart[]): ViewPart[] {
  const out: ViewPart[] = [];
  for (const p of parts) {
    const last = out[out.length - 1];
    if (last !== undefined && last.input === p.input && last.offset + last.rows === p.offset) last.rows += p.rows;
    else out.push({ ...p });
  }
  return out;
}

/** Whether the view uses at least half of the rows the call was given from each object it names. */
function coversEnough(parts: readonly ViewPart[], inputs: readonly ViewInput[]): boolean {
  const used = new Map<number, number>();
  for (const p of parts) used.set(p.input, (used.get(p.input) ?? 0) + p.rows);
  for (const [k, rows] of used) if (rows * 2 < inputs[k]!.rows) return false;
  return true;
}

/** Same names, nullability, types and metadata, field by field, and the same schema metadata. */
export function sameSchema(a: Schema, b: Schema): boolean {
  if (a === b) return true;
  if (a.fields.length !== b.fields.length || !sameMetadata(a.metadata, b.metadata)) return false;
  return a.fields.every((f, i) => sameField(f, b.fields[i]!));
}

function sameField(f: Field, g: Field): boolean {
  return f === g || (f.name === g.name && f.nullable === g.nullable && f.typeId === g.typeId && typeText(f.type as object) === typeText(g.type as object) && sameMetadata(f.metadata, g.metadata));
}

function sameMetadata(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * Whether two Data describe the same values by the same memory: same type, offset, length and
 * null count, each buffer the same bytes of the same ArrayBuffer, children alike, the same
 * dictionary.
 */
export function sameData(a: Data, b: Data): boolean {
  if (a === b) return true;
  if (a.typeId !== b.typeId || (a.type !== b.type && typeText(a.type) !== typeText(b.type))) return false;
  if (a.offset !== b.offset || a.length !== b.length || a.stride !== b.stride) return false;
  if (!sameBytes(buffer(a.values), buffer(b.values)) || !sameBytes(buffer(a.valueOffsets), buffer(b.valueOffsets)) || !sameBytes(buffer(a.typeIds), buffer(b.typeIds))) return false;
  if (!sameBytes(a.nullBitmap, b.nullBitmap) || a.nullCount !== b.nullCount) return false;
  if (a.dictionary !== b.dictionary) return false;
  const av = (a as { variadicBuffers?: readonly Uint8Array[] }).variadicBuffers ?? [];
  const bv = (b as { variadicBuffers?: readonly Uint8Array[] }).variadicBuffers ?? [];
  if (av.length !== bv.length || av.some((x, i) => !sameBytes(x, bv[i]))) return false;
  if (a.children.length !== b.children.length) return false;
  for (let i = 0; i < a.children.length; i++) if (!sameData(a.children[i]!, b.children[i]!)) return false;
  return true;
}

/**
 * A type as text: its id, widths, units and children, not a dictionary's id (batches of
 * different dictionaries concatenate under one schema, as the view's reader puts them).
 */
const typeText = (t: { toString(): string }): string => t.toString();
const buffer = (values: unknown): ArrayBufferView | undefined => values as ArrayBufferView | undefined;

/** The same bytes of the same memory (empty and absent count as the same). */
function sameBytes(x: ArrayBufferView | undefined | null, y: ArrayBufferView | undefined | null): boolean {
  const xn = x === undefined || x === null || x.byteLength === 0;
  const yn = y === undefined || y === null || y.byteLength === 0;
  if (xn || yn) return xn && yn;
  return x === y || (x.buffer === y.buffer && x.byteOffset === y.byteOffset && x.byteLength === y.byteLength);
}
