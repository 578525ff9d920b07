/**
 * A task of a pipeline: a function from a dataframe (an Arrow Table) to a dataframe, with its
 * arguments and what it needs to run.
 */
import type { Table } from 'apache-arrow';
import { CPU, GPU, ResourceSet, amountProblem, describe, resourceProblems, type ResourceMap } from '../resources';
import { KWARG_DEPTH_RULE, MAX_KWARG_DEPTH, nestsDeeperThan } from '../internal/nesting';

/** The function a task runs on each batch: the input table and the resolved kwargs. */
export type TaskFn = (
  df: Table,
  kwargs: Record<string, unknown>,
) => Table | Promise<Table>;

/** The settings of a {@link PipelineTask}; every one may also be set later by configuration. */
export interface PipelineTaskOptions {
  /** Arguments passed to the function on every call. @default {} */
  kwargs?: Record<string, unknown>;
  /**
   * kwarg name → context key: on every call the kwarg takes the context's value, which wins
   * over `kwargs`. @default {}
   */
  contextKwargs?: Record<string, string>;
  /** CPUs one call holds while it runs (fractions allowed). @default 1 */
  numCpus?: number;
  /** GPUs one call holds while it runs (fractions allowed). @default 0 */
  numGpus?: number;
  /** Custom resources one call holds, e.g. `{ bigdb: 1 }`. @default {} */
  resources?: ResourceMap;
  /**
   * Rows per call. Inputs are split and merged so every call gets exactly this many rows, except
   * a last, smaller call when the stream ends. `undefined` runs each input batch as it comes.
   * @default undefined
   */
  batchSize?: number;
  /** kwargs that must have a value (from kwargs or context); checked by `validate()`. @default [] */
  required?: string[];
  /** How many times a failed call runs again before the run fails. @default 3 */
  maxRetries?: number;
  /**
   * A call running longer than this many milliseconds fails (a task failure, retried like any
   * other). On a cluster its executor process is killed; in process (LocalExecutor) the call is
   * abandoned and its promise left to settle. @default undefined (no limit)
   */
  timeoutMs?: number;
}

/** What `task.with()` may change: any option, and the name. */
export interface PipelineTaskOverrides extends PipelineTaskOptions {
  name?: string;
}

/** @default 3, as Ray does for tasks */
export const DEFAULT_MAX_RETRIES = 3;

const OPTION_KEYS: ReadonlySet<string> = new Set([
  'kwargs',
  'contextKwargs',
  'numCpus',
  'numGpus',
  'resources',
  'batchSize',
  'required',
  'maxRetries',
  'timeoutMs',
]);

/**
 * Passed as the constructor's 4th argument by executors that apply configuration: the task is
 * built even when its settings break rules, so that `validate()` can report every problem.
 * @internal
 */
export const UNCHECKED: unique symbol = Symbol('dpl.unchecked');

const TASK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;
const TASK_BRAND = Symbol.for('dpl.PipelineTask');

/** Whether `x` is a PipelineTask (across module copies). */
export function isPipelineTask(x: unknown): x is PipelineTask {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[TASK_BRAND] === true;
}

/**
 * One step of a pipeline.
 *
 * ```ts
 * const round = new PipelineTask('round', (df, { decimals }) => ..., {
 *   batchSize: 10,
 *   kwargs: { decimals: 1 },
 * });
 * const precise = round.with({ name: 'round4', kwargs: { decimals: 4 } });
 * ```
 */
export class PipelineTask {
  readonly name: string;
  readonly fn: TaskFn;
  readonly kwargs: Readonly<Record<string, unknown>>;
  readonly contextKwargs: Readonly<Record<string, string>>;
  readonly numCpus: number;
  readonly numGpus: number;
  readonly resources: Readonly<ResourceMap>;
  readonly batchSize: number | undefined;
  readonly required: readonly string[];
  readonly maxRetries: number;
  readonly timeoutMs: number | undefined;

  /**
   * @throws TypeError when the name or function is missing or malformed, an option is unknown,
   * or an option's value breaks its rule (every problem in one message).
   */
  constructor(name: string, fn: TaskFn, opts: PipelineTaskOptions = {}, mode?: typeof UNCHECKED) {
    const problems: string[] = [];
    if (typeof name !== 'string' || !TASK_NAME.test(name)) {
      problems.push(
        `task name ${describe(name)} is not valid: use letters, digits, "_" and "-" ` +
          '(a "." would break config coordinates such as round.kwargs.decimals)',
      );
    }
    if (typeof fn !== 'function') {
      problems.push(`task ${describe(name)}: fn must be a function (df, kwargs) => Table, got ${describe(fn)}`);
    }
    if (typeof opts !== 'object' || opts === null) {
      problems.push(`task ${describe(name)}: options must be an object, got ${describe(opts)}`);
      opts = {};
    }
    for (const key of Object.keys(opts)) {
      if (!OPTION_KEYS.has(key)) {
        problems.push(
          `task ${describe(name)}: unknown option ${JSON.stringify(key)}; ` +
            `known options: ${[...OPTION_KEYS].join(', ')}`,
        );
      }
    }
    this.name = name;
    this.fn = fn;
    // Deep copies: a task never shares a mutable object with the caller or with its copies.
    this.kwargs = structuredCloneKwargs(opts.kwargs ?? {});
    this.contextKwargs = copyIfObject(opts.contextKwargs ?? {});
    this.numCpus = opts.numCpus ?? 1;
    this.numGpus = opts.numGpus ?? 0;
    this.resources = copyIfObject(opts.resources ?? {});
    this.batchSize = opts.batchSize;
    const required = opts.required ?? [];
    // Malformed values are kept as they are, for taskProblems() to report.
    this.required = Array.isArray(required) ? [...(required)] : required;
    this.maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.timeoutMs = opts.timeoutMs;
    Object.defineProperty(this, TASK_BRAND, { value: true, enumerable: false });
    problems.push(...taskProblems(this));
    if (problems.length > 0 && mode !== UNCHECKED) throw new TypeError(problems.join('; '));
    Object.freeze(this.kwargs);
    Object.freeze(this.contextKwargs);
    Object.freeze(this.resources);
    Object.freeze(this.required);
  }

  /**
   * A copy of this task with some settings replaced (dplutils' `task(...)`). Objects are copied
   * deeply, so changing the copy's kwargs or resources never changes this task.
   */
  with(overrides: PipelineTaskOverrides): PipelineTask {
    const { name, ...opts } = overrides;
    return new PipelineTask(name ?? this.name, this.fn, { ...this.options(), ...opts });
  }

  /** This task's settings as options (deep copies). */
  options(): Required<Omit<PipelineTaskOptions, 'batchSize' | 'timeoutMs'>> & { batchSize: number | undefined; timeoutMs: number | undefined } {
    return {
      kwargs: structuredCloneKwargs(this.kwargs),
      contextKwargs: { ...this.contextKwargs },
      numCpus: this.numCpus,
      numGpus: this.numGpus,
      resources: { ...this.resources },
      batchSize: this.batchSize,
      required: [...this.required],
      maxRetries: this.maxRetries,
      timeoutMs: this.timeoutMs,
    };
  }

  /** The kwargs of one call: `kwargs`, overlaid with the context values named by `contextKwargs`. */
  resolveKwargs(context: ReadonlyMap<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = { ...this.kwargs };
    for (const [kwarg, key] of Object.entries(this.contextKwargs)) {
      if (context.has(key)) out[kwarg] = context.get(key);
    }
    return out;
  }

  /** What one call holds while it runs: `{CPU: numCpus, GPU: numGpus, ...resources}`. */
  request(): ResourceSet {
    return ResourceSet.from({ ...this.resources, [CPU]: this.numCpus, [GPU]: this.numGpus });
  }

  toString(): string {
    const parts = [`numCpus=${this.numCpus}`];
    if (this.numGpus !== 0) parts.push(`numGpus=${this.numGpus}`);
    if (Object.keys(this.resources).length > 0) parts.push(`resources=${JSON.stringify(this.resources)}`);
    if (this.batchSize !== undefined) parts.push(`batchSize=${this.batchSize}`);
    if (Object.keys(this.kwargs).length > 0) parts.push(`kwargs=${safeJson(this.kwargs)}`);
    if (Object.keys(this.contextKwargs).length > 0) {
      parts.push(`contextKwargs=${JSON.stringify(this.contextKwargs)}`);
    }
    if (this.required.length > 0) parts.push(`required=${JSON.stringify(this.required)}`);
    parts.push(`maxRetries=${this.maxRetries}`);
    if (this.timeoutMs !== undefined) parts.push(`timeoutMs=${this.timeoutMs}`);
    return `${this.name} (${parts.join(', ')})`;
  }
}

/**
 * Every rule a task's settings break, each message naming the task and the field. Shared by the
 * constructor and by `validate()` (configuration may change settings after construction).
 */
export function taskProblems(task: PipelineTask): string[] {
  const t = `task ${JSON.stringify(task.name)}`;
  const p: string[] = [];
  const nonNegative = (field: string, v: unknown): void => {
    const problem = amountProblem(`${t}: ${field}`, v);
    if (problem !== undefined) p.push(problem);
  };
  nonNegative('numCpus', task.numCpus);
  nonNegative('numGpus', task.numGpus);
  p.push(...resourceProblems(`${t}: resources`, task.resources));
  for (const reserved of [CPU, GPU]) {
    if (typeof task.resources === 'object' && task.resources !== null && reserved in task.resources) {
      p.push(`${t}: resources.${reserved} is reserved; use ${reserved === CPU ? 'numCpus' : 'numGpus'} instead`);
    }
  }
  const bs = task.batchSize;
  if (bs !== undefined && bs !== null && (typeof bs !== 'number' || !Number.isInteger(bs) || bs < 1)) {
    p.push(`${t}: batchSize must be an integer >= 1 (or unset), got ${describe(bs)}`);
  }
  const mr = task.maxRetries;
  if (typeof mr !== 'number' || !Number.isInteger(mr) || mr < 0) {
    p.push(`${t}: maxRetries must be an integer >= 0, got ${describe(mr)}`);
  }
  const to = task.timeoutMs;
  if (to !== undefined && to !== null && (typeof to !== 'number' || !Number.isInteger(to) || to < 1)) {
    p.push(`${t}: timeoutMs must be an integer >= 1 (milliseconds, or unset), got ${describe(to)}`);
  }
  if (!isPlainObject(task.kwargs)) p.push(`${t}: kwargs must be an object, got ${describe(task.kwargs)}`);
  else for (const [k, v] of Object.entries(task.kwargs)) if (nestsDeeperThan(v)) p.push(`${t}: kwarg ${JSON.stringify(k)} ${KWARG_DEPTH_RULE}`);
  if (
    !isPlainObject(task.contextKwargs) ||
    Object.values(task.contextKwargs).some((v) => typeof v !== 'string' || v === '')
  ) {
    p.push(
      `${t}: contextKwargs must map kwarg names to context keys (non-empty strings), got ${describe(task.contextKwargs)}`,
    );
  }
  if (!Array.isArray(task.required) || task.required.some((r) => typeof r !== 'string')) {
    p.push(`${t}: required must be an array of kwarg names, got ${describe(task.required)}`);
  }
  return p;
}

/** Whether `v` is a plain object (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function copyIfObject<T>(v: T): T {
  return isPlainObject(v) ? ({ ...v }) : v;
}

/**
 * A deep copy of kwargs: plain objects and arrays are copied recursively; anything else (class
 * instances such as Tables or clients, functions, dates) is kept by reference, as it is shared
 * state the user chose to pass rather than configuration.
 */
function structuredCloneKwargs(kwargs: Readonly<Record<string, unknown>>): Record<string, unknown> {
  if (!isPlainObject(kwargs)) return kwargs;
  return copyPlain(kwargs) as Record<string, unknown>;
}

/**
 * Copies `v` down to MAX_KWARG_DEPTH levels (below that it keeps references: such a value is
 * refused by taskProblems, and copying it would overflow the stack before it could be).
 */
function copyPlain(v: unknown, depth = 0): unknown {
  if (depth > MAX_KWARG_DEPTH) return v;
  if (Array.isArray(v)) return v.map((x) => copyPlain(x, depth + 1));
  if (typeof v === 'object' && v !== null) {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = copyPlain(x, depth + 1);
      return out;
    }
  }
  return v;
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
  } catch {
    return '[unserialisable]';
  }
}
