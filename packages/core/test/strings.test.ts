import { Utf8, vectorFromArray, tableFromArrays } from 'apache-arrow';
import { assign, column, concatTables, decodeIpc, encodeIpc, strings, utf8Vector } from '../src';

describe('utf8Vector and strings', () => {
  const ascii = ['a', '', 'sample-12', 'x'.repeat(300)];
  const mixed = ['é', 'naïve', '😀 ok', '', '日本語', 'plain'];

  it.each([
    ['ASCII', ascii],
    ['non-ASCII', mixed],
  ])('round-trip %s text, also through IPC, and read as arrow reads it', (_name, values) => {
    const v = utf8Vector(values);
    expect(Utf8.isUtf8(v.type)).toBe(true);
    expect(v.toArray()).toEqual(values); // arrow's own decoding agrees
    expect(strings(v)).toEqual(values);
    const t = decodeIpc(encodeIpc(assign(tableFromArrays({ i: Int32Array.from(values, (_, k) => k) }), { s: v })));
    expect(strings(column(t, 's'))).toEqual(values);
  });

  it('keeps nulls (null and undefined) as nulls', () => {
    const v = utf8Vector(['a', null, 'ü', undefined, 'b']);
    expect(v.nullCount).toBe(2);
    expect([...v]).toEqual(['a', null, 'ü', null, 'b']);
    expect(strings(v)).toEqual(['a', null, 'ü', null, 'b']);
  });

  it('reads columns of several chunks, and sliced ones', () => {
    const part = (values: string[]) => assign(tableFromArrays({ i: new Int32Array(values.length) }), { s: values }).select(['s']);
    const t = concatTables([part(['p', 'qq']), part(['r', 'é', 's'])]);
    expect(t.batches.length).toBe(2);
    expect(strings(column(t, 's'))).toEqual(['p', 'qq', 'r', 'é', 's']);
    expect(strings(column(t.slice(1, 4), 's'))).toEqual(['qq', 'r', 'é']);
    expect(strings(vectorFromArray(['a', 'bc', 'd'], new Utf8()).slice(1))).toEqual(['bc', 'd']);
  });

  it('assign turns an array of strings into a plain Utf8 column', () => {
    const t = assign(tableFromArrays({ i: Int32Array.of(1, 2) }), { s: ['one', 'twö'] });
    expect(Utf8.isUtf8(column(t, 's').type)).toBe(true);
    expect(column(t, 's').toArray()).toEqual(['one', 'twö']);
  });

  it('refuses a column that is not Utf8, saying what to use', () => {
    expect(() => strings(column(tableFromArrays({ i: Int32Array.of(1) }), 'i'))).toThrow('strings: the column is Int32, not Utf8; use column(df, name).toArray() for it');
  });
});
