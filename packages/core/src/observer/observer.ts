/**
 * Observers: metrics and parameters recorded from inside task code, after dplutils' API.
 *
 * ```ts
 * import { observe, increment, param, timer } from '@dpl/core';
 * const score = new PipelineTask('score', async (df) => {
 *   param('model', 'v3');
 *   const t = timer('score_ms');          // or: await timer('score_ms', async () => { ... })
 *   t.start();
 *   const out = await model(df);
 *   t.complete();                          // observes the elapsed milliseconds
 *   increment('rows_scored', out.numRows);
 *   observe('mean_score', mean(out));
 *   return out;
 * });
 * ```
 *
 * On a cluster every call also reaches the head (its `/metrics` and dashboard, per job), whatever
 * observer is set. `setObserver()` sends them elsewhere too (in the process it runs in); the
 * default observer accepts every call and does nothing.
 */

/** Where observations go. Extra arguments (e.g. `{ step: 3 }`) are passed on as they are. */
export interface Observer {
  /** A value at this moment (gauge-like). */
  observe(name: string, value: number, extra?: Record<string, unknown>): void;
  /** Adds to a running total (default 1). */
  increment(name: string, value?: number, extra?: Record<string, unknown>): void;
  /** A parameter of the run; the last value wins. */
  param(name: string, value: unknown, extra?: Record<string, unknown>): void;
}

/** The default: accepts every call, extra arguments included, and records nothing. */
export class NoOpObserver implements Observer {
  observe(): void {}
  increment(): void {}
  param(): void {}
}

/** Keeps everything in memory: `{ time, value }` lists per metric (increments cumulative), params. */
export class InMemoryObserver implements Observer {
  readonly metrics = new Map<string, { time: number; value: number }[]>();
  readonly params = new Map<string, unknown>();

  observe(name: string, value: number): void {
    this.series(name).push({ time: Date.now(), value });
  }

  increment(name: string, value = 1): void {
    const s = this.series(name);
    s.push({ time: Date.now(), value: (s.at(-1)?.value ?? 0) + value });
  }

  param(name: string, value: unknown): void {
    this.params.set(name, value);
  }

  dump(): { params: Record<string, unknown>; metrics: Record<string, { time: number; value: number }[]> } {
    return { params: Object.fromEntries(this.params), metrics: Object.fromEntries(this.metrics) };
  }

  private series(name: string): { time: number; value: number }[] {
    let s = this.metrics.get(name);
    if (s === undefined) {
      s = [];
      this.metrics.set(name, s);
    }
    return s;
  }
}

/** One observation, as taps receive it. */
export type Observation =
  | { kind: 'observe' | 'increment'; name: string; value: number }
  | { kind: 'param'; name: string; value: string };

interface ObserverState {
  observers: Map<string, Observer>;
  taps: Set<(o: Observation) => void>;
}

/** Shared by every copy of this module in a process (a pipeline bundle and dpl's own). */
const STATE_KEY = Symbol.for('dpl.observers');
const state: ObserverState = ((globalThis as Record<symbol, unknown>)[STATE_KEY] as ObserverState | undefined) ?? {
  observers: new Map([['root', new NoOpObserver()]]),
  taps: new Set(),
};
(globalThis as Record<symbol, unknown>)[STATE_KEY] = state;

/** Sets the observer for `key` (default 'root', the one the module functions use). */
export function setObserver(observer: Observer, key = 'root'): void {
  state.observers.set(key, observer);
}

/** The observer for `key`, falling back to the root one. */
export function getObserver(key = 'root'): Observer {
  return state.observers.get(key) ?? state.observers.get('root')!;
}

/**
 * Receives every observation made through the module functions (dpl's executors use it to send
 * them to the head). Returns a function that removes the tap.
 * @internal
 */
export function tapObservations(tap: (o: Observation) => void): () => void {
  state.taps.add(tap);
  return () => state.taps.delete(tap);
}

function toTaps(o: Observation): void {
  for (const t of state.taps) t(o);
}

/** Records a value (gauge-like) on the root observer. */
export function observe(name: string, value: number, extra?: Record<string, unknown>): void {
  getObserver().observe(name, value, extra);
  toTaps({ kind: 'observe', name, value: Number(value) });
}

/** Adds to a running total (default 1) on the root observer. */
export function increment(name: string, value = 1, extra?: Record<string, unknown>): void {
  getObserver().increment(name, value, extra);
  toTaps({ kind: 'increment', name, value: Number(value) });
}

/** Records a run parameter on the root observer. */
export function param(name: string, value: unknown, extra?: Record<string, unknown>): void {
  getObserver().param(name, value, extra);
  toTaps({ kind: 'param', name, value: typeof value === 'string' ? value : JSON.stringify(value) ?? String(value) });
}

/**
 * Measures milliseconds, accumulated over start/stop pairs; `complete()` observes the total.
 * A Timer can be stopped and started again.
 */
export class Timer {
  private accumulated = 0;
  private startedAt: number | undefined;
  private everStarted = false;

  constructor(
    readonly name: string,
    private readonly extra?: Record<string, unknown>,
  ) {}

  start(): this {
    this.startedAt = performance.now();
    this.everStarted = true;
    return this;
  }

  stop(): this {
    if (this.startedAt !== undefined) {
      this.accumulated += performance.now() - this.startedAt;
      this.startedAt = undefined;
    }
    return this;
  }

  /**
   * Stops and observes the accumulated milliseconds.
   * @throws Error when the timer was never started.
   */
  complete(): number {
    if (!this.everStarted) throw new Error(`timer ${JSON.stringify(this.name)} was never started; call start() first`);
    this.stop();
    observe(this.name, this.accumulated, this.extra);
    return this.accumulated;
  }
}

/** A timer to start and stop by hand. */
export function timer(name: string, extra?: Record<string, unknown>): Timer;
/** Times `fn` (sync or async) and observes its milliseconds; returns what it returns. */
export function timer<T>(name: string, fn: () => T): T;
export function timer<T>(name: string, arg?: Record<string, unknown> | (() => T)): Timer | T {
  if (typeof arg !== 'function') return new Timer(name, arg);
  const t = new Timer(name).start();
  let result: T;
  try {
    result = arg();
  } catch (e) {
    t.complete();
    throw e;
  }
  if (result instanceof Promise) {
    return result.finally(() => t.complete()) as T;
  }
  t.complete();
  return result;
}
