/**
 * Resource quantities (CPUs, GPUs and custom resources such as `bigdb`) and the arithmetic that
 * placement needs. Quantities are kept in fixed point (1/10,000 of a unit, as Ray does) so that
 * fractional requests such as `numGpus: 0.1` add up exactly: ten of them make one GPU, not
 * 0.9999999999999999.
 */

/** The resource name that `numCpus` maps to. */
export const CPU = 'CPU';
/** The resource name that `numGpus` maps to. */
export const GPU = 'GPU';

/** Resource name → quantity (a count of units; fractions allowed). */
export type ResourceMap = Record<string, number>;

const SCALE = 10_000;

/**
 * The most of one resource that anything may advertise or request. Far above any machine (a
 * million CPUs), low enough that sums and bounds derived from it stay small, exact integers.
 */
export const MAX_RESOURCE_AMOUNT = 1_000_000;
/** The longest resource name, in characters. */
export const MAX_RESOURCE_NAME_LENGTH = 128;
/** The most resource names one map may hold. */
export const MAX_RESOURCE_NAMES = 64;

/**
 * What is wrong with one resource amount (`what` names it, e.g. `numCpus`), or undefined when it
 * is a finite number from 0 to {@link MAX_RESOURCE_AMOUNT}.
 */
export function amountProblem(what: string, v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return `${what} must be a number >= 0, got ${describe(v)}`;
  if (v > MAX_RESOURCE_AMOUNT) return `${what} must be at most ${MAX_RESOURCE_AMOUNT}, got ${describe(v)}`;
  return undefined;
}

function toFixed(v: number): number {
  return Math.round(v * SCALE);
}

/**
 * Checks a resource map and returns every problem found, each naming `what` and the key; an
 * empty list means the map is valid. Rules: at most {@link MAX_RESOURCE_NAMES} names, each a
 * non-empty string of at most {@link MAX_RESOURCE_NAME_LENGTH} characters, each value a number
 * from 0 to {@link MAX_RESOURCE_AMOUNT} (4 decimal places of precision matter).
 */
export function resourceProblems(what: string, map: unknown): string[] {
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    return [`${what} must be an object of resource name to number, got ${describe(map)}`];
  }
  const problems: string[] = [];
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length > MAX_RESOURCE_NAMES) {
    return [`${what} has ${entries.length} resource names; at most ${MAX_RESOURCE_NAMES} are allowed`];
  }
  for (const [k, v] of entries) {
    if (k.trim() === '') problems.push(`${what} has an empty resource name`);
    if (k.length > MAX_RESOURCE_NAME_LENGTH) {
      problems.push(`${what} has a resource name of ${k.length} characters (${describe(k)}); at most ${MAX_RESOURCE_NAME_LENGTH} are allowed`);
      continue;
    }
    const p = amountProblem(`${what}.${k}`, v);
    if (p !== undefined) problems.push(p);
  }
  return problems;
}

/** A short, quoted description of a value for error messages. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) {
    return String(v);
  }
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/**
 * An immutable set of resource quantities. Missing names are zero; zero entries are dropped.
 */
export class ResourceSet {
  /** Fixed-point quantities; never holds a zero. */
  private readonly units: ReadonlyMap<string, number>;

  private constructor(units: Map<string, number>) {
    this.units = units;
  }

  /** The empty set. */
  static readonly EMPTY = new ResourceSet(new Map());

  /**
   * Builds a set from a map of quantities.
   * @throws TypeError when a quantity is negative or not a finite number.
   */
  static from(map: ResourceMap): ResourceSet {
    const problems = resourceProblems('resources', map);
    if (problems.length > 0) throw new TypeError(problems.join('; '));
    const units = new Map<string, number>();
    for (const [k, v] of Object.entries(map)) {
      const u = toFixed(v);
      if (u !== 0) units.set(k, u);
    }
    return new ResourceSet(units);
  }

  /** Whether every quantity in `request` is available in this set. */
  fits(request: ResourceSet): boolean {
    for (const [k, u] of request.units) {
      if ((this.units.get(k) ?? 0) < u) return false;
    }
    return true;
  }

  /** The names in `request` whose quantity exceeds this set's, with both amounts. */
  shortfall(request: ResourceSet): { name: string; requested: number; available: number }[] {
    const out: { name: string; requested: number; available: number }[] = [];
    for (const [k, u] of request.units) {
      const have = this.units.get(k) ?? 0;
      if (have < u) out.push({ name: k, requested: u / SCALE, available: have / SCALE });
    }
    return out;
  }

  /** This set plus `other`. */
  add(other: ResourceSet): ResourceSet {
    const units = new Map(this.units);
    for (const [k, u] of other.units) units.set(k, (units.get(k) ?? 0) + u);
    return new ResourceSet(units);
  }

  /**
   * This set minus `other`.
   * @throws RangeError when the result would be negative (a bookkeeping bug: never over-allocate).
   */
  subtract(other: ResourceSet): ResourceSet {
    const units = new Map(this.units);
    for (const [k, u] of other.units) {
      const left = (units.get(k) ?? 0) - u;
      if (left < 0) {
        throw new RangeError(`resource ${k} would go negative (${left / SCALE}); released more than taken`);
      }
      if (left === 0) units.delete(k);
      else units.set(k, left);
    }
    return new ResourceSet(units);
  }

  /** The quantity of one resource (0 when absent). */
  get(name: string): number {
    return (this.units.get(name) ?? 0) / SCALE;
  }

  /** Whether the set holds nothing. */
  isEmpty(): boolean {
    return this.units.size === 0;
  }

  /** A plain object, names sorted. */
  toJSON(): ResourceMap {
    const out: ResourceMap = {};
    for (const k of [...this.units.keys()].sort()) out[k] = (this.units.get(k) ?? 0) / SCALE;
    return out;
  }

  /** `{CPU:1, GPU:0.5}` style text for messages. */
  toString(): string {
    const entries = Object.entries(this.toJSON());
    return entries.length === 0 ? '{}' : `{${entries.map(([k, v]) => `${k}:${v}`).join(', ')}}`;
  }
}
