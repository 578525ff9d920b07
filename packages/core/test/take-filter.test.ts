import { Bool, Dictionary, Int32, Table, Utf8, makeVector, tableFromArrays, vectorFromArray } from 'apache-arrow';
import { column, concatTables, decodeIpc, encodeIpc, filter, take } from '../src';

const rowsOf = (t: Table): unknown[][] => t.toArray().map((r) => t.schema.fields.map((f) => (r as Record<string, unknown>)[f.name]));

/** A table with every kind of column take handles on its own path, and some it does not. */
function sample(): Table {
  return new Table({
    i: makeVector(Int32Array.of(10, 11, 12, 13, 14)),
    f: makeVector(Float64Array.of(0.5, 1.5, 2.5, 3.5, 4.5)),
    big: makeVector(BigInt64Array.of(1n, 2n, 3n, 4n, 5n)),
    s: vectorFromArray(['a', 'bb', '', 'dddd', 'é'], new Utf8()),
    b: vectorFromArray([true, false, true, true, false], new Bool()),
    n: vectorFromArray([1, null, 3, null, 5], new Int32()),
    d: vectorFromArray(['x', 'y', 'x', 'z', 'y'], new Dictionary(new Utf8(), new Int32())),
  });
}

describe('take', () => {
  it('gathers every kind of column at the indices, in order and with repeats, and survives IPC', () => {
    const t = sample();
    const out = take(t, Int32Array.of(4, 0, 0, 2));
    const want = [4, 0, 0, 2].map((i) => rowsOf(t)[i]);
    expect(rowsOf(out)).toEqual(want);
    expect(out.schema.fields.map((f) => String(f.type))).toEqual(t.schema.fields.map((f) => String(f.type)));
    expect(rowsOf(decodeIpc(encodeIpc(out)))).toEqual(want);
  });

  it('reads across the chunks of a table of several batches', () => {
    const a = tableFromArrays({ x: Float64Array.of(1, 2), s: ['p', 'q'] });
    const b = tableFromArrays({ x: Float64Array.of(3, 4, 5), s: ['r', 's', 't'] });
    const t = concatTables([a, b]);
    expect(t.batches.length).toBe(2);
    expect(rowsOf(take(t, [4, 1, 2]))).toEqual([
      [5, 't'],
      [2, 'q'],
      [3, 'r'],
    ]);
  });

  it('gives an empty table with the same schema for no indices', () => {
    const out = take(sample(), []);
    expect(out.numRows).toBe(0);
    expect(out.schema.fields.map((f) => f.name)).toEqual(['i', 'f', 'big', 's', 'b', 'n', 'd']);
  });

  it('refuses an index that is not a row, naming it, its position and the range', () => {
    expect(() => take(sample(), [1, 5])).toThrow('take: index 5 (at position 1) is not a row of a table of 5 rows; indices go from 0 to 4');
    expect(() => take(sample(), [-1])).toThrow(RangeError);
    expect(() => take(sample(), [1.5])).toThrow(RangeError);
  });
});

describe('filter', () => {
  it('keeps the rows a predicate, a byte mask or a boolean mask selects', () => {
    const t = sample();
    const i = column(t, 'i').toArray() as Int32Array;
    const byFn = filter(t, (r) => i[r]! % 2 === 0);
    const byBytes = filter(t, Uint8Array.of(1, 0, 1, 0, 1));
    const byBools = filter(t, [true, false, true, false, true]);
    for (const out of [byFn, byBytes, byBools]) expect(rowsOf(out)).toEqual([0, 2, 4].map((k) => rowsOf(t)[k]));
    expect(filter(t, () => false).numRows).toBe(0);
  });

  it('refuses a mask whose length is not the row count', () => {
    expect(() => filter(sample(), [true])).toThrow('filter: the mask has 1 entries for a table of 5 rows; give one per row');
  });
});
