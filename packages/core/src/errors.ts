/**
 * dpl's error types. Every error dpl throws on purpose is a {@link DplError} with a `code`
 * from {@link DplErrorCode}; use {@link isDplError} (not `instanceof`) to test for one, because
 * errors cross jest module registries, child processes and the wire.
 */

/** Every code a {@link DplError} can carry. */
export const DplErrorCode = {
  /** The pipeline or its configuration broke a rule; nothing ran. Never retried. */
  VALIDATION: 'VALIDATION',
  /** A configuration coordinate or value is wrong. Never retried. */
  CONFIG: 'CONFIG',
  /** User task code threw, returned a non-Table, or its process died. Uses up `maxRetries`. */
  TASK_FAILED: 'TASK_FAILED',
  /** No worker (or machine) can ever satisfy a task's resource request. Never retried. */
  INFEASIBLE: 'INFEASIBLE',
  /** A worker died while running a task; the task is recomputed. */
  WORKER_LOST: 'WORKER_LOST',
  /** An object that a task needs is gone; it is recomputed from lineage. */
  OBJECT_LOST: 'OBJECT_LOST',
  /** The run was cancelled. Never retried. */
  CANCELLED: 'CANCELLED',
  /** A pipeline module could not be found, bundled or loaded. */
  MODULE: 'MODULE',
  /** The head (or another daemon) cannot be reached. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The cluster refused the token. */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /**
   * A folder or file dpl must read or write is not private to this user (another user owns it,
   * others may write to it, or it is a symbolic link); nothing was read from it. Never retried.
   */
  INSECURE: 'INSECURE',
  /** A bug in dpl itself. */
  INTERNAL: 'INTERNAL',
} as const;
export type DplErrorCode = (typeof DplErrorCode)[keyof typeof DplErrorCode];

const DPL_ERROR_BRAND = Symbol.for('dpl.error');

/** Options common to every {@link DplError}. */
export interface DplErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
  /** Structured facts about the failure, for logs and the wire. */
  details?: Record<string, unknown>;
  /**
   * false: running it again cannot help (a task that returns something other than a Table does
   * so every time), whatever its code says. Only narrows: true or unset leaves it to the code.
   */
  retryable?: boolean;
}

/** The base class of every error dpl raises on purpose. */
export class DplError extends Error {
  readonly code: DplErrorCode;
  /** Whether the runtime may run the failed work again. Decided by {@link isRetryableCode}. */
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: DplErrorCode, message: string, options: DplErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable !== false && isRetryableCode(code);
    this.details = options.details ?? {};
    Object.defineProperty(this, DPL_ERROR_BRAND, { value: true, enumerable: false });
  }
}

/** Every problem `validate()` found, in one error. */
export class ValidationError extends DplError {
  readonly problems: readonly string[];
  constructor(problems: string[], options: DplErrorOptions = {}) {
    super(
      DplErrorCode.VALIDATION,
      `pipeline is not valid (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
      options,
    );
    this.problems = problems;
  }
}

/** A configuration coordinate or value is wrong; `path` is the full dotted coordinate. */
export class ConfigError extends DplError {
  readonly path: string;
  constructor(path: string, message: string, options: DplErrorOptions = {}) {
    super(DplErrorCode.CONFIG, message, options);
    this.path = path;
  }
}

/** A task call failed: the task's name, the batch (call) id, the attempt and the cause. */
export class TaskError extends DplError {
  readonly task: string;
  readonly batchId: string;
  readonly attempt: number;
  readonly remoteStack: string | undefined;
  constructor(
    task: string,
    batchId: string,
    attempt: number,
    message: string,
    options: DplErrorOptions & { remoteStack?: string } = {},
  ) {
    super(DplErrorCode.TASK_FAILED, message, options);
    this.task = task;
    this.batchId = batchId;
    this.attempt = attempt;
    this.remoteStack = options.remoteStack;
  }
}

/** A task asks for resources that nothing can ever provide. */
export class InfeasibleTaskError extends DplError {
  readonly task: string;
  readonly request: Readonly<Record<string, number>>;
  constructor(
    task: string,
    request: Record<string, number>,
    message: string,
    options: DplErrorOptions = {},
  ) {
    super(DplErrorCode.INFEASIBLE, message, options);
    this.task = task;
    this.request = request;
  }
}

/** The run was cancelled by its consumer. */
export class CancelledError extends DplError {
  constructor(message = 'run was cancelled', options: DplErrorOptions = {}) {
    super(DplErrorCode.CANCELLED, message, options);
  }
}

/**
 * Whether `err` is a {@link DplError} (optionally with the given code). Works across module
 * registries and realms: it checks a `Symbol.for` brand, not the prototype chain.
 */
export function isDplError(err: unknown, code?: DplErrorCode): err is DplError {
  if (typeof err !== 'object' || err === null) return false;
  if ((err as Record<symbol, unknown>)[DPL_ERROR_BRAND] !== true) return false;
  return code === undefined || (err as DplError).code === code;
}

/** Whether work that failed with `code` may be run again (the one place this rule lives). */
export function isRetryableCode(code: DplErrorCode): boolean {
  switch (code) {
    case DplErrorCode.TASK_FAILED:
    case DplErrorCode.WORKER_LOST:
    case DplErrorCode.OBJECT_LOST:
      return true;
    case DplErrorCode.VALIDATION:
    case DplErrorCode.CONFIG:
    case DplErrorCode.INFEASIBLE:
    case DplErrorCode.CANCELLED:
    case DplErrorCode.MODULE:
    case DplErrorCode.UNAVAILABLE:
    case DplErrorCode.UNAUTHENTICATED:
    case DplErrorCode.INSECURE:
    case DplErrorCode.INTERNAL:
      return false;
  }
}

/**
 * Whether a call that failed with `err` on attempt number `attempt` (1-based) runs again.
 * TASK_FAILED uses up `maxRetries`; WORKER_LOST and OBJECT_LOST are not the task's fault and
 * do not count against it; every other code is final.
 */
export function shouldRetry(err: DplError, attempt: number, maxRetries: number): boolean {
  if (!err.retryable) return false;
  if (err.code === DplErrorCode.TASK_FAILED) return attempt <= maxRetries;
  return true;
}

/** The longest wait before a retry. */
export const MAX_RETRY_DELAY_MS = 10_000;

/**
 * How long to wait before running a failed call again: `baseMs` after the first attempt,
 * doubling with each further attempt, at most {@link MAX_RETRY_DELAY_MS}.
 */
export function retryDelayMs(attempt: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** (attempt - 1), MAX_RETRY_DELAY_MS);
}

/** Turns anything thrown into an Error, keeping the original as `cause` when it was not one. */
export function ensureError(e: unknown): Error {
  // Errors from another realm (a vm context, jest's sandbox) fail instanceof but are errors.
  if (e instanceof Error || isDplError(e) || Object.prototype.toString.call(e) === '[object Error]') {
    return e as Error;
  }
  if (typeof e === 'object' && e !== null && typeof (e as Error).message === 'string') {
    const err = new Error((e as Error).message, { cause: e });
    if (typeof (e as Error).stack === 'string') err.stack = (e as Error).stack;
    return err;
  }
  let text: string;
  try {
    text = typeof e === 'string' ? e : JSON.stringify(e);
  } catch {
    text = String(e);
  }
  return new Error(`non-error value thrown: ${text}`, { cause: e });
}
