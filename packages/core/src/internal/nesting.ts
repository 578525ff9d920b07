/**
 * How deep kwargs may nest. Deeper values break the recursive code that copies, checks and
 * serialises them (a stack overflow with no name), in the client, the head or an executor.
 */
export const MAX_KWARG_DEPTH = 64;

/**
 * Whether `v` nests arrays, plain objects, maps or sets more than `limit` levels deep (a value
 * that contains itself does too). Class instances (a Table, a client) are not looked into: they
 * are state passed by reference, not configuration. Stops at the limit, so it cannot overflow
 * the stack itself.
 */
export function nestsDeeperThan(v: unknown, limit = MAX_KWARG_DEPTH): boolean {
  const children = containerItems(v);
  if (children === undefined) return false;
  if (limit === 0) return true;
  for (const c of children) if (nestsDeeperThan(c, limit - 1)) return true;
  return false;
}

function containerItems(v: unknown): Iterable<unknown> | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  if (Array.isArray(v) || v instanceof Set) return v;
  if (v instanceof Map) return [...(v as Map<unknown, unknown>).keys(), ...(v as Map<unknown, unknown>).values()];
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null ? Object.values(v) : undefined;
}

/** The rule, for messages: what is wrong and what to do instead. */
export const KWARG_DEPTH_RULE =
  `nests deeper than ${MAX_KWARG_DEPTH} levels (arrays and objects inside each other, or a value that contains itself); ` +
  `dpl takes kwargs nested at most ${MAX_KWARG_DEPTH} deep: pass a large structure as a file path and read it inside the task`;
