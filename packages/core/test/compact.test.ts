import { Dictionary, Int32, Table, Utf8, makeVector, tableFromArrays, vectorFromArray } from 'apache-arrow';
import { compactTable, concatTables, encodeIpc, decodeIpc } from '@dpl/core';

const rows = (t: Table): unknown[] => t.toArray().map((r) => JSON.stringify(r?.toJSON(), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));

describe('compactTable', () => {
  it('turns many small record batches into one with the same rows and schema', () => {
    const parts = Array.from({ length: 10 }, (_, i) =>
      new Table({
        s: vectorFromArray([i % 3 === 0 ? null : `row ${i}`], new Utf8()),
        id: makeVector(BigInt64Array.of(BigInt(i))),
        x: makeVector(Float64Array.of(i / 2)),
      }),
    );
    const merged = concatTables(parts);
    expect(merged.batches).toHaveLength(10);
    const compact = compactTable(merged);
    expect(compact.batches).toHaveLength(1);
    expect(compact.schema.fields.map(String)).toEqual(merged.schema.fields.map(String));
    expect(rows(compact)).toEqual(rows(merged));
    // And it survives the trip between processes.
    expect(rows(decodeIpc(encodeIpc(compact)))).toEqual(rows(merged));
  });

  it('leaves one batch, large tables and nested or dictionary columns as they are', () => {
    const one = tableFromArrays({ v: Int32Array.of(1, 2) });
    expect(compactTable(one)).toBe(one);
    const big = concatTables([tableFromArrays({ v: new Float64Array(40_000) }), tableFromArrays({ v: new Float64Array(1) })]);
    expect(compactTable(big)).toBe(big);
    const dict = concatTables([1, 2].map((i) => new Table({ d: vectorFromArray([`k${i}`], new Dictionary(new Utf8(), new Int32())) })));
    expect(compactTable(dict)).toBe(dict);
  });
});
