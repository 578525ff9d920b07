/**
 * Helpers on Arrow Tables that every part of dpl shares: zero-copy row slices, concatenation
 * with a schema check, and adding columns (`assign`, like pandas' `DataFrame.assign`).
 */
import {
  DataType,
  Field,
  Schema,
  Struct,
  Table,
  Utf8,
  Vector,
  makeData,
  makeVector,
  vectorFromArray,
  type Data,
} from 'apache-arrow';
import { utf8Vector } from './strings';
import { ownTable } from './adopt';
import { recordBatchOf, tableOf } from './make';

/** A typed array that becomes an Arrow column without a copy. */
export type NumericArray =
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** A column value accepted by {@link assign}. */
export type ColumnInput = Vector | NumericArray | readonly unknown[];

/**
 * Whether `x` is an Arrow Table, also when it comes from another copy of apache-arrow (it checks
 * the brand that arrow itself uses, not the prototype chain).
 */
export function isTable(x: unknown): x is Table {
  return Table.isTable?.(x) ?? x instanceof Table;
}

/**
 * Rows `[offset, offset + rows)` of `table`: the table itself when that is all of it, else a
 * zero-copy slice (a call's input slice, a part of a view).
 * @internal
 */
export function tableRows(table: Table, offset: number, rows: number): Table {
  return offset === 0 && rows === table.numRows ? table : table.slice(offset, offset + rows);
}

/**
 * Cuts `table` into contiguous slices of at most `maxRows` rows each, without copying: every
 * slice is a view on the same buffers. An empty table gives no slices.
 * @throws TypeError when maxRows is not a positive integer.
 */
export function splitTable(table: Table, maxRows: number): Table[] {
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    throw new TypeError(`maxRows must be an integer >= 1, got ${maxRows}`);
  }
  const out: Table[] = [];
  for (let start = 0; start < table.numRows; start += maxRows) {
    out.push(table.slice(start, Math.min(start + maxRows, table.numRows)));
  }
  return out;
}

/** Whether two schemas have the same field names, in order, with the same types. */
export function sameSchema(a: Schema, b: Schema): boolean {
  if (a.fields.length !== b.fields.length) return false;
  return a.fields.every((f, i) => {
    const g = b.fields[i]!;
    return f.name === g.name && String(f.type) === String(g.type);
  });
}

function schemaText(s: Schema): string {
  return `{${s.fields.map((f) => `${f.name}: ${String(f.type)}`).join(', ')}}`;
}

/**
 * Concatenates tables row-wise without copying their buffers (the result holds all their record
 * batches). Empty tables are skipped, so they may have any schema.
 * @throws TypeError when two non-empty tables have different schemas.
 */
export function concatTables(tables: readonly Table[]): Table {
  const nonEmpty = tables.filter((t) => t.numRows > 0).map(ownTable);
  const first = nonEmpty[0];
  if (first === undefined) return tables[0] ?? new Table();
  for (const t of nonEmpty) {
    if (!sameSchema(first.schema, t.schema)) {
      throw new TypeError(
        `cannot concatenate tables with different schemas: ${schemaText(first.schema)} and ` +
          `${schemaText(t.schema)}; make every batch that reaches a task have the same columns and types`,
      );
    }
  }
  if (nonEmpty.length === 1) return first;
  // Re-wrap every batch in the first schema: equal schemas can still differ in dictionary ids,
  // which arrow's Table constructor rejects.
  return tableOf(
    first.schema,
    nonEmpty.flatMap((t) => t.batches.map((b) => (b.schema === first.schema ? b : recordBatchOf(first.schema, b.data)))),
  );
}

function toVector(name: string, value: ColumnInput, rows: number): Vector {
  let vec: Vector;
  if (value instanceof Vector) vec = value;
  else if (ArrayBuffer.isView(value)) vec = makeVector(value as Float64Array);
  else if (Array.isArray(value)) {
    // Strings become plain Utf8, not arrow's default Dictionary (whose ids differ per call and
    // break concatenation of batches made by separate calls).
    const strings = value.length > 0 && value.every((x) => typeof x === 'string' || x === null || x === undefined);
    vec = strings ? utf8Vector(value as string[]) : vectorFromArray(value as unknown[]);
  }
  else {
    throw new TypeError(`column ${JSON.stringify(name)} must be an Arrow Vector, a typed array or an array`);
  }
  if (vec.length !== rows) {
    throw new TypeError(
      `column ${JSON.stringify(name)} has ${vec.length} values but the table has ${rows} rows`,
    );
  }
  return vec;
}

/**
 * A new table with the given columns added (or replaced, keeping their position), like pandas'
 * `df.assign(...)`. Values may be Arrow Vectors, typed arrays (zero-copy) or plain arrays.
 *
 * ```ts
 * const out = assign(df, { sample: Float64Array.from({ length: df.numRows }, Math.random) });
 * ```
 * @throws TypeError when a column's length differs from the table's row count.
 */
export function assign(of: Table, columns: Record<string, ColumnInput>): Table {
  const table = ownTable(of);
  const rows = table.numRows;
  const added = new Map<string, Vector>();
  for (const [name, value] of Object.entries(columns)) added.set(name, toVector(name, value, rows));
  // Fast path: every new column is one contiguous chunk, so each record batch of the table can
  // take a zero-copy slice of it; building the batches directly skips arrow's re-chunking of a
  // record of vectors (most of the cost of a small task call).
  if ([...added.values()].every((v) => v.data.length === 1) && table.batches.length > 0) {
    const fields = table.schema.fields.map((f) => {
      const v = added.get(f.name);
      return v === undefined ? f : new Field(f.name, v.type, true);
    });
    for (const [name, v] of added) {
      if (table.schema.fields.every((f) => f.name !== name)) fields.push(new Field(name, v.type, true));
    }
    const schema = new Schema(fields, table.schema.metadata);
    const struct = new Struct(fields);
    let offset = 0;
    const batches = table.batches.map((batch) => {
      const children = fields.map((f, i): Data => {
        const v: Vector | undefined = added.get(f.name);
        return v === undefined ? batch.data.children[i]! : (v.data[0] as Data).slice(offset, batch.numRows);
      });
      offset += batch.numRows;
      // Every column has the batch's length (toVector checked the new ones): no padding to do.
      return recordBatchOf(schema, makeData({ type: struct, length: batch.numRows, nullCount: 0, children }));
    });
    return tableOf(schema, batches);
  }
  const record: Record<string, Vector> = {};
  const order = table.schema.fields.map((f) => f.name);
  for (const name of order) record[name] = table.getChild(name)!;
  for (const [name, vec] of added) {
    if (!(name in record)) order.push(name);
    record[name] = vec;
  }
  // A record reorders integer-like keys ("1" before "b"): restore the intended column order.
  const built = new Table(record);
  const at = new Map(built.schema.fields.map((f, i) => [f.name, i]));
  return built.selectAt(order.map((n) => at.get(n)!));
}

/**
 * The column `name` of `table`.
 * @throws TypeError naming the columns that exist when there is no such column.
 */
export function column(table: Table, name: string): Vector {
  const col = table.getChild(name);
  if (col === null) {
    const have = table.schema.fields.map((f) => f.name).join(', ') || '(none)';
    throw new TypeError(`table has no column ${JSON.stringify(name)}; columns: ${have}`);
  }
  return col;
}

/** Row numbers for {@link take}. */
export type RowIndices = Int32Array | Uint32Array | readonly number[];

/**
 * The rows of `table` at `indices`, in that order (repeats allowed), like pandas' `df.take` or
 * Arrow's `take` kernel. Columns of numbers and of strings without nulls are gathered with one
 * loop over their buffers; other columns value by value.
 *
 * ```ts
 * const top = take(df, Int32Array.of(0, 5, 9));
 * ```
 * @throws RangeError naming the first index that is not a row of the table.
 */
export function take(table: Table, indices: RowIndices): Table {
  const n = table.numRows;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    if (!(Number.isInteger(i) && i >= 0 && i < n)) {
      throw new RangeError(`take: index ${i} (at position ${k}) is not a row of a table of ${n} rows; indices go from 0 to ${n - 1}`);
    }
  }
  return gather(table, indices);
}

/** The rows at `indices`, known to be rows of the table. */
function gather(of: Table, indices: RowIndices): Table {
  const table = ownTable(of);
  const fields = table.schema.fields;
  const children = fields.map((f) => takeColumn(table.getChild(f.name)!, indices));
  const schema = new Schema(
    fields.map((f, i) => new Field(f.name, children[i]!.type, f.nullable, f.metadata)),
    table.schema.metadata,
  );
  const data = makeData({ type: new Struct(schema.fields), length: indices.length, nullCount: 0, children });
  return tableOf(schema, [recordBatchOf(schema, data)]);
}

/**
 * The rows of `table` where `keep` is true, in order, like pandas' `df[mask]`: `keep` is a
 * mask (one entry per row; nonzero or true keeps it) or a function of the row number.
 *
 * ```ts
 * const x = column(df, 'x').toArray() as Float64Array;
 * const low = filter(df, (i) => x[i]! < 0.5);
 * ```
 * @throws RangeError when a mask's length is not the table's row count.
 */
export function filter(table: Table, keep: Uint8Array | readonly boolean[] | ((row: number) => boolean)): Table {
  const n = table.numRows;
  if (typeof keep !== 'function' && keep.length !== n) {
    throw new RangeError(`filter: the mask has ${keep.length} entries for a table of ${n} rows; give one per row`);
  }
  const picked = new Int32Array(n);
  let m = 0;
  if (typeof keep === 'function') {
    for (let i = 0; i < n; i++) if (keep(i)) picked[m++] = i;
  } else {
    for (let i = 0; i < n; i++) if (keep[i]) picked[m++] = i;
  }
  return gather(table, picked.subarray(0, m));
}

type TypedArrayOf = { new (n: number): NumericArray; [k: number]: unknown };

/** One column's values at `indices`, as one chunk. */
function takeColumn(vec: Vector, indices: RowIndices): Data {
  const n = indices.length;
  if (vec.nullCount === 0) {
    // A column of numbers without nulls: gather from its values (one typed array for all chunks).
    if (DataType.isInt(vec.type) || DataType.isFloat(vec.type)) {
      const src = vec.toArray() as NumericArray;
      if (ArrayBuffer.isView(src) && src.length === vec.length) {
        const out = new (src.constructor as unknown as TypedArrayOf)(n);
        for (let k = 0; k < n; k++) out[k] = src[indices[k]!]!;
        return makeData({ type: vec.type, length: n, nullCount: 0, data: out } as Parameters<typeof makeData>[0]);
      }
    }
    if (Utf8.isUtf8(vec.type) && vec.data.length === 1) return takeUtf8(vec.data[0] as Data<Utf8>, indices);
  }
  const picked = new Array<unknown>(n);
  for (let k = 0; k < n; k++) picked[k] = vec.get(indices[k]!);
  return vectorFromArray(picked, vec.type as DataType).data[0] as Data;
}

/** Strings at `indices` of a chunk without nulls: offsets and bytes copied in one pass each. */
function takeUtf8(data: Data<Utf8>, indices: RowIndices): Data<Utf8> {
  const offsets = data.valueOffsets;
  const bytes = data.values;
  const n = indices.length;
  const outOffsets = new Int32Array(n + 1);
  let size = 0;
  for (let k = 0; k < n; k++) {
    const i = indices[k]!;
    size += offsets[i + 1]! - offsets[i]!;
    outOffsets[k + 1] = size;
  }
  const out = new Uint8Array(size);
  for (let k = 0; k < n; k++) {
    const i = indices[k]!;
    out.set(bytes.subarray(offsets[i], offsets[i + 1]), outOffsets[k]);
  }
  return makeData({ type: data.type, length: n, nullCount: 0, valueOffsets: outOffsets, data: out });
}
