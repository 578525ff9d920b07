/**
 * Record batches and tables made without arrow's constructors, for callers that already hold
 * what those constructors would end with.
 *
 * `new RecordBatch(schema, data)` copies the schema (`ensureSameLengthData` pads short columns
 * and assigns the fields to a new Schema), so a table's batches each hold a schema of their own;
 * `new Table(schema, batches)` then compares each batch's schema with the table's field by
 * field. For a one-row call that is most of the work of building its output, and a large part
 * of the code a fresh executor compiles. These helpers set the same fields, in the same order
 * (the objects keep the shape arrow's constructors give them), and share one schema.
 */
import { RecordBatch, Table, type Data, type Schema, type Struct, type TypeMap } from 'apache-arrow';

/** Whether arrow's RecordBatch and Table hold exactly the fields these helpers set (checked once). */
const OWN_FIELDS = (() => {
  const table = new Table();
  const batch = new RecordBatch(table.schema, undefined);
  return Object.keys(batch).join() === 'schema,data,_metadata' && Object.keys(new Table(table.schema, [batch])).join() === 'schema,batches,_offsets';
})();

/**
 * A RecordBatch of `schema` over `data`, whose children are the schema's columns in order, each
 * of the batch's length: what arrow's constructor makes of them, without its copy of the schema.
 */
export function recordBatchOf<T extends TypeMap>(schema: Schema<T>, data: Data<Struct<T>>): RecordBatch<T> {
  if (!OWN_FIELDS) return new RecordBatch(schema, data);
  const batch = Object.create(RecordBatch.prototype) as { schema: Schema<T>; data: Data<Struct<T>>; _metadata: Map<string, string> };
  batch.schema = schema;
  batch.data = data;
  batch._metadata = new Map();
  return batch as unknown as RecordBatch<T>;
}

/**
 * A Table of `batches` under `schema`. Batches that share the schema object itself are taken as
 * they are; where any does not, arrow's constructor compares and checks them.
 */
export function tableOf<T extends TypeMap>(schema: Schema<T>, batches: RecordBatch<T>[]): Table<T> {
  if (!OWN_FIELDS) return new Table(schema, batches);
  const offsets = new Uint32Array(batches.length + 1);
  for (let i = 0; i < batches.length; i++) {
    const b = batches[i]!;
    if (b.schema !== schema) return new Table(schema, batches);
    offsets[i + 1] = offsets[i]! + b.data.length;
  }
  const table = Object.create(Table.prototype) as { schema: Schema<T>; batches: RecordBatch<T>[]; _offsets: Uint32Array };
  table.schema = schema;
  table.batches = batches;
  table._offsets = offsets;
  return table as unknown as Table<T>;
}
