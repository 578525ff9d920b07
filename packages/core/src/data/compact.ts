/**
 * Compaction of tables made of many small record batches (a task that merged ten one-row
 * batches holds ten record batches). Arrow's cost is per record batch (each one is a message to
 * encode and decode, ~20–40 µs even for one row), so such a table costs ten times what one batch
 * of the same rows costs at every process boundary after it. Below a size where copying is cheap
 * the rows are rebuilt into one record batch; larger tables keep their zero-copy batches.
 */
import { DataType, Struct, type Table, makeBuilder, makeData, type Data, type Field, type Vector } from 'apache-arrow';
import { recordBatchOf, tableOf } from './make';

/** Tables up to this many bytes (of column buffers) are compacted. */
export const COMPACT_MAX_BYTES = 256 * 1024;

/**
 * One record batch with the same rows and schema, when `table` has several and is small;
 * otherwise `table` itself.
 * @internal
 */
export function compactTable(table: Table, maxBytes = COMPACT_MAX_BYTES): Table {
  if (table.batches.length <= 1 || table.numRows === 0) return table;
  if (table.batches.reduce((n, b) => n + b.data.byteLength, 0) > maxBytes) return table;
  // Nested and dictionary columns keep their batches: rebuilding them value by value is neither
  // cheap nor needed for the common case (flat columns of numbers and strings).
  const fields: Field[] = table.schema.fields;
  if (!fields.every((f) => isFlat(f.type as DataType))) return table;
  const columns = fields.map((field, i) => rebuild(field.type as DataType, table.getChildAt(i)!));
  if (columns.some((c) => c.data.length !== 1)) return table;
  const children: Data[] = columns.map((c) => c.data[0] as Data);
  const data = makeData({ type: new Struct(fields), length: table.numRows, children });
  return tableOf(table.schema, [recordBatchOf(table.schema, data)]);
}

/** A column's values in one contiguous chunk, by arrow's builder for its type. */
function rebuild(type: DataType, column: Vector): Vector {
  const builder = makeBuilder({ type, nullValues: [null, undefined] });
  for (const v of column) builder.append(v);
  return builder.finish().toVector();
}

function isFlat(type: DataType): boolean {
  return !(
    DataType.isStruct(type) ||
    DataType.isList(type) ||
    DataType.isFixedSizeList(type) ||
    DataType.isMap(type) ||
    DataType.isUnion(type) ||
    DataType.isDictionary(type)
  );
}
