/**
 * Which outputs an executor names as rows of its inputs instead of writing them: only those that
 * are exactly such rows (the same memory, an equal schema), and only when they use at least half
 * of what the call was given from each object.
 */
import { assign, compactTable, concatTables, decodeIpc, encodeIpc, filter } from '@dpl/core';
import { RecordBatch, Schema, Table, makeVector, vectorFromArray } from 'apache-arrow';
import { outputView, type ViewInput } from '../src/executor/output-view';

/** A table as an executor reads it from an object: decoded from Arrow IPC, in `batches` record batches. */
function stored(rows: number, batches = 1, from = 0): Table {
  const per = rows / batches;
  const tables = Array.from({ length: batches }, (_, b) => {
    const x = Float64Array.from({ length: per }, (_, i) => from + b * per + i);
    const s = vectorFromArray(Array.from({ length: per }, (_, i) => (i % 3 === 0 ? null : `s${from + b * per + i}`)));
    return new Table({ x: makeVector(x), s });
  });
  return decodeIpc(encodeIpc(concatTables(tables)));
}

const whole = (table: Table): ViewInput => ({ table, offset: 0, rows: table.numRows });

describe('outputView', () => {
  it('names a slice of the input as those rows of its object', () => {
    const t = stored(100);
    expect(outputView(t.slice(10, 70), t, [whole(t)])).toEqual([{ input: 0, offset: 10, rows: 60 }]);
    // A slice of a slice: rows of the object, not of the slice.
    expect(outputView(t.slice(10, 90).slice(5, 65), t, [whole(t)])).toEqual([{ input: 0, offset: 15, rows: 60 }]);
  });

  it('names the rows of a call given a slice of its object, across record batches', () => {
    const t = stored(120, 3);
    const input = t.slice(20, 110);
    const given: ViewInput = { table: t, offset: 20, rows: 90 };
    expect(outputView(input, input, [given])).toEqual([{ input: 0, offset: 20, rows: 90 }]);
    expect(outputView(input.slice(10, 80), input, [given])).toEqual([{ input: 0, offset: 30, rows: 70 }]);
  });

  it('names every input of a call that returns its input, even one rebuilt into one record batch', () => {
    // Flat columns only: tables with dictionary columns keep their batches.
    const flat = (from: number): Table => decodeIpc(encodeIpc(new Table({ x: makeVector(Float64Array.from({ length: 10 }, (_, i) => from + i)) })));
    const a = flat(0);
    const b = flat(100);
    const input = compactTable(concatTables([a, b.slice(2, 10)])); // as the executor hands it: one record batch
    expect(input.batches).toHaveLength(1);
    expect(outputView(input, input, [whole(a), { table: b, offset: 2, rows: 8 }])).toEqual([
      { input: 0, offset: 0, rows: 10 },
      { input: 1, offset: 2, rows: 8 },
    ]);
  });

  it('names a concatenation of slices of several inputs, in its order', () => {
    const a = stored(40);
    const b = stored(40, 1, 100);
    const out = concatTables([b.slice(0, 30), a.slice(10, 40)]);
    expect(outputView(out, concatTables([a, b]), [whole(a), whole(b)])).toEqual([
      { input: 1, offset: 0, rows: 30 },
      { input: 0, offset: 10, rows: 30 },
    ]);
  });

  it('writes what is not rows of a stored input: new columns, gathered rows, a renamed column, an inline input', () => {
    const t = stored(100);
    expect(outputView(assign(t, { y: new Float64Array(100) }), t, [whole(t)])).toBeUndefined();
    const x = t.getChild('x')!.toArray() as Float64Array;
    expect(outputView(filter(t, (i) => x[i]! < 80), t, [whole(t)])).toBeUndefined();
    const renamed = new Schema([t.schema.fields[0]!.clone({ name: 'y' }), t.schema.fields[1]!]);
    expect(outputView(new Table(renamed, t.batches.map((b) => new RecordBatch(renamed, b.data))), t, [whole(t)])).toBeUndefined();
    expect(outputView(t.slice(0, 60), t, [{ table: undefined, offset: 0, rows: 100 }])).toBeUndefined();
    expect(outputView(t.slice(0, 0), t, [whole(t)])).toBeUndefined();
  });

  it('writes a copy made of the same values (equal bytes are not the same memory)', () => {
    const t = stored(100);
    const copy = decodeIpc(encodeIpc(t.slice(0, 80)));
    expect(outputView(copy, t, [whole(t)])).toBeUndefined();
  });

  it('writes an output that uses under half of what the call was given from an object (it would keep the rest alive)', () => {
    const t = stored(100);
    expect(outputView(t.slice(0, 49), t, [whole(t)])).toBeUndefined();
    expect(outputView(t.slice(0, 50), t, [whole(t)])).toEqual([{ input: 0, offset: 0, rows: 50 }]);
  });
});
