import { Enum, Root, Type, type Field } from 'protobufjs';
import { PROTO_LOADER_OPTIONS, dplMethodTypes, loadDplProto } from '../src/proto';
import { messageCopier } from '../src/message-copy';
import { rng } from '../../../test/helpers/random';


const LARGE = 64 * 1024;

/** Random values for a field, most of them plain, some of the kinds the copy leaves to the codec. */
function valueFor(field: Field, r: () => number, depth: number): unknown {
  // Mostly plain values; now and then one of the kinds the copy leaves to the codec.
  const pick = <T>(plain: T[], odd: T[]): T => {
    const xs = odd.length > 0 && r() < 0.1 ? odd : plain;
    return xs[Math.floor(r() * xs.length)]!;
  };
  const t = field.resolvedType;
  if (t instanceof Type) return depth > 3 ? null : messageFor(t, r, depth + 1);
  if (t instanceof Enum) return pick<unknown>([...Object.keys(t.values), ...Object.values(t.values)], ['NOT_A_VALUE', 99]);
  switch (field.type) {
    case 'string':
      return pick<unknown>(['', 'a', 'héllo wörld', '日本語', 'x'.repeat(300)], ['\ud800 lone', 7]);
    case 'bool':
      return pick<unknown>([true, false, 0, 1, ''], []);
    case 'double':
      return pick<unknown>([0, -0, 1.5, -3.25e300, NaN, Infinity, r()], ['2.5']);
    case 'int32':
    case 'uint32':
      return pick<unknown>([0, 1, -1, 2 ** 31, 2 ** 32 + 5, 1.5, Math.floor(r() * 1e6)], ['12']);
    case 'int64':
    case 'uint64':
      return pick<unknown>([0, 5, 2 ** 53 - 1, '0', '123', Math.floor(r() * 1e12)], [-5, 2 ** 60, 1.5, '-42', '007', '18446744073709551615', { low: 1, high: 0 }]);
    case 'bytes':
      return pick<unknown>([Buffer.from('abc'), new Uint8Array([1, 2, 3, 4, 5]), new Uint8Array(0), Buffer.alloc(LARGE + 3, 7), Buffer.from('pooled').subarray(1)], ['AQID']);
    default:
      throw new Error(`no generator for ${field.type}`);
  }
}

function messageFor(type: Type, r: () => number, depth: number): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  for (const f of type.fieldsArray) {
    f.resolve();
    if (f.partOf !== null) continue;
    const roll = r();
    if (roll < 0.25) continue;
    if (f.map) m[f.name] = roll < 0.3 ? 0 : Object.fromEntries(Array.from({ length: Math.floor(r() * 3) }, (_, i) => [`k${i}`, valueFor(f, r, depth)]));
    else if (f.repeated) m[f.name] = roll < 0.3 ? 0 : roll < 0.31 ? 'not a list' : Array.from({ length: Math.floor(r() * 4) }, () => valueFor(f, r, depth));
    else m[f.name] = roll < 0.3 ? null : valueFor(f, r, depth);
  }
  for (const o of type.oneofsArray) {
    const members = o.fieldsArray;
    const n = r() < 0.03 ? 2 : r() < 0.6 ? 1 : 0;
    for (let i = 0; i < n && i < members.length; i++) {
      const f = members[(i + Math.floor(r() * members.length)) % members.length]!;
      m[f.name] = valueFor(f.resolve(), r, depth);
    }
  }
  if (r() < 0.2) m.not_a_field = 'ignored';
  return m;
}

/** What grpc-js's proto-loader codec makes of `m` (the reference), or the error it throws. */
function throughCodec(type: Type, m: unknown): { value?: unknown; error?: unknown } {
  try {
    const bytes = type.encode(type.fromObject(m as Record<string, unknown>)).finish();
    return { value: type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS as Record<string, unknown>) };
  } catch (error) {
    return { error };
  }
}

/** Keys of every object in `v`, in order, as one list: the two sides must build alike. */
function shape(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes(${v.byteLength})`;
  if (Array.isArray(v)) return v.map(shape);
  if (typeof v === 'object' && v !== null) return Object.entries(v).map(([k, x]) => [k, shape(x)]);
  return typeof v === 'number' && Object.is(v, -0) ? '-0' : v;
}

function dplRoot(): Root {
  const types = dplMethodTypes('/dpl.v1.HeadService/GetStatus');
  if (types === undefined) throw new Error('no dpl types');
  return types.request.root;
}

function allTypes(ns: { nestedArray: unknown[] }): Type[] {
  const out: Type[] = [];
  for (const n of ns.nestedArray) {
    if (n instanceof Type) out.push(n);
    if (typeof n === 'object' && n !== null && 'nestedArray' in n) out.push(...allTypes(n as { nestedArray: unknown[] }));
  }
  return out;
}

describe('messageCopier', () => {
  const types = allTypes(dplRoot());

  it('covers every message type of dpl.v1', () => {
    expect(types.length).toBeGreaterThan(40);
  });

  it('gives what the codec gives, key order included, or leaves the message to the codec', () => {
    let copied = 0;
    let leftToCodec = 0;
    for (const type of types) {
      const copy = messageCopier(type, LARGE);
      for (let i = 0; i < 150; i++) {
        const seed = type.fullName.length * 1000 + i;
        const m = messageFor(type, rng(seed), 0);
        const got = copy(m);
        if (got === undefined) {
          leftToCodec++;
          continue;
        }
        copied++;
        const ref = throughCodec(type, m);
        if (ref.error !== undefined) throw new Error(`${type.fullName} seed ${seed}: copied what the codec rejects (${String(ref.error)})`);
        expect({ type: type.fullName, seed, value: shape(got) }).toEqual({ type: type.fullName, seed, value: shape(ref.value) });
      }
    }
    // Both paths are exercised: most messages copy, the odd values go to the codec.
    expect(copied).toBeGreaterThan(leftToCodec);
    expect(leftToCodec).toBeGreaterThan(0);
  });

  it('copies its own copies as they are (a copy of a copy is the same)', () => {
    for (const type of types) {
      const copy = messageCopier(type, LARGE);
      for (let i = 0; i < 60; i++) {
        const once = copy(messageFor(type, rng(type.fullName.length * 7000 + i), 0));
        if (once === undefined) continue;
        expect({ type: type.fullName, i, value: shape(copy(once)) }).toEqual({ type: type.fullName, i, value: shape(once) });
      }
    }
    // The largest safe integer becomes a 16-digit string, which copies again; 20 digits go to the codec.
    const task = dplRoot().lookupType('dpl.v1.AssignTask');
    const copy = messageCopier(task, LARGE);
    expect(copy(copy({ assignment: Number.MAX_SAFE_INTEGER }))).toMatchObject({ assignment: '9007199254740991' });
    for (const [field, text] of [['assignment', '999999999999999999'], ['assignment', '9007199254740993']] as const) {
      // As the codec gives it back (uint64).
      expect((throughCodec(task, { [field]: text }).value as Record<string, unknown>)[field]).toBe(text);
      expect(copy({ [field]: text })).toMatchObject({ [field]: text });
    }
    expect(copy({ assignment: '18446744073709551615' })).toBeUndefined();
    // And signed (int64), negative too.
    const heartbeat = dplRoot().lookupType('dpl.v1.Heartbeat');
    for (const text of ['-999999999999999999', '999999999999999999', '-9007199254740993']) {
      expect((throughCodec(heartbeat, { sent_at_ms: text }).value as Record<string, unknown>).sent_at_ms).toBe(text);
      expect(messageCopier(heartbeat, LARGE)({ sent_at_ms: text })).toMatchObject({ sent_at_ms: text });
    }
  });

  it('gives up on values only the codec converts exactly', () => {
    const task = dplRoot().lookupType('dpl.v1.AssignTask');
    const copy = messageCopier(task, LARGE);
    expect(copy({ call_id: 'c', assignment: 7 })).toMatchObject({ call_id: 'c', assignment: '7', attempt: 0 });
    for (const odd of [{ assignment: 2 ** 60 }, { assignment: '007' }, { assignment: -1 }, { assignment: { low: 1, high: 0 } }, { call_id: 'a\udc00' }, { attempt: '3' }, { inputs: 'x' }, { inputs: [null] }]) {
      expect(copy(odd)).toBeUndefined();
    }
  });

  it('passes large and aligned byte arrays by reference, and copies the others into aligned memory of their own', () => {
    const slice = dplRoot().lookupType('dpl.v1.InputSlice');
    const copy = messageCopier(slice, LARGE);
    // At an odd offset: copied, aligned.
    const odd = new Uint8Array(64).fill(1).subarray(3, 16);
    const out = copy({ inline_ipc: odd }) as { inline_ipc: Buffer };
    expect(Buffer.isBuffer(out.inline_ipc)).toBe(true);
    expect(out.inline_ipc.equals(odd)).toBe(true);
    expect(out.inline_ipc.byteOffset % 8).toBe(0);
    odd[0] = 0;
    expect(out.inline_ipc[0]).toBe(1);
    // Aligned, in memory of about its size: the same memory, as a Buffer.
    const aligned = new Uint8Array(64).subarray(8, 24);
    const same = copy({ inline_ipc: aligned }) as { inline_ipc: Buffer };
    expect(Buffer.isBuffer(same.inline_ipc)).toBe(true);
    expect([same.inline_ipc.buffer, same.inline_ipc.byteOffset, same.inline_ipc.byteLength]).toEqual([aligned.buffer, 8, 16]);
    // A Buffer goes as it is.
    const buffer = Buffer.from(aligned.buffer, 8, 16);
    expect((copy({ inline_ipc: buffer }) as { inline_ipc: Buffer }).inline_ipc).toBe(buffer);
    // Aligned, but a small view of a large buffer: copied (the receiver would keep it all alive).
    const view = new Uint8Array(1024 * 1024).subarray(8, 24);
    const own = copy({ inline_ipc: view }) as { inline_ipc: Buffer };
    expect(own.inline_ipc.buffer).not.toBe(view.buffer);
    expect(own.inline_ipc.byteLength).toBe(16);
    const large = new Uint8Array(LARGE);
    const big = copy({ inline_ipc: large }) as { inline_ipc: Buffer };
    expect(big.inline_ipc.buffer).toBe(large.buffer);
    expect(Buffer.isBuffer(big.inline_ipc)).toBe(true);
  });

  it('is used by the method types of the loaded service (the same files)', () => {
    const service = loadDplProto().HeadService.service;
    for (const def of Object.values(service)) {
      const t = dplMethodTypes(def.path);
      expect(t).toBeDefined();
      // The reflection agrees with the loaded codec on a default message.
      const viaCodec = def.requestDeserialize(def.requestSerialize({}));
      expect(shape(messageCopier(t!.request, LARGE)({}))).toEqual(shape(viaCodec));
    }
    expect(dplMethodTypes('/other.Service/Call')).toBeUndefined();
  });
});
