/**
 * String columns without arrow's per-value UTF-8 work: arrow's builder encodes each string on
 * its own and `Vector.toArray()` decodes each value on its own, which made a string column cost
 * ~10× its numbers. Here a column is encoded and decoded in one call of the platform's codec,
 * and split by offsets (plain ASCII, the common case for names and ids); other text takes one
 * `encodeInto`/`decode` per value into one buffer, still without arrow's builder.
 */
import { Utf8, type Vector, makeData, makeVector, type Data } from 'apache-arrow';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A Utf8 column of `values` (null and undefined become nulls).
 *
 * ```ts
 * const df2 = assign(df, { label: utf8Vector(names) }); // assign does this for string arrays
 * ```
 */
export function utf8Vector(values: readonly (string | null | undefined)[]): Vector<Utf8> {
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  let validity: Uint8Array | undefined;
  let nulls = 0;
  const parts = new Array<string>(n);
  let chars = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v === 'string') {
      parts[i] = v;
      chars += v.length;
    } else {
      validity ??= new Uint8Array((n + 7) >> 3).fill(0xff);
      validity[i >> 3]! &= ~(1 << (i & 7));
      nulls++;
      parts[i] = '';
    }
    offsets[i + 1] = chars;
  }
  const joined = parts.join('');
  let bytes = encoder.encode(joined);
  if (bytes.byteLength !== chars) {
    // Not all ASCII: the offsets are in bytes, so each value is encoded into place.
    bytes = new Uint8Array(chars * 3);
    let at = 0;
    for (let i = 0; i < n; i++) {
      at += encoder.encodeInto(parts[i]!, bytes.subarray(at)).written;
      offsets[i + 1] = at;
    }
    bytes = bytes.slice(0, at);
  }
  const data: Data<Utf8> = makeData({ type: new Utf8(), length: n, nullCount: nulls, valueOffsets: offsets, data: bytes, nullBitmap: validity });
  return makeVector(data);
}

/**
 * The values of a Utf8 column as JavaScript strings (null for nulls), decoded in one pass.
 * @throws TypeError when the column is not Utf8.
 */
export function strings(vector: Vector): (string | null)[] {
  if (!Utf8.isUtf8(vector.type)) throw new TypeError(`strings: the column is ${String(vector.type)}, not Utf8; use column(df, name).toArray() for it`);
  const out = new Array<string | null>(vector.length);
  let k = 0;
  for (const chunk of vector.data as Data<Utf8>[]) {
    const offsets = chunk.valueOffsets;
    const first = offsets[0]!;
    const bytes = chunk.values.subarray(first, offsets[chunk.length]);
    const text = decoder.decode(bytes);
    const ascii = text.length === bytes.byteLength;
    for (let i = 0; i < chunk.length; i++, k++) {
      if (chunk.nullCount > 0 && !chunk.getValid(i)) {
        out[k] = null;
        continue;
      }
      const a = offsets[i]! - first;
      const b = offsets[i + 1]! - first;
      out[k] = ascii ? text.slice(a, b) : decoder.decode(bytes.subarray(a, b));
    }
  }
  return out;
}
