/**
 * The streaming scheduler: a pure state machine that decides *what* runs next in a pipeline,
 * after dplutils' StreamingGraphExecutor, with its defects fixed. It never runs anything and
 * knows nothing of processes, time or the network: a backend tells it whether a task fits now
 * and runs the calls it submits; the driver feeds it source batches and completions.
 *
 * Rules (see reference/dplutils-features.md §2):
 * - Queues are FIFO everywhere, sources included.
 * - A task with `batchSize` B gets calls of exactly B rows: inputs are sliced (no copy) and
 *   merged oldest first; a smaller remainder runs only once the source is exhausted and nothing
 *   upstream is queued or running.
 * - Tasks nearest the sinks run first (rank = longest path to a sink, computed once); among
 *   equal ranks the task with fewer submissions so far goes first, then graph order.
 * - Sources are fed last, and only while the backend has room for them and the work already
 *   waiting (running calls plus calls ready downstream) is under `maxPendingCalls`, so an
 *   endless source never piles up unbounded work.
 * - Empty batches are dropped and counted; every completed non-empty sink call is one output.
 */
import type { PipelineGraph } from '../model/graph';
import { DplError, DplErrorCode, shouldRetry } from '../errors';
import { Deque } from '../internal/deque';

/** A batch the scheduler tracks: an id from its lineage, its row count, and opaque data. */
export interface BatchRef<D> {
  /** `s<n>` for the n-th generator batch, else the id of the call that produced it. */
  readonly id: string;
  readonly rows: number;
  /** What the backend needs to find the rows: a Table in process, an object id in a cluster. */
  readonly data: D;
}

/** Rows `[offset, offset + rows)` of a batch. */
export interface InputSlice<D> {
  readonly ref: BatchRef<D>;
  readonly offset: number;
  readonly rows: number;
}

/** One call of a task on its input slices, concatenated in order. */
export interface TaskCall<D> {
  /** `<task>#<seq>`: stable for the run, and the same on every attempt. */
  readonly id: string;
  readonly task: string;
  readonly seq: number;
  readonly inputs: readonly InputSlice<D>[];
  /** Total input rows. */
  readonly rows: number;
  /** 1 on the first run, +1 on each retry. */
  readonly attempt: number;
  readonly isSource: boolean;
}

/** What a backend learns when asked whether a task fits. */
export interface SubmitContext<D = unknown> {
  /** The task's rank: 0 for sinks, larger upstream. */
  readonly rank: number;
  /** How many ready, higher-priority tasks were refused earlier in this pass. */
  readonly blockedAhead: number;
  readonly isSource: boolean;
  /** The batches the next call of this task would read (for placement by locality). */
  readonly inputs: readonly BatchRef<D>[];
}

/** Where the calls go. Both methods are called synchronously within `schedule()`. */
export interface SchedulerBackend<D> {
  /** Whether a call of `task` can start now (e.g. its resources are free). No side effects. */
  fits(task: string, ctx: SubmitContext<D>): boolean;
  /** Starts the call (and takes its resources). Its result comes back through `complete()`/`fail()`. */
  submit(call: TaskCall<D>): void;
}

/** Options of {@link StreamingScheduler}. */
export interface StreamingSchedulerOptions<D> {
  /** Stop after this many generator batches. @default undefined (until the generator ends) */
  maxBatches?: number;
  /**
   * Sources are fed only while running calls plus calls ready to run downstream number fewer
   * than this. @default 16
   */
  maxPendingCalls?: number;
  /** Told when a batch is no longer needed by any queue or call (to free it). Sink outputs are not. */
  onRelease?: (ref: BatchRef<D>) => void;
}

/** The result of one {@link StreamingScheduler.schedule} pass. */
export interface ScheduleResult {
  /** Calls submitted in this pass. */
  readonly submitted: number;
  /**
   * A source fits now but has too few rows queued: pull one batch from the generator, give it
   * to `addSourceBatch()` (or call `endSource()`), then schedule again.
   */
  readonly wantsSourceData: boolean;
}

/** A sink's output, handed to the consumer. */
export interface SinkOutput<D> {
  /** The id of the call that produced it. */
  readonly id: string;
  readonly task: string;
  readonly ref: BatchRef<D>;
}

/** Counters of one task in one run. */
export interface TaskStats {
  calls: number;
  rowsIn: number;
  rowsOut: number;
  running: number;
  queuedRows: number;
  retries: number;
  emptyOutputs: number;
  /** Calls given up on under `maxErroredBatches`. */
  skipped: number;
}

/** Counters of one run. */
export interface SchedulerStats {
  sourceBatches: number;
  emptySourceBatches: number;
  outputs: number;
  tasks: Record<string, TaskStats>;
}

/** The default of {@link StreamingSchedulerOptions.maxPendingCalls}. */
export const DEFAULT_MAX_PENDING_CALLS = 16;

/**
 * The most calls a run keeps running or ready, however many CPUs are advertised: enough for
 * tens of thousands of CPUs, and small enough that one run's bookkeeping stays bounded even if
 * a worker claims a million CPUs.
 */
export const MAX_PENDING_CALLS_CAP = 65_536;

/**
 * The pending-call bound for a run that can use `cpus` CPUs at once: 4 per CPU, at least
 * {@link DEFAULT_MAX_PENDING_CALLS}, at most {@link MAX_PENDING_CALLS_CAP}. One rule for the
 * LocalExecutor and the head.
 */
export function pendingCallsFor(cpus: number): number {
  const n = Number.isFinite(cpus) ? Math.ceil(4 * Math.max(0, cpus)) : MAX_PENDING_CALLS_CAP;
  return Math.min(MAX_PENDING_CALLS_CAP, Math.max(DEFAULT_MAX_PENDING_CALLS, n));
}

interface QueueEntry<D> {
  readonly ref: BatchRef<D>;
  offset: number;
}

type CallState = 'running' | 'waiting-retry' | 'queued-retry';

interface CallRecord<D> {
  call: TaskCall<D>;
  state: CallState;
  ts: TaskState<D>;
}

interface TaskState<D> {
  readonly name: string;
  readonly index: number;
  readonly rank: number;
  readonly batchSize: number | undefined;
  readonly maxRetries: number;
  readonly isSource: boolean;
  readonly isSink: boolean;
  successors: TaskState<D>[];
  predecessors: TaskState<D>[];
  /** The walk over ancestors that last visited this task (see `drained`). */
  visited: number;
  readonly queue: Deque<QueueEntry<D>>;
  queuedRows: number;
  /** Calls not yet completed: running, waiting for a retry, or queued for one. */
  open: number;
  readonly retryQueue: Deque<CallRecord<D>>;
  /** Submissions so far (retries included): the fairness key among equal ranks. */
  counter: number;
  seq: number;
  readonly stats: TaskStats;
}

/**
 * The scheduler of one run. Make a new one for every run: it holds that run's queues only.
 */
export class StreamingScheduler<D> {
  private readonly tasks: TaskState<D>[];
  private readonly byName: Map<string, TaskState<D>>;
  private readonly nonSources: TaskState<D>[];
  private readonly sources: TaskState<D>[];
  private readonly calls = new Map<string, CallRecord<D>>();
  private readonly holds = new Map<string, { ref: BatchRef<D>; count: number }>();
  private readonly maxBatches: number | undefined;
  private maxPendingCalls: number;
  private readonly onRelease: ((ref: BatchRef<D>) => void) | undefined;
  private pulled = 0;
  private exhausted: boolean;
  private sourceBatchCount = 0;
  private emptySourceBatches = 0;
  private outputs = 0;
  private walks = 0;
  /** The tasks a walk over ancestors has still to look at (reused: no array per walk). */
  private readonly walk: TaskState<D>[] = [];

  constructor(graph: PipelineGraph, options: StreamingSchedulerOptions<D> = {}) {
    const { maxBatches, maxPendingCalls = DEFAULT_MAX_PENDING_CALLS } = options;
    if (maxBatches !== undefined && (!Number.isInteger(maxBatches) || maxBatches < 0)) {
      throw new TypeError(`maxBatches must be an integer >= 0, got ${maxBatches}`);
    }
    if (!Number.isInteger(maxPendingCalls) || maxPendingCalls < 1) {
      throw new TypeError(`maxPendingCalls must be an integer >= 1, got ${maxPendingCalls}`);
    }
    this.maxBatches = maxBatches;
    this.maxPendingCalls = maxPendingCalls;
    this.onRelease = options.onRelease;
    this.exhausted = maxBatches === 0;
    this.tasks = graph.tasks.map((t, index) => ({
      name: t.name,
      index,
      rank: graph.rank(t.name),
      batchSize: t.batchSize ?? undefined,
      maxRetries: t.maxRetries,
      isSource: graph.predecessors(t.name).length === 0,
      isSink: graph.successors(t.name).length === 0,
      successors: [],
      predecessors: [],
      visited: 0,
      queue: new Deque(),
      queuedRows: 0,
      open: 0,
      retryQueue: new Deque(),
      counter: 0,
      seq: 0,
      stats: { calls: 0, rowsIn: 0, rowsOut: 0, running: 0, queuedRows: 0, retries: 0, emptyOutputs: 0, skipped: 0 },
    }));
    this.byName = new Map(this.tasks.map((t) => [t.name, t]));
    for (const ts of this.tasks) {
      ts.successors = graph.successors(ts.name).map((n) => this.byName.get(n)!);
      ts.predecessors = graph.predecessors(ts.name).map((n) => this.byName.get(n)!);
    }
    this.sources = this.tasks.filter((t) => t.isSource);
    this.nonSources = this.tasks.filter((t) => !t.isSource);
  }

  /** Whether no more generator batches will be taken (the generator ended or maxBatches was reached). */
  get sourceExhausted(): boolean {
    return this.exhausted;
  }

  /**
   * Generator batches it can still take before `maxBatches` (Infinity without a limit; 0 once
   * the source is exhausted).
   */
  get sourceRoom(): number {
    if (this.exhausted) return 0;
    return this.maxBatches === undefined ? Infinity : this.maxBatches - this.pulled;
  }

  /** Calls submitted and not yet completed or failed for good (retries included). */
  get openCalls(): number {
    return this.calls.size;
  }

  /**
   * Gives every source task one batch from the generator (the same batch to each). Empty batches
   * are counted and dropped. Counts toward `maxBatches`.
   * Returns the batch's id (`s<n>`).
   * @throws DplError(INTERNAL) when the source is already exhausted.
   */
  addSourceBatch(data: D, rows: number): string {
    if (this.exhausted) {
      throw new DplError(DplErrorCode.INTERNAL, 'addSourceBatch after the source was exhausted');
    }
    const ref: BatchRef<D> = { id: `s${this.pulled}`, rows, data };
    this.pulled++;
    if (this.maxBatches !== undefined && this.pulled >= this.maxBatches) this.exhausted = true;
    if (rows === 0) {
      this.emptySourceBatches++;
      this.onRelease?.(ref);
      return ref.id;
    }
    this.sourceBatchCount++;
    for (const s of this.sources) this.enqueue(s, ref);
    return ref.id;
  }

  /** The generator has no more batches. */
  endSource(): void {
    this.exhausted = true;
  }

  /** Whether the run is over: the source is exhausted and nothing is queued or open. */
  isDone(): boolean {
    return this.exhausted && this.calls.size === 0 && this.tasks.every((t) => t.queue.length === 0);
  }

  /**
   * Submits every call that can run now, in priority order: non-source tasks nearest the sinks
   * first, then sources. Returns how many were submitted and whether a source wants data.
   * @param allowSources false to hold sources back (e.g. while the consumer is behind).
   */
  schedule(backend: SchedulerBackend<D>, allowSources = true): ScheduleResult {
    let submitted = 0;
    // Made on the first refusal: the head schedules once per default-source batch, and most
    // of those passes refuse nothing.
    let refused: Set<TaskState<D>> | undefined;
    let blockedAhead = 0;
    // Phase A: one submission at a time, re-picking the best task after each, so that equal
    // ranks alternate by their submission counters.
    for (;;) {
      let best: TaskState<D> | undefined;
      for (const ts of this.nonSources) {
        if (refused?.has(ts) === true || !this.hasCall(ts)) continue;
        if (best === undefined || before(ts, best)) best = ts;
      }
      if (best === undefined) break;
      if (backend.fits(best.name, { rank: best.rank, blockedAhead, isSource: false, inputs: this.peekInputs(best) })) {
        this.submitNext(best, backend);
        submitted++;
      } else {
        (refused ??= new Set()).add(best);
        blockedAhead++;
      }
    }
    // Phase B: sources, the one with the most queued batches first, then the least submitted.
    let wantsSourceData = false;
    if (allowSources) {
      // One source (the usual pipeline) needs no ordering, nor a copy to sort.
      const order = this.sources.length === 1 ? this.sources : [...this.sources];
      const ctx = (ts: TaskState<D>): SubmitContext<D> => ({
        rank: ts.rank,
        blockedAhead,
        isSource: true,
        inputs: this.peekInputs(ts),
      });
      for (;;) {
        if (this.pendingCalls() >= this.maxPendingCalls) break;
        if (order.length > 1) order.sort((a, b) => b.queue.length - a.queue.length || a.counter - b.counter || a.index - b.index);
        let progressed = false;
        for (const src of order) {
          if (this.hasCall(src)) {
            if (!backend.fits(src.name, ctx(src))) continue;
            this.submitNext(src, backend);
            submitted++;
            progressed = true;
            break;
          }
          if (!this.exhausted && backend.fits(src.name, ctx(src))) {
            wantsSourceData = true;
            break;
          }
        }
        if (!progressed || wantsSourceData) break;
      }
    }
    return { submitted, wantsSourceData };
  }

  /**
   * Records a successful call. Returns the sink output when the call was a sink's and produced
   * rows. A completion for a call that is not running (a duplicate) is ignored.
   */
  complete(callId: string, output: { rows: number; data: D }): SinkOutput<D> | undefined {
    const rec = this.calls.get(callId);
    const ref: BatchRef<D> = { id: callId, rows: output.rows, data: output.data };
    if (rec === undefined || rec.state !== 'running') {
      // Exactly once: a second completion of the same call (e.g. a retried call whose first
      // attempt also finished) must not deliver or forward its rows again.
      this.onRelease?.(ref);
      return undefined;
    }
    const { ts, call } = rec;
    this.closeCall(rec);
    ts.stats.rowsOut += output.rows;
    if (output.rows === 0) {
      ts.stats.emptyOutputs++;
      this.onRelease?.(ref);
      return undefined;
    }
    if (ts.isSink) {
      this.outputs++;
      return { id: call.id, task: ts.name, ref };
    }
    for (const s of ts.successors) this.enqueue(s, ref);
    return undefined;
  }

  /**
   * Records a failed call. Returns 'retry' when the call will run again (then call `retry()`
   * when it may, e.g. after a backoff), or 'fatal' when the run must fail.
   */
  fail(callId: string, error: DplError): 'retry' | 'fatal' {
    const rec = this.calls.get(callId);
    if (rec === undefined || rec.state !== 'running') {
      throw new DplError(DplErrorCode.INTERNAL, `fail() for call ${callId}, which is not running`);
    }
    const { ts, call } = rec;
    ts.stats.running--;
    if (shouldRetry(error, call.attempt, ts.maxRetries)) {
      rec.call = { ...call, attempt: call.attempt + 1 };
      rec.state = 'waiting-retry';
      ts.stats.retries++;
      return 'retry';
    }
    rec.state = 'waiting-retry'; // parked; the run is over
    return 'fatal';
  }

  /**
   * Gives up on a call that `fail()` answered 'fatal' for, and goes on without it (the run
   * skips that batch): its inputs are released and nothing comes out of it.
   */
  skip(callId: string): void {
    const rec = this.calls.get(callId);
    if (rec === undefined || rec.state !== 'waiting-retry') {
      throw new DplError(DplErrorCode.INTERNAL, `skip() for call ${callId}, which has not failed`);
    }
    rec.ts.stats.running++; // closeCall() counts it out again
    rec.ts.stats.skipped++;
    this.closeCall(rec);
  }

  /**
   * Takes back a running call that did not fail by itself (its worker was lost, or an input it
   * was reading): it will run again as the same attempt, without using up a retry. Call
   * `retry()` when it may run.
   */
  interrupt(callId: string): void {
    const rec = this.calls.get(callId);
    if (rec === undefined || rec.state !== 'running') {
      throw new DplError(DplErrorCode.INTERNAL, `interrupt() for call ${callId}, which is not running`);
    }
    rec.ts.stats.running--;
    rec.state = 'waiting-retry';
  }

  /** Makes a call that `fail()` answered 'retry' for, or that was interrupted, eligible to run again. */
  retry(callId: string): void {
    const rec = this.calls.get(callId);
    if (rec === undefined || rec.state !== 'waiting-retry') {
      throw new DplError(DplErrorCode.INTERNAL, `retry() for call ${callId}, which is not waiting for a retry`);
    }
    rec.state = 'queued-retry';
    rec.ts.retryQueue.push(rec);
  }

  /**
   * Changes `maxPendingCalls` (a cluster grows and shrinks while a job runs).
   * @throws TypeError unless it is an integer >= 1.
   */
  setMaxPendingCalls(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new TypeError(`maxPendingCalls must be an integer >= 1, got ${n}`);
    this.maxPendingCalls = n;
  }

  /** The counters of this run so far. */
  stats(): SchedulerStats {
    const tasks: Record<string, TaskStats> = {};
    for (const ts of this.tasks) tasks[ts.name] = { ...ts.stats, queuedRows: ts.queuedRows };
    return {
      sourceBatches: this.sourceBatchCount,
      emptySourceBatches: this.emptySourceBatches,
      outputs: this.outputs,
      tasks,
    };
  }

  /**
   * Calls of `task` that could be submitted now, resources aside (retries, full batches, and a
   * last partial one once nothing more can reach it): what it waits on resources for.
   */
  waitingCalls(task: string): number {
    const ts = this.byName.get(task);
    if (ts === undefined) return 0;
    const full = ts.batchSize === undefined ? ts.queue.length : Math.floor(ts.queuedRows / ts.batchSize);
    const partial = ts.batchSize !== undefined && ts.queuedRows % ts.batchSize > 0 && this.drained(ts) ? 1 : 0;
    return ts.retryQueue.length + full + partial;
  }

  private enqueue(ts: TaskState<D>, ref: BatchRef<D>): void {
    ts.queue.push({ ref, offset: 0 });
    ts.queuedRows += ref.rows;
    this.hold(ref);
  }

  /** Whether `ts` has a call it could submit now (ignoring resources). */
  private hasCall(ts: TaskState<D>): boolean {
    if (ts.retryQueue.length > 0) return true;
    if (ts.queuedRows === 0) return false;
    if (ts.batchSize === undefined || ts.queuedRows >= ts.batchSize) return true;
    return this.drained(ts);
  }

  /** Nothing more can reach `ts`: the source is exhausted and no ancestor has queued or open work. */
  private drained(ts: TaskState<D>): boolean {
    if (!this.exhausted) return false;
    // A walk up the graph, not a list of ancestors per task: those lists hold n²/2 entries for
    // a chain of n tasks (10,000 tasks: gigabytes).
    const mark = ++this.walks;
    const todo = this.walk;
    todo.length = 0;
    todo.push(...ts.predecessors);
    while (todo.length > 0) {
      const a = todo.pop()!;
      if (a.visited === mark) continue;
      a.visited = mark;
      if (a.queue.length > 0 || a.open > 0) return false;
      for (const p of a.predecessors) if (p.visited !== mark) todo.push(p);
    }
    return true;
  }

  /** Calls running or queued for a retry, plus calls ready to run downstream. */
  private pendingCalls(): number {
    let n = this.calls.size;
    for (const ts of this.nonSources) {
      n += ts.batchSize === undefined ? ts.queue.length : Math.floor(ts.queuedRows / ts.batchSize);
    }
    return n;
  }

  private submitNext(ts: TaskState<D>, backend: SchedulerBackend<D>): void {
    let rec = ts.retryQueue.shift();
    if (rec === undefined) {
      const { inputs, emptied } = this.take(ts);
      const seq = ts.seq++;
      const call: TaskCall<D> = {
        id: `${ts.name}#${seq}`,
        task: ts.name,
        seq,
        inputs,
        rows: inputs.reduce((n, s) => n + s.rows, 0),
        attempt: 1,
        isSource: ts.isSource,
      };
      rec = { call, state: 'running', ts };
      this.calls.set(call.id, rec);
      ts.open++;
      // The call takes its holds before the emptied queue entries give theirs up, so a
      // batch is never released between leaving the queue and entering the call.
      for (const ref of distinctRefs(inputs)) this.hold(ref);
      for (const ref of emptied) this.release(ref);
    }
    rec.state = 'running';
    ts.counter++;
    ts.stats.calls++;
    ts.stats.running++;
    ts.stats.rowsIn += rec.call.rows;
    backend.submit(rec.call);
  }

  /** The batches the next call of `ts` would read, without taking them. */
  private peekInputs(ts: TaskState<D>): BatchRef<D>[] {
    const retry = ts.retryQueue.peek();
    if (retry !== undefined) return distinctRefs(retry.call.inputs);
    const out: BatchRef<D>[] = [];
    let want = ts.batchSize ?? 1;
    // By index, not for-of: the head asks this on every pass, and an iterator is an allocation.
    for (let i = 0; i < ts.queue.length; i++) {
      const entry = ts.queue.at(i)!;
      if (want <= 0) break;
      out.push(entry.ref);
      want -= entry.ref.rows - entry.offset;
    }
    return out;
  }

  /** Takes the input slices of the next call from the front of the queue. */
  private take(ts: TaskState<D>): { inputs: InputSlice<D>[]; emptied: BatchRef<D>[] } {
    const first = ts.queue.peek()!;
    let want =
      ts.batchSize === undefined ? first.ref.rows - first.offset : Math.min(ts.batchSize, ts.queuedRows);
    const inputs: InputSlice<D>[] = [];
    const emptied: BatchRef<D>[] = [];
    while (want > 0) {
      const entry = ts.queue.peek()!;
      const rows = Math.min(entry.ref.rows - entry.offset, want);
      inputs.push({ ref: entry.ref, offset: entry.offset, rows });
      entry.offset += rows;
      want -= rows;
      ts.queuedRows -= rows;
      if (entry.offset === entry.ref.rows) {
        ts.queue.shift();
        emptied.push(entry.ref);
      }
    }
    return { inputs, emptied };
  }

  private closeCall(rec: CallRecord<D>): void {
    this.calls.delete(rec.call.id);
    rec.ts.open--;
    rec.ts.stats.running--;
    for (const ref of distinctRefs(rec.call.inputs)) this.release(ref);
  }

  private hold(ref: BatchRef<D>): void {
    const h = this.holds.get(ref.id);
    if (h === undefined) this.holds.set(ref.id, { ref, count: 1 });
    else h.count++;
  }

  private release(ref: BatchRef<D>): void {
    const h = this.holds.get(ref.id);
    if (h === undefined) return;
    if (--h.count === 0) {
      this.holds.delete(ref.id);
      this.onRelease?.(h.ref);
    }
  }
}

/** Priority among non-source tasks: lower rank, then fewer submissions, then graph order. */
function before<D>(a: TaskState<D>, b: TaskState<D>): boolean {
  if (a.rank !== b.rank) return a.rank < b.rank;
  if (a.counter !== b.counter) return a.counter < b.counter;
  return a.index < b.index;
}

function distinctRefs<D>(inputs: readonly InputSlice<D>[]): BatchRef<D>[] {
  if (inputs.length === 1) return [inputs[0]!.ref];
  const seen = new Map<string, BatchRef<D>>();
  for (const s of inputs) seen.set(s.ref.id, s.ref);
  return [...seen.values()];
}
