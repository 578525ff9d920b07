/**
 * Record batches and tables made without arrow's constructors: the objects arrow's constructors
 * make (same fields in the same order, same rows), one shared schema, and arrow's own checks
 * where a batch does not share it.
 */
import { Field, Float64, Int32, RecordBatch, Schema, Struct, Table, makeData, makeVector, tableToIPC } from 'apache-arrow';
import { tableFromIPC } from 'apache-arrow';
import { recordBatchOf, tableOf } from '../src/data/make';

const schema = new Schema([new Field('x', new Int32(), true), new Field('y', new Float64(), true)]);
function batchData(from: number, n: number) {
  const x = makeVector(Int32Array.from({ length: n }, (_, i) => from + i)).data[0]!;
  const y = makeVector(Float64Array.from({ length: n }, (_, i) => (from + i) / 2)).data[0]!;
  return makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: [x, y] });
}

describe('recordBatchOf and tableOf', () => {
  it('make what arrow\'s constructors make, sharing one schema', () => {
    const datas = [batchData(0, 3), batchData(3, 0), batchData(3, 4)];
    const ours = tableOf(schema, datas.map((d) => recordBatchOf(schema, d)));
    const arrows = new Table(schema, datas.map((d) => new RecordBatch(schema, d)));
    expect(Object.keys(ours)).toEqual(Object.keys(arrows));
    expect(Object.keys(ours.batches[0]!)).toEqual(Object.keys(arrows.batches[0]!));
    expect(ours).toBeInstanceOf(Table);
    expect(ours.batches[0]).toBeInstanceOf(RecordBatch);
    expect(ours.numRows).toBe(7);
    expect(ours.toArray().map((r) => r.toJSON())).toEqual(arrows.toArray().map((r) => r.toJSON()));
    expect(ours.get(5)!.toJSON()).toEqual({ x: 5, y: 2.5 });
    expect(ours.slice(2, 6).getChild('x')!.toArray()).toEqual(Int32Array.of(2, 3, 4, 5));
    expect(ours.batches.every((b) => b.schema === schema)).toBe(true);
    // Arrow's copies the schema into each batch.
    expect(arrows.batches.every((b) => b.schema === schema)).toBe(false);
    expect(tableFromIPC(tableToIPC(ours)).getChild('y')!.toArray()).toEqual(arrows.getChild('y')!.toArray());
  });

  it("leaves a batch of another schema to arrow's constructor, which checks it", () => {
    const other = new Schema([new Field('z', new Int32(), true), new Field('y', new Float64(), true)]);
    const foreign = new RecordBatch(other, batchData(0, 2));
    expect(() => tableOf(schema, [recordBatchOf(schema, batchData(0, 1)), foreign])).toThrow(/schemas must be equivalent/);
    // An equal schema that is another object: arrow's constructor accepts it.
    const equal = new Schema([...schema.fields]);
    expect(tableOf(schema, [recordBatchOf(equal, batchData(0, 2))]).numRows).toBe(2);
  });

  it('makes an empty table of no batches', () => {
    const t = tableOf(schema, []);
    expect(t.numRows).toBe(0);
    expect(t.schema).toBe(schema);
    expect(t.toArray()).toEqual([]);
  });
});
