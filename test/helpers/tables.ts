/**
 * Table builders and a `toEqualTable` matcher shared by the tests.
 */
import { Table, makeVector, vectorFromArray, Utf8 } from 'apache-arrow';

/** A table with an Int32 column `v` holding `values`. */
export function intTable(values: number[], name = 'v'): Table {
  return new Table({ [name]: makeVector(Int32Array.from(values)) });
}

/** A table with `rows` rows: `v` = start, start+1, … (Int32) and `s` = the same as text. */
export function rangeTable(start: number, rows: number): Table {
  const v = Int32Array.from({ length: rows }, (_, i) => start + i);
  return new Table({ v: makeVector(v), s: vectorFromArray(Array.from(v, String), new Utf8()) });
}

/** The values of column `name` as plain numbers. */
export function values(table: Table, name = 'v'): number[] {
  const col = table.getChild(name);
  if (col === null) throw new Error(`no column ${name}`);
  return Array.from(col.toArray() as ArrayLike<number | bigint>, Number);
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace jest {
    interface Matchers<R> {
      toEqualTable(expected: Table): R;
    }
  }
}

expect.extend({
  toEqualTable(received: Table, expected: Table) {
    const a = received.schema.fields.map((f) => `${f.name}:${String(f.type)}`).join(',');
    const b = expected.schema.fields.map((f) => `${f.name}:${String(f.type)}`).join(',');
    if (a !== b) return { pass: false, message: () => `schemas differ: ${a} vs ${b}` };
    const ra = JSON.stringify(received.toArray(), bigintReplacer);
    const rb = JSON.stringify(expected.toArray(), bigintReplacer);
    return {
      pass: ra === rb,
      message: () => (ra === rb ? 'tables are equal' : `rows differ:\n${ra.slice(0, 400)}\n${rb.slice(0, 400)}`),
    };
  },
});

function bigintReplacer(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}
