import * as arrow from 'apache-arrow';
import { LocalExecutor, PipelineGraph, PipelineTask, assign, concatTables, decodeIpc, encodeIpc, filter, isOwnTable, ownTable } from '@dpl/core';

/** A second copy of apache-arrow in this process, as an ES-module script or a project's own install has. */
let other: typeof arrow;
jest.isolateModules(() => {
  // A fresh module registry: require, not import, is what loads the package a second time.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  other = require('apache-arrow') as typeof arrow;
});

/** A table of the other copy with columns of many kinds, nulls included. */
function otherTable(offset = 0): arrow.Table {
  const n = 5;
  return new other.Table({
    i32: other.makeVector(Int32Array.from({ length: n }, (_, i) => i + offset)),
    f64: other.vectorFromArray([1.5, null, 3.5, 4.5, null], new other.Float64()),
    s: other.vectorFromArray(['a', 'bb', null, 'dddd', 'é'], new other.Utf8()),
    b: other.vectorFromArray([true, false, null, true, true], new other.Bool()),
    d: other.vectorFromArray(['x', 'y', 'x', null, 'y'], new other.Dictionary(new other.Utf8(), new other.Int32())),
    l: other.vectorFromArray([[1], [2, 3], null, [], [4]], new other.List(new other.Field('item', new other.Int32(), true))),
    st: other.vectorFromArray(
      [{ a: 1, b: 'p' }, { a: 2, b: 'q' }, null, { a: 4, b: null }, { a: 5, b: 'r' }],
      new other.Struct([new other.Field('a', new other.Int32(), true), new other.Field('b', new other.Utf8(), true)]),
    ),
    ts: other.vectorFromArray([0, 1000, 2000, null, 4000], new other.TimestampMillisecond()),
  }) as unknown as arrow.Table;
}

const rows = (t: arrow.Table): unknown[] => t.toArray().map((r) => JSON.parse(JSON.stringify(r.toJSON(), (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))));

describe('tables from another copy of apache-arrow', () => {
  it('are told apart from this copy\'s, though arrow\'s brand check takes both', () => {
    const t = otherTable();
    expect(t instanceof arrow.Table).toBe(true); // arrow's own check cannot tell
    expect(isOwnTable(t)).toBe(false);
    expect(isOwnTable(ownTable(t))).toBe(true);
    const own = arrow.tableFromArrays({ x: Int32Array.of(1) });
    expect(ownTable(own)).toBe(own);
  });

  it('are adopted with the same columns, types, nulls and values, on the same buffers', () => {
    const t = otherTable();
    const a = ownTable(t);
    expect(a.schema.fields.map((f) => `${f.name}: ${String(f.type)}`)).toEqual(t.schema.fields.map((f) => `${f.name}: ${String(f.type)}`));
    expect(rows(a)).toEqual(rows(t));
    expect(a.getChild('i32')!.data[0]!.values).toBe(t.getChild('i32')!.data[0]!.values);
  });

  it('encode to IPC bytes that decode to the same rows (arrow\'s writer alone writes unreadable ones)', () => {
    const t = otherTable();
    expect(rows(decodeIpc(encodeIpc(t)))).toEqual(rows(t));
  });

  it("go through dpl's helpers: concatenation with this copy's tables, assign, filter", () => {
    const mine = ownTable(otherTable(10));
    const both = concatTables([otherTable(), mine]);
    expect(both.numRows).toBe(10);
    expect([...both.getChild('i32')!]).toEqual([0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
    expect([...assign(otherTable(), { y: Float64Array.of(1, 2, 3, 4, 5) }).getChild('y')!]).toEqual([1, 2, 3, 4, 5]);
    expect([...filter(otherTable(), (i) => i % 2 === 0).getChild('s')!]).toEqual(['a', null, 'é']);
  });

  it('returned by tasks, are merged by batchSize without an error', async () => {
    const graph = new PipelineGraph([
      new PipelineTask('make', (df) => other.tableFromArrays({ id: Int32Array.of(Number(df.getChild('id')!.get(0))) }) as unknown as arrow.Table),
      new PipelineTask('pair', (df) => other.tableFromArrays({ n: Int32Array.of(df.numRows) }) as unknown as arrow.Table, { batchSize: 2 }),
    ]);
    const out: number[] = [];
    for await (const b of new LocalExecutor(graph, { maxBatches: 4 }).run()) {
      expect(isOwnTable(b.data)).toBe(true);
      out.push(Number(b.data.getChild('n')!.get(0)));
    }
    expect(out).toEqual([2, 2]);
  });

  it('with a type dpl cannot carry over are refused with the column and what to do', () => {
    const t = otherTable();
    const bogus = { typeId: 999, children: [], toString: () => 'Mystery' };
    const fake = { schema: { fields: [{ name: 'm', type: bogus, nullable: true, metadata: new Map() }], metadata: new Map() }, batches: [] };
    expect(() => ownTable(fake as unknown as arrow.Table)).toThrow(/column "m" of a table from another copy of apache-arrow has type Mystery.*one installed copy/);
    expect(t.numRows).toBe(5);
  });
});
