/**
 * What a message becomes through the protobuf codec, made without the codec: a copy of a plain
 * message object, as `toObject(decode(encode(fromObject(m))))` would give it under
 * {@link PROTO_LOADER_OPTIONS} (64-bit integers as decimal strings, enums as names, every field
 * of a message present with its default, the name of a oneof's set field, bytes as Buffers),
 * built from the message type's reflection. The in-process link ({@link inProcessClient}) sends
 * messages this way: serializing and parsing each one cost the embedded `dpl run` ~14 % of its
 * main process's CPU on one-row calls, most of it turning 64-bit numbers into `Long`s and back.
 *
 * Only values whose trip through the codec is plain are copied: strings without lone
 * surrogates, booleans, finite-or-not numbers in numeric fields, safe integers (or canonical
 * decimal strings) in 64-bit fields, known enum names or numbers, byte arrays, plain objects and
 * arrays. Anything else (a `Long`, base64 text for bytes, a string where a number belongs, two
 * members of one oneof set) makes the copy give up and return undefined; the caller then uses
 * the codec, whose result (or error) is the reference. A test compares the two on random
 * messages of every dpl type.
 *
 * Byte arrays are not copied where the receiver can read them in place: the copy holds a Buffer
 * over the sender's memory (the sender does not write into a message's bytes once it is sent)
 * when they are `byReferenceMin` bytes or more, or 8-byte aligned (as Arrow reads them) in memory
 * not much larger than themselves (a small view never keeps a large buffer alive). The others
 * are copied into memory of their own, 8-byte aligned. A one-row call's input, output and
 * delivery were three such copies (`allocUnsafeSlow` each), all of them of aligned bytes; the
 * run's gain from not making them is within this machine's noise (design record 0001, round 8).
 * @internal
 */
import type { Enum, Field, Type } from 'protobufjs';

/** Thrown inside a copy to give up on it (one object: giving up costs no stack trace). */
const GIVE_UP = new Error('not a plain message');

/** Nesting past this gives up (the codec's own limit is 100). */
const MAX_DEPTH = 64;

/** Memory past its own bytes that a small byte array held by reference may keep alive. */
const RETAIN_AT_MOST = 64 * 1024;

type CopyValue = (v: unknown, depth: number) => unknown;

interface FieldPlan {
  name: string;
  kind: 'single' | 'repeated' | 'map';
  /** The oneof this field belongs to, when it does. */
  oneof: string | undefined;
  copy: CopyValue;
}

interface MessagePlan {
  /** Fields in the order the codec's `toObject` sets them: by field number. */
  fields: FieldPlan[];
  /** Makes the object with every default, keys in the order `toObject` creates them. */
  defaults: () => Record<string, unknown>;
  /** The names of oneofs with more than one member (two set members give up). */
  oneofs: string[];
}

/** Copies messages of one type; returns undefined where only the codec knows the answer. */
export type MessageCopier = (message: unknown) => unknown;

const giveUp = (): never => {
  throw GIVE_UP;
};

// Decimal strings the codec gives back as they are: up to 18 digits, inside 64 bits either way
// (the string the copy makes of a safe integer has up to 16: a copy of a copy is the same).
const CANONICAL_UNSIGNED = /^(?:0|[1-9]\d{0,17})$/;
const CANONICAL_SIGNED = /^(?:0|-?[1-9]\d{0,17})$/;

function copyLong(unsigned: boolean): CopyValue {
  return (v) => {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || (unsigned && v < 0)) giveUp();
      return String(v);
    }
    if (typeof v === 'string' && (unsigned ? CANONICAL_UNSIGNED : CANONICAL_SIGNED).test(v)) return v === '-0' ? '0' : v;
    return giveUp();
  };
}

function copyBytes(byReferenceMin: number): CopyValue {
  return (v) => {
    if (!(v instanceof Uint8Array)) giveUp();
    const bytes = v as Uint8Array;
    if (bytes.byteLength === 0) return Buffer.alloc(0);
    if (bytes.byteLength >= byReferenceMin || (bytes.byteOffset % 8 === 0 && bytes.buffer.byteLength - bytes.byteLength <= RETAIN_AT_MOST)) {
      // A Buffer as it is (a view costs ~0.4 µs, three per one-row call).
      return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    // A fresh ArrayBuffer starts at offset 0: aligned for Arrow.
    const out = Buffer.allocUnsafeSlow(bytes.byteLength);
    out.set(bytes);
    return out;
  };
}

function copyEnum(e: Enum): CopyValue {
  return (v) => {
    if (typeof v === 'string' && Object.prototype.hasOwnProperty.call(e.values, v)) return v;
    if (typeof v === 'number' && e.valuesById[v] !== undefined) return e.valuesById[v];
    return giveUp();
  };
}

function scalarCopy(field: Field, byReferenceMin: number, plans: Map<Type, MessagePlan>): CopyValue {
  const resolved = field.resolvedType;
  if (resolved !== null) {
    if ('fieldsArray' in resolved) {
      const type = resolved;
      let plan: MessagePlan | undefined; // on first use: a type may contain itself
      return (v, depth) => copyMessage((plan ??= planFor(type, byReferenceMin, plans)), v, depth + 1);
    }
    return copyEnum(resolved);
  }
  switch (field.type) {
    case 'string':
      return (v) => (typeof v === 'string' && (v as string & { isWellFormed(): boolean }).isWellFormed() ? v : giveUp());
    case 'bool':
      return (v) => Boolean(v);
    case 'double':
      return (v) => (typeof v === 'number' ? v : giveUp());
    case 'float':
      return (v) => (typeof v === 'number' ? Math.fround(v) : giveUp());
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return (v) => (typeof v === 'number' ? v | 0 : giveUp());
    case 'uint32':
    case 'fixed32':
      return (v) => (typeof v === 'number' ? v >>> 0 : giveUp());
    case 'uint64':
    case 'fixed64':
      return copyLong(true);
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return copyLong(false);
    case 'bytes':
      return copyBytes(byReferenceMin);
    default:
      return giveUp;
  }
}

/**
 * The source of the value `toObject` gives a field that is not set (defaults on): a literal, or
 * `B()` for bytes (a new empty Buffer each time, as the codec gives).
 */
function defaultSource(field: Field): string {
  if (field.resolvedType !== null && !('fieldsArray' in field.resolvedType)) return JSON.stringify(field.resolvedType.valuesById[field.typeDefault as number]);
  if (field.long) return JSON.stringify(String(field.typeDefault));
  if (field.bytes) return 'B()';
  const value: unknown = field.typeDefault;
  // 0, '', false, or null for a message (-0 and non-finite numbers are no proto3 default).
  if (value === null || typeof value === 'boolean' || typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))) return JSON.stringify(value);
  throw new Error(`no literal for the default (${typeof value}) of field ${field.name}`);
}

/**
 * Makes the object of a type's defaults, keys in the order `toObject` creates them (repeated,
 * maps, then the rest), as one object literal compiled for the type: every copy then starts
 * from one allocation of one shape, where adding the keys one by one took ~1/3 of a copy.
 * The source holds only field names (quoted by JSON) and literals from the proto files.
 */
function defaultsMaker(repeated: readonly Field[], maps: readonly Field[], normal: readonly Field[]): () => Record<string, unknown> {
  const entries = [
    ...repeated.map((f) => `${JSON.stringify(f.name)}: []`),
    ...maps.map((f) => `${JSON.stringify(f.name)}: {}`),
    ...normal.map((f) => `${JSON.stringify(f.name)}: ${defaultSource(f)}`),
  ];
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from the proto files' field names and defaults only
  const make = new Function('B', `return () => ({ ${entries.join(', ')} });`) as (b: () => Buffer) => () => Record<string, unknown>;
  return make(() => Buffer.alloc(0));
}

function planFor(type: Type, byReferenceMin: number, plans: Map<Type, MessagePlan>): MessagePlan {
  let plan = plans.get(type);
  if (plan !== undefined) return plan;
  const fields = [...type.fieldsArray].sort((a, b) => a.id - b.id).map((f) => f.resolve());
  const made: MessagePlan = { fields: [], defaults: () => ({}), oneofs: [] };
  plans.set(type, made); // before the fields: a type may contain itself
  const repeated: Field[] = [];
  const maps: Field[] = [];
  const normal: Field[] = [];
  for (const f of fields) {
    if (f.partOf !== null) continue;
    (f.repeated ? repeated : f.map ? maps : normal).push(f);
  }
  made.defaults = defaultsMaker(repeated, maps, normal);
  for (const f of fields) {
    const map = f.map;
    if (map && (f as Field & { keyType: string }).keyType !== 'string') {
      made.fields.push({ name: f.name, kind: 'map', oneof: undefined, copy: giveUp });
      continue;
    }
    made.fields.push({
      name: f.name,
      kind: map ? 'map' : f.repeated ? 'repeated' : 'single',
      oneof: f.partOf?.name,
      copy: scalarCopy(f, byReferenceMin, plans),
    });
  }
  made.oneofs = type.oneofsArray.filter((o) => o.fieldsArray.length > 1).map((o) => o.name);
  plan = made;
  return plan;
}

function copyMessage(plan: MessagePlan, v: unknown, depth: number): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || depth > MAX_DEPTH || Array.isArray(v) || ArrayBuffer.isView(v)) giveUp();
  // A protobufjs message instance: the codec takes it as it is.
  if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null) giveUp();
  const src = v as Record<string, unknown>;
  const d = plan.defaults();
  let setOneofs: string[] | undefined;
  for (const f of plan.fields) {
    const x = src[f.name];
    if (f.kind === 'single') {
      if (x === undefined || x === null) continue;
      d[f.name] = f.copy(x, depth);
      if (f.oneof !== undefined) {
        if (plan.oneofs.includes(f.oneof)) {
          setOneofs ??= [];
          if (setOneofs.includes(f.oneof)) giveUp();
          setOneofs.push(f.oneof);
        }
        d[f.oneof] = f.name;
      }
    } else if (f.kind === 'repeated') {
      if (!x) continue; // as the codec: a falsy value is no value
      if (!Array.isArray(x)) giveUp();
      const items = x as unknown[];
      if (items.length === 0) continue;
      const out = new Array<unknown>(items.length);
      for (let i = 0; i < items.length; i++) out[i] = f.copy(items[i], depth);
      d[f.name] = out;
    } else {
      if (!x) continue;
      if (typeof x !== 'object') giveUp();
      const keys = Object.keys(x);
      if (keys.length === 0) continue;
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        if (k === '__proto__') giveUp();
        out[k] = f.copy((x as Record<string, unknown>)[k], depth);
      }
      d[f.name] = out;
    }
  }
  return d;
}

/** Plans by the size from which bytes cross by reference, then by type: built once each. */
const PLANS = new Map<number, Map<Type, MessagePlan>>();

/**
 * A copier for messages of `type`: gives the copy, or for anything it cannot copy exactly,
 * undefined (then the caller runs the codec).
 */
export function messageCopier(type: Type, byReferenceMin: number): MessageCopier {
  let plans = PLANS.get(byReferenceMin);
  if (plans === undefined) PLANS.set(byReferenceMin, (plans = new Map<Type, MessagePlan>()));
  const forSize = plans;
  return (message) => {
    try {
      return copyMessage(planFor(type, byReferenceMin, forSize), message, 0);
    } catch (e) {
      if (e === GIVE_UP) return undefined;
      throw e;
    }
  };
}
