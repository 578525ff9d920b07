/**
 * The head's job engine: the state of every running job (its streaming scheduler, lineage,
 * recomputes, infeasible waits, retries and skips, deliveries) and of the leases its calls hold
 * on workers, as one state machine. Events go in — a call done or failed, a worker joined or
 * lost, a generator's batch, the client blocked or ready, an output delivered or not, time
 * passed — and commands come out: assign this call to that worker, release that object, pull
 * the generator, deliver this output, tell the client, the job ended, wake me at T.
 *
 * It does no I/O and reads time only from its clock (Dask's `WorkerState.handle_stimulus` has
 * the same shape): the {@link Dispatcher} runs the commands over the worker links and the client
 * streams, and the tests drive it with events alone. Every event method returns the commands it
 * caused, in order.
 */
import {
  DplError,
  DplErrorCode,
  InfeasibleTaskError,
  StreamingScheduler,
  ensureError,
  failedCall,
  ipcStreamProblem,
  pendingCallsFor,
  retryDelayMs,
  DEFAULT_RETRY_BACKOFF_MS,
  type Logger,
  type PipelineGraph,
  type ResourceSet,
  type SchedulerStats,
  type SinkOutput,
  type TaskCall,
} from '@dpl/core';
import { errorFromProto, type AssignTask__Input, type JobFacts__Input, type JobSpec, type SourceBatch, type TaskDone, type TaskFailed, type TaskOutput } from '@dpl/wire';
import { place } from '../placement/placement';
import type { WorkerRegistry } from '../registry/worker-registry';
import type { CallOutcome } from '../metrics/metrics';
import { Lineage, type LineageNode } from './lineage';
import { defaultSourceIpc } from './source-ipc';

/** Where a batch of a job lives. */
export interface ObjectRef {
  /** '' for inline bytes. */
  objectId: string;
  ownerId: string;
  ownerAddress: string;
  inline: Uint8Array | undefined;
  bytes: number;
}

/** A task of a job as the head schedules it. */
export interface JobTask {
  name: string;
  request: ResourceSet;
  numGpus: number;
  kwargs: Uint8Array;
  /** The tasks fused into this one's calls, which run first (see fusion.ts). */
  fusedBefore?: { task: string; kwargs: Uint8Array }[];
}

export type JobState = 'running' | 'finished' | 'failed' | 'cancelled';

/** A sink output on its way to the client. */
export type Delivery = SinkOutput<ObjectRef>;

/** What the engine asks its shell to do. */
export type EngineCommand =
  /** Send a call to a worker (with the job's facts first, if the worker has not had them). */
  | { kind: 'assign'; workerId: string; jobId: string; call: AssignTask__Input; inlineBytes: number }
  /** The worker may drop an object. */
  | { kind: 'release'; workerId: string; objectId: string }
  /** Ask a worker for the next batch of the job's module generator. */
  | { kind: 'pullSource'; workerId: string; jobId: string; moduleHash: string; seq: number }
  /** Fetch an output's bytes (unless inline) and send them to the client; then `delivered()`. */
  | { kind: 'deliver'; jobId: string; output: Delivery; tries: number }
  /** Lines its tasks printed (`worker_id` says where): for its followers, and its client unless it declined them. */
  | { kind: 'output'; jobId: string; output: TaskOutput; toClient: boolean }
  /** Tell the client something it should know (a task waits for resources). */
  | { kind: 'notice'; jobId: string; message: string }
  /** A batch was given up on after its retries; the job goes on. */
  | { kind: 'skipped'; jobId: string; batchId: string; task: string; inputs: string[]; error: DplError }
  /** The job is over: tell its client (unless it left) and the workers. */
  | { kind: 'ended'; jobId: string; state: Exclude<JobState, 'running'>; error: DplError | undefined; summary: JobSummary }
  /** Run a scheduling pass soon (once per turn of the event loop, however many ask). */
  | { kind: 'schedule' }
  /** Call `tick()` at this time (the earliest timer the engine holds). */
  | { kind: 'wake'; atMs: number }
  /** Ask a worker to fetch these objects from a leaving worker and keep them (then `objectsKept()`). */
  | { kind: 'keepObjects'; workerId: string; fromAddress: string; objectIds: string[] }
  /** A leaving worker holds nothing anyone needs any more: it may go. */
  | { kind: 'leaveReady'; workerId: string; moved: number };

/** A job as the dashboard shows it. */
export interface JobSummary {
  id: string;
  state: JobState;
  startedAtMs: number;
  endedAtMs: number | undefined;
  outputs: number;
  rows: number;
  skipped: number;
  tasks: SchedulerStats['tasks'];
  error: { message: string; stack: string } | undefined;
  /** Submitted with --detach: runs without its client, its outputs written under outDir. */
  detached: boolean;
  outDir: string | undefined;
  /** What task code recorded: observe → last value, increment → total, param → last value. */
  observed: Record<string, number>;
  params: Record<string, string>;
  /** The last lines its tasks printed, `(task=t worker=w) line`, oldest first. */
  output: string[];
}

/** Lines of task output a job keeps for the dashboard… */
export const OUTPUT_LINES_KEPT = 100;
/** …each cut to this many characters. */
const OUTPUT_LINE_KEPT_CHARS = 500;

/** What the engine reports as it goes: metrics, never state. */
export interface EngineObserver {
  call(jobId: string, task: string, outcome: CallOutcome, rows?: number): void;
  observation(jobId: string, kind: 'observe' | 'increment' | 'param', name: string, value: number | string): void;
  /** How long one placement decision took. */
  placed(seconds: number): void;
  workerLost(): void;
}

export interface EngineOptions {
  registry: WorkerRegistry;
  /** Milliseconds since the epoch (tests pass a clock they move). */
  clock: () => number;
  log: Logger;
  observer?: EngineObserver;
  /** Delay before the first retry of a failed call (doubling). @default DEFAULT_RETRY_BACKOFF_MS */
  retryBackoffMs?: number;
}

/** One slot of a task's resources on a worker, held while calls of that task are queued or running on it (Ray's worker lease per scheduling class). */
interface Lease {
  readonly id: number;
  readonly job: EngineJob;
  readonly workerId: string;
  readonly request: ResourceSet;
  /** Its task's leases (this one among them). */
  readonly slots: TaskSlots;
  /** Calls assigned under it and not answered yet. */
  inFlight: number;
}

/** A task of a job as the engine places it: its open leases, and how long its calls run. */
interface TaskSlots {
  leases: Lease[];
  /** Mean run time of its calls in their executors (ms), once one has been answered. */
  runMs: number | undefined;
}

/** Calls of one task waiting for room. */
interface DemandEntry {
  request: ResourceSet;
  calls: number;
}

/** A worker leaving gracefully: its running calls end, then what only it holds moves elsewhere. */
interface Leaving {
  /** Whether the objects were sent for (after its last running call). */
  handingOff: boolean;
  /** Objects on their way to another worker: id → the batch and the worker keeping it. */
  pending: Map<string, { node: LineageNode; to: string }>;
  moved: number;
}

interface RunningCall {
  job: EngineJob;
  call: TaskCall<ObjectRef>;
  workerId: string;
  lease: Lease;
  /** The assignment's number: an answer must carry it. */
  assignment: number;
  /** Set for a call that recomputes a lost batch (not the scheduler's). */
  recompute: LineageNode | undefined;
}

/** A request refused in a scheduling pass; `firm` once it has waited RESERVE_AFTER_MS. */
interface Refusal {
  request: ResourceSet;
  firm: boolean;
}

interface Timer {
  atMs: number;
  run: () => void;
}

/** Queued work per lease the engine aims for, in milliseconds of the task's service time. */
const LEASE_QUEUE_MS = 4;
/** The most calls a lease holds (running and queued). */
const MAX_LEASE_DEPTH = 64;
/** A lease's depth before its task's service time is known: one running, one queued. */
const INITIAL_LEASE_DEPTH = 2;
const NO_SLOTS: ReadonlySet<TaskSlots> = new Set();
/**
 * A request refused for want of free resources (a 2-CPU call on a worker whose CPUs 1-CPU
 * leases hold) keeps the slots it would fit in from other calls, so that they drain for it. A
 * drain idles slots, so for this long after the refusal calls of short tasks (below) may still
 * take them: the refused task's calls gather meanwhile and then run together on one drain,
 * instead of one drain each. Its wait grows by at most this plus the short calls' queues
 * (LEASE_QUEUE_MS). On the README pipeline (`resid` at 2 CPUs on a 2-CPU machine, 20,000
 * batches) the drains went from ~460 to ~80; see docs/design/0001-call-path.md, round 13.
 */
export const RESERVE_AFTER_MS = 16;
/** A task whose calls run shorter than this (its moving mean, in ms) may use slots a refusal keeps until it is firm. */
const BACKFILL_CALL_MS = 1;
/** A call whose input keeps being lost this many times in a row fails the job. */
const MAX_INTERRUPTIONS = 10;
/**
 * Sink outputs up to this size come back inside TaskDone (no fetch round trip); larger ones stay
 * in the worker's store and the head fetches them over the data plane. At 1 MiB, rows.ts' ~1 MB
 * outputs rode the executor's socket, the worker's protobuf encoder and HTTP/2 to the head:
 * `dpl submit` took 2.09 s own against 1.37 with 64 KiB (medians of 5, same hour).
 */
const INLINE_SINK_OUTPUT_MAX_BYTES = 64 * 1024;
/** Outputs waiting for the client before sources pause. */
const MAX_UNDELIVERED = 8;
/**
 * Pulls of a module's generator under way at once, at most: its next batches are made while the
 * last ones travel (one at a time, 200 one-row batches took ~1.2 ms each through `dpl run`).
 */
const SOURCE_PULLS_AHEAD = 4;
/** Fetches of an output whose owner seems alive but does not answer, before the job fails. */
const DELIVERY_FETCH_TRIES = 20;
/** Distinct observation names a job keeps for its summary. */
const MAX_OBSERVED_NAMES = 200;
/** The longest name of an observation task code may record. */
const MAX_OBSERVATION_NAME_LENGTH = 200;
/** The longest text of a param; longer ones are cut. */
const MAX_PARAM_TEXT_LENGTH = 1_000;

/** The state of one job in the engine. Read it; only the engine changes it. */
export class EngineJob {
  readonly scheduler: StreamingScheduler<ObjectRef>;
  /** Which task made each needed batch from what, to recompute what a dead worker held. */
  readonly lineage: Lineage;
  /** Lost batches waiting to be recomputed (placed when their inputs are ready). */
  readonly recomputeQueue: LineageNode[] = [];
  state: JobState = 'running';
  error: { message: string; stack: string } | undefined;
  endedAtMs: number | undefined;
  outputs = 0;
  rows = 0;
  /** Batches skipped so far under max_errored_batches. */
  skipped = 0;
  /** Task → when it was first found infeasible. */
  readonly infeasibleSince = new Map<string, { sinceMs: number; shortfall: string }>();
  /** Since when each task has had a call refused for want of free resources (placing one of its calls clears it). */
  readonly refusedSince = new Map<string, number>();
  /** With a module generator: the worker running it, and its pulls not answered yet. */
  sourceWorkerId: string | undefined;
  sourcePulls = 0;
  sourceSeq = 0;
  /** The client's stream is full. */
  clientBlocked = false;
  /** Each task's slots (leases) while the job runs, for the engine. */
  readonly slots = new Map<string, TaskSlots>();
  /** Outputs handed to the shell and not delivered yet, by batch id. */
  readonly undelivered = new Map<string, Delivery>();
  /** Outputs whose bytes were lost before they reached the client: sent again once recomputed. */
  readonly awaitingRecompute = new Set<string>();
  /** Observations refused (non-finite, badly named, or past the names kept). */
  droppedObservations = 0;
  readonly observedValues = new Map<string, number>();
  readonly paramValues = new Map<string, string>();
  /** The last OUTPUT_LINES_KEPT lines its tasks printed (a ring: `outputAt` is the oldest). */
  private readonly recentOutput: string[] = [];
  private outputAt = 0;
  /** The default `{ run_id, id }` source, the same one the LocalExecutor uses, encoded. */
  private readonly source: (n: bigint) => Uint8Array;
  private sourceId = 0n;

  constructor(
    readonly id: string,
    readonly spec: JobSpec,
    readonly graph: PipelineGraph,
    readonly tasks: ReadonlyMap<string, JobTask>,
    readonly log: Logger,
    readonly startedAtMs: number,
    release: (ref: ObjectRef) => void,
    /** A fused task → the tasks it runs, in order. */
    readonly chains: ReadonlyMap<string, readonly string[]> = new Map(),
    taskNames?: readonly string[],
  ) {
    this.taskNames = taskNames ?? graph.tasks.map((t) => t.name);
    for (const chain of this.chains.values()) {
      chain.forEach((t, i) => {
        this.chainStats.set(t, { calls: 0, rowsOut: 0, empty: 0 });
        this.inChain.set(t, { chain, i });
      });
    }
    const maxBatches = Number(spec.max_batches);
    this.lineage = new Lineage(release);
    this.scheduler = new StreamingScheduler<ObjectRef>(graph, {
      maxBatches: maxBatches < 0 ? undefined : maxBatches,
      onRelease: (ref) => {
        // Untracked: an empty batch, or a duplicate output of a call.
        if (!this.lineage.unneeded(ref.id, ref.data) && ref.data.objectId !== '') release(ref.data);
      },
    });
    this.source = defaultSourceIpc(spec.run_id);
  }

  /** Whether sources may run: the client keeps up. */
  get allowSources(): boolean {
    return !this.clientBlocked && this.undelivered.size < MAX_UNDELIVERED;
  }

  /** The tasks as submitted (a fused chain's tasks each by name), in the graph's order. */
  readonly taskNames: readonly string[];
  /** What the tasks of fused chains did inside their calls (rows out, calls they ran in). */
  private readonly chainStats = new Map<string, { calls: number; rowsOut: number; empty: number }>();
  /** A fused task's chain and its place in it. */
  private readonly inChain = new Map<string, { chain: readonly string[]; i: number }>();

  /** Records what each task of a fused call did: `rows[i]` came out of the chain's task i. */
  chainRan(task: string, rows: readonly number[]): void {
    const chain = this.chains.get(task);
    if (chain === undefined) return;
    rows.forEach((n, i) => {
      const s = this.chainStats.get(chain[i]!);
      if (s === undefined) return;
      s.calls++;
      s.rowsOut += n;
      if (n === 0) s.empty++;
    });
  }

  /**
   * Each submitted task's figures. A fused chain is one task to the scheduler; its tasks are
   * shown one by one: the first has the chain's queue, calls and retries, each the rows it made.
   */
  stats(): SchedulerStats {
    const stats = this.scheduler.stats();
    if (this.chains.size === 0) return stats;
    const tasks: SchedulerStats['tasks'] = {};
    for (const name of this.taskNames) {
      const at = this.inChain.get(name);
      if (at === undefined) {
        tasks[name] = stats.tasks[name]!;
        continue;
      }
      const stage = stats.tasks[at.chain.at(-1)!]!;
      const mine = this.chainStats.get(name)!;
      const first = at.i === 0;
      const last = at.i === at.chain.length - 1;
      tasks[name] = {
        ...stage,
        queuedRows: first ? stage.queuedRows : 0,
        calls: first ? stage.calls : mine.calls,
        rowsIn: first ? stage.rowsIn : this.chainStats.get(at.chain[at.i - 1]!)!.rowsOut,
        rowsOut: last ? stage.rowsOut : mine.rowsOut,
        retries: first ? stage.retries : 0,
        skipped: first ? stage.skipped : 0,
        emptyOutputs: mine.empty,
      };
    }
    return { ...stats, tasks };
  }

  /** What the dashboard shows of the job. */
  summary(): JobSummary {
    return {
      id: this.id,
      state: this.state,
      startedAtMs: this.startedAtMs,
      endedAtMs: this.endedAtMs,
      outputs: this.outputs,
      rows: this.rows,
      skipped: this.skipped,
      tasks: this.stats().tasks,
      error: this.error,
      detached: this.spec.detached,
      outDir: this.spec.out_dir === '' ? undefined : this.spec.out_dir,
      observed: Object.fromEntries(this.observedValues),
      params: Object.fromEntries(this.paramValues),
      output: [...this.recentOutput.slice(this.outputAt), ...this.recentOutput.slice(0, this.outputAt)],
    };
  }

  /** Keeps the last lines a call printed for the dashboard. */
  keepOutput(workerId: string, o: TaskOutput): void {
    for (const text of taggedOutputLines(workerId, o, OUTPUT_LINES_KEPT)) {
      if (this.recentOutput.length < OUTPUT_LINES_KEPT) this.recentOutput.push(text);
      else {
        this.recentOutput[this.outputAt] = text;
        this.outputAt = (this.outputAt + 1) % OUTPUT_LINES_KEPT;
      }
    }
  }

  /** Feeds the next batch of the default source, `{ run_id, id }`, inline. */
  addDefaultSourceBatch(): void {
    const ipc = this.source(this.sourceId++);
    this.addSourceBatch({ objectId: '', ownerId: '', ownerAddress: '', inline: ipc, bytes: ipc.byteLength }, 1, false);
  }

  /** Feeds a source batch to the scheduler and records it in the lineage. */
  addSourceBatch(ref: ObjectRef, rows: number, generated: boolean): void {
    const id = this.scheduler.addSourceBatch(ref, rows);
    if (rows > 0) this.lineage.addSource(id, ref, rows, generated);
  }

  /**
   * A value task code recorded during one of this job's calls; false when it is not kept: a
   * number that is not finite (or would make its total so), or a new name past
   * {@link MAX_OBSERVED_NAMES}.
   */
  recordObservation(kind: 'observe' | 'increment' | 'param', name: string, value: number | string): boolean {
    const map: Map<string, unknown> = kind === 'param' ? this.paramValues : this.observedValues;
    if (!map.has(name) && map.size >= MAX_OBSERVED_NAMES) return false;
    if (kind === 'param') {
      this.paramValues.set(name, String(value));
      return true;
    }
    const v = kind === 'increment' ? (this.observedValues.get(name) ?? 0) + Number(value) : Number(value);
    if (!Number.isFinite(Number(value)) || !Number.isFinite(v)) return false;
    this.observedValues.set(name, v);
    return true;
  }
}

/** A job as submitted, for {@link JobEngine.addJob}. */
export interface NewJob {
  id: string;
  spec: JobSpec;
  /** The graph of calls (fused chains as one task each). */
  graph: PipelineGraph;
  tasks: ReadonlyMap<string, JobTask>;
  /** A fused task → the tasks it runs, in order; none when nothing was fused. */
  chains?: ReadonlyMap<string, readonly string[]>;
  /** The job's tasks as submitted, in the order their stats are shown. @default the graph's */
  taskNames?: readonly string[];
  log: Logger;
}

const NO_OBSERVER: EngineObserver = { call: () => undefined, observation: () => undefined, placed: () => undefined, workerLost: () => undefined };
const EMPTY = new Uint8Array(0);

export class JobEngine {
  private readonly registry: WorkerRegistry;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly observer: EngineObserver;
  private readonly retryBackoffMs: number;
  /** Running jobs, in the order they take turns. */
  private readonly jobs: EngineJob[] = [];
  private readonly byId = new Map<string, EngineJob>();
  /** Calls on workers now, by assignment number (unique on this head; a call has one at a time). */
  private readonly running = new Map<number, RunningCall>();
  /** Per job, the calls that waited for resources in its last pass. */
  private readonly demandOf = new Map<string, DemandEntry[]>();
  /** Workers that asked to leave, with the objects being moved off them (object id → batch). */
  private readonly leaving = new Map<string, Leaving>();
  /**
   * Per job, the tasks' slots that hold leases now: a pass looks at these, not at every task
   * of the job (a 10,000-task chain made each pass, so each call, cost 10,000 lookups).
   */
  private readonly leased = new Map<string, Set<TaskSlots>>();
  /** Times each call was taken back because an input or its worker was lost. */
  private readonly interruptions = new Map<string, number>();
  /** Pending timers, earliest first. */
  private readonly timers: Timer[] = [];
  private leaseCounter = 0;
  private assignments = 0;
  /** Rotates where placement's least-loaded sample starts. */
  private placeTurn = 0;
  private turn = 0;
  private passWanted = false;
  private out: EngineCommand[] = [];

  constructor(options: EngineOptions) {
    this.registry = options.registry;
    this.clock = options.clock;
    this.log = options.log;
    this.observer = options.observer ?? NO_OBSERVER;
    this.retryBackoffMs = options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  }

  /** The running jobs. */
  get jobList(): readonly EngineJob[] {
    return this.jobs;
  }

  job(id: string): EngineJob | undefined {
    return this.byId.get(id);
  }

  /**
   * Lines a call of a running job printed on a worker: kept for the dashboard, and sent to the
   * client unless it asked not to have them.
   */
  taskOutput(workerId: string, o: TaskOutput): EngineCommand[] {
    const job = this.byId.get(o.job_id);
    if (job === undefined) return [];
    job.keepOutput(workerId, o);
    return [{ kind: 'output', jobId: job.id, output: { ...o, worker_id: workerId }, toClient: !job.spec.no_task_output }];
  }

  /** Calls assigned and not answered (for tests and the dashboard). */
  get runningCalls(): number {
    return this.running.size;
  }

  // ---- events ----

  /** A job was submitted. */
  addJob(j: NewJob): EngineCommand[] {
    const job = new EngineJob(j.id, j.spec, j.graph, j.tasks, j.log, this.clock(), (ref) => this.release(ref), j.chains, j.taskNames);
    this.jobs.push(job);
    this.byId.set(job.id, job);
    this.wantPass();
    return this.take();
  }

  /** A worker registered, or changed its resources or drain state: placement may go on. */
  workerChanged(): EngineCommand[] {
    this.wantPass();
    return this.take();
  }

  /** One scheduling pass over every job, starting with a different job each time (fair turns). */
  pass(): EngineCommand[] {
    this.passWanted = false;
    const now = this.clock();
    const jobs = [...this.jobs];
    const n = jobs.length;
    for (let k = 0; k < n; k++) {
      const job = jobs[(this.turn + k) % n]!;
      if (job.state !== 'running') continue;
      try {
        this.scheduleJob(job, now);
      } catch (e) {
        // A fault in one job's bookkeeping fails that job, never the head and its other jobs.
        const err = ensureError(e);
        this.log.error({ jobId: job.id, err }, 'job failed inside the head');
        this.endJob(job, 'failed', new DplError(DplErrorCode.INTERNAL, `the head failed while scheduling job ${job.id}: ${err.message}; this is a dpl bug, please report it`, { cause: err }));
      }
    }
    this.turn = n === 0 ? 0 : (this.turn + 1) % n;
    return this.take();
  }

  /** Time passed: runs the timers that are due. */
  tick(): EngineCommand[] {
    const now = this.clock();
    let due = 0;
    while (due < this.timers.length && this.timers[due]!.atMs <= now) due++;
    for (const t of this.timers.splice(0, due)) t.run();
    // Always said again: the shell keeps one wake-up armed, and this one replaces it.
    if (this.timers.length > 0) this.out.push({ kind: 'wake', atMs: this.timers[0]!.atMs });
    return this.take();
  }

  /** When the engine next wants `tick()`, if it holds a timer. */
  get nextWakeMs(): number | undefined {
    return this.timers[0]?.atMs;
  }

  /** A worker finished a call. */
  callDone(workerId: string, msg: TaskDone): EngineCommand[] {
    this.completeCall(workerId, msg);
    this.maybeHandOff(workerId);
    return this.take();
  }

  private completeCall(workerId: string, msg: TaskDone): void {
    const r = this.takeCall(msg.job_id, msg.call_id, workerId, msg.assignment);
    if (r !== undefined) {
      this.observed(r.job, msg.observations);
      ranFor(r.lease.slots, Number(msg.run_us) / 1000);
    }
    const inline = msg.output_id === '';
    if (r === undefined || r.job.state !== 'running') {
      // A stale or cancelled call: its output is not needed.
      if (!inline) this.out.push({ kind: 'release', workerId, objectId: msg.output_id });
      return;
    }
    const { job, call } = r;
    // Checked where it arrives: bad bytes would otherwise fail inside arrow in the client, or
    // in the next task, which did nothing wrong.
    const bad = inline && (msg.inline_ipc.byteLength > 0 || Number(msg.rows) > 0) ? ipcStreamProblem(msg.inline_ipc) : undefined;
    if (bad !== undefined) {
      job.log.warn({ workerId, task: call.task, batchId: call.id, problem: bad }, 'a worker answered with bytes that are not Arrow IPC');
      this.failCall(r, new DplError(DplErrorCode.TASK_FAILED, `worker ${workerId} answered call ${call.id} of task ${JSON.stringify(call.task)} with an output that is not an Arrow IPC stream (${bad}); that worker's executor, or the link to it, is broken`));
      this.wantPass();
      return;
    }
    if (this.interruptions.size > 0) this.interruptions.delete(key(job.id, call.id));
    const worker = this.registry.get(workerId);
    const ref: ObjectRef = inline
      ? { objectId: '', ownerId: '', ownerAddress: '', inline: msg.inline_ipc, bytes: Number(msg.bytes) }
      : { objectId: msg.output_id, ownerId: workerId, ownerAddress: worker?.address ?? '', inline: undefined, bytes: Number(msg.bytes) };
    if (r.recompute !== undefined) {
      job.lineage.recomputed(r.recompute, ref);
      this.observer.call(job.id, call.task, 'recomputed');
      // A sink output lost before the client had it goes out again.
      if (job.awaitingRecompute.delete(r.recompute.id)) {
        const d = job.undelivered.get(r.recompute.id);
        if (d !== undefined) this.out.push({ kind: 'deliver', jobId: job.id, output: d, tries: 1 });
      }
      this.wantPass();
      return;
    }
    this.observer.call(job.id, call.task, 'done', call.rows);
    if (msg.stage_rows.length > 0) job.chainRan(call.task, msg.stage_rows.map(Number));
    const rows = Number(msg.rows);
    // Recorded before the scheduler frees the call's inputs, so they stay in the lineage.
    if (rows > 0) {
      const inputs = call.inputs.map((s) => ({ id: s.ref.id, offset: s.offset, rows: s.rows }));
      job.lineage.addOutput(call.id, ref, rows, call.task, inputs);
    }
    const output = job.scheduler.complete(call.id, { rows, data: ref });
    if (output !== undefined) {
      job.undelivered.set(output.id, output);
      this.out.push({ kind: 'deliver', jobId: job.id, output, tries: 1 });
    }
    this.wantPass();
  }

  /** A worker reports a failed call. */
  callFailed(workerId: string, msg: TaskFailed): EngineCommand[] {
    const r = this.takeCall(msg.job_id, msg.call_id, workerId, msg.assignment);
    if (r !== undefined) this.observed(r.job, msg.observations);
    if (r !== undefined && r.job.state === 'running') {
      if (msg.handed_back) this.handBack(r);
      else this.failCall(r, errorFromProto(msg.error!));
      this.wantPass();
    }
    this.maybeHandOff(workerId);
    return this.take();
  }

  /**
   * A worker asked to leave (it is draining in the registry already): once its running calls
   * are answered, the objects only it holds that something still needs are fetched by other
   * workers, and then it is told it may go. Nothing is recomputed when that finishes in time.
   */
  workerLeaving(workerId: string): EngineCommand[] {
    if (!this.leaving.has(workerId)) this.leaving.set(workerId, { handingOff: false, pending: new Map(), moved: 0 });
    this.maybeHandOff(workerId);
    return this.take();
  }

  /** A worker fetched objects of a leaving one (a KeepObjects) and keeps them now. */
  objectsKept(workerId: string, kept: readonly string[], failed: readonly string[], error: string): EngineCommand[] {
    const keeper = this.registry.get(workerId);
    for (const [leaverId, l] of this.leaving) {
      for (const id of kept) {
        const p = l.pending.get(id);
        if (p === undefined || p.to !== workerId) continue;
        l.pending.delete(id);
        if (keeper === undefined) continue;
        // The scheduler, the delivery queue and the lineage hold this same ref: all now read from the keeper.
        p.node.ref.ownerId = workerId;
        p.node.ref.ownerAddress = keeper.address;
        l.moved++;
      }
      for (const id of failed) {
        if (l.pending.get(id)?.to !== workerId) continue;
        l.pending.delete(id);
        this.log.warn({ workerId: leaverId, keeper: workerId, objectId: id, err: error }, 'an object of a leaving worker could not be moved; it is recomputed if needed');
      }
      this.maybeReady(leaverId, l);
    }
    return this.take();
  }

  /** A worker answered a pull of a job's generator. */
  sourceBatch(workerId: string, msg: SourceBatch): EngineCommand[] {
    const job = this.byId.get(msg.job_id);
    if (job === undefined || job.state !== 'running' || job.sourceWorkerId !== workerId) {
      if (msg.object_id !== '') this.out.push({ kind: 'release', workerId, objectId: msg.object_id });
      return this.take();
    }
    job.sourcePulls--;
    if (job.scheduler.sourceExhausted) {
      // A pull sent ahead, answered after the generator ended on an earlier one.
      if (msg.object_id !== '') this.out.push({ kind: 'release', workerId, objectId: msg.object_id });
      return this.take();
    }
    if (msg.error) {
      const err = errorFromProto(msg.error);
      this.endJob(job, 'failed', new DplError(DplErrorCode.TASK_FAILED, `the module's generator failed: ${err.message}`, { cause: err }));
      return this.take();
    }
    if (msg.done) job.scheduler.endSource();
    else {
      const worker = this.registry.get(workerId);
      const ref: ObjectRef = { objectId: msg.object_id, ownerId: workerId, ownerAddress: worker?.address ?? '', inline: undefined, bytes: Number(msg.bytes) };
      job.addSourceBatch(ref, Number(msg.rows), true);
    }
    this.wantPass();
    return this.take();
  }

  /**
   * A worker is gone (already marked dead in the registry): the batches only it held are
   * recomputed where something still needs them, and its running calls, and calls elsewhere
   * reading from it, run again.
   */
  workerLost(workerId: string): EngineCommand[] {
    this.leaving.delete(workerId);
    for (const [leaverId, l] of this.leaving) {
      // A keeper that went: what it was to keep stays with the leaving worker (recomputed once that goes).
      for (const [id, p] of l.pending) if (p.to === workerId) l.pending.delete(id);
      this.maybeReady(leaverId, l);
    }
    this.observer.workerLost();
    for (const job of [...this.jobs]) {
      if (job.sourceWorkerId === workerId && job.state === 'running' && !job.scheduler.sourceExhausted) {
        this.endJob(
          job,
          'failed',
          new DplError(
            DplErrorCode.WORKER_LOST,
            `worker ${workerId}, which ran the module's generator, was lost; a generator cannot be resumed elsewhere; submit the job again`,
          ),
        );
      }
    }
    for (const [k, r] of [...this.running]) {
      const readsFromIt = r.call.inputs.some((s) => s.ref.data.ownerId === workerId);
      if (r.workerId !== workerId && !readsFromIt) continue;
      this.running.delete(k);
      this.giveBack(r);
      this.interrupt(r, `worker ${workerId} was lost while ${r.workerId === workerId ? 'running' : 'serving an input of'} ${r.call.id}`);
    }
    for (const job of this.jobs) {
      if (job.state !== 'running') continue;
      const lost = job.lineage.lostWorker(workerId);
      if (lost.length > 0) job.log.warn({ workerId, batches: lost.length }, 'batches lost with their worker; recomputing them');
      for (const node of lost) this.requestRecompute(job, node);
    }
    this.wantPass();
    return this.take();
  }

  /** The client's stream filled up, or drained. */
  clientBlocked(jobId: string, blocked: boolean): EngineCommand[] {
    const job = this.byId.get(jobId);
    if (job !== undefined && job.clientBlocked !== blocked) {
      job.clientBlocked = blocked;
      if (!blocked) this.wantPass();
    }
    return this.take();
  }

  /** An output reached the client. */
  delivered(jobId: string, batchId: string): EngineCommand[] {
    const job = this.byId.get(jobId);
    const d = job?.undelivered.get(batchId);
    if (job === undefined || d === undefined || job.state !== 'running') return this.take();
    job.undelivered.delete(batchId);
    job.outputs++;
    job.rows += d.ref.rows;
    if (!job.lineage.unneeded(d.id, d.ref.data) && d.ref.data.objectId !== '') this.release(d.ref.data);
    this.checkDone(job);
    this.wantPass();
    return this.take();
  }

  /**
   * An output's bytes could not be fetched (`tries` so far). When they were lost with their
   * worker it goes out again once recomputed; when the owner seems alive, after a pause; after
   * {@link DELIVERY_FETCH_TRIES} the job fails.
   */
  deliveryFailed(jobId: string, batchId: string, tries: number, why: string): EngineCommand[] {
    const job = this.byId.get(jobId);
    const d = job?.undelivered.get(batchId);
    if (job === undefined || d === undefined || job.state !== 'running') return this.take();
    const node = job.lineage.get(batchId);
    if (node !== undefined && node.state !== 'ready') {
      job.awaitingRecompute.add(batchId);
      return this.take();
    }
    if (tries >= DELIVERY_FETCH_TRIES) {
      this.endJob(job, 'failed', new DplError(DplErrorCode.OBJECT_LOST, `cannot deliver an output of the job: ${why}`));
      return this.take();
    }
    this.after(100 * Math.min(tries, 10), () => {
      if (job.state !== 'running' || job.undelivered.get(batchId) !== d) return;
      if (job.awaitingRecompute.has(batchId)) return;
      this.out.push({ kind: 'deliver', jobId, output: d, tries: tries + 1 });
    });
    return this.take();
  }

  /** The client went away. */
  cancel(jobId: string): EngineCommand[] {
    const job = this.byId.get(jobId);
    if (job !== undefined && job.state === 'running') {
      job.log.info('job cancelled by its client');
      this.endJob(job, 'cancelled', undefined);
    }
    return this.take();
  }

  /** Fails a job from outside (the head is stopping). */
  fail(jobId: string, err: DplError): EngineCommand[] {
    const job = this.byId.get(jobId);
    if (job !== undefined) this.endJob(job, 'failed', err);
    return this.take();
  }

  /** What every call of a job shares, for a worker that has not seen the job yet. */
  jobFacts(jobId: string): JobFacts__Input {
    const job = this.byId.get(jobId)!;
    return {
      job_id: job.id,
      module_hash: job.spec.module_hash,
      tasks: [...job.tasks.values()].map((t) => {
        const task = job.graph.taskMap.get(t.name)!;
        return {
          task: t.name,
          kwargs: t.kwargs,
          num_gpus: t.numGpus,
          inline_output_max_bytes: job.graph.successors(t.name).length === 0 ? INLINE_SINK_OUTPUT_MAX_BYTES : 0,
          max_attempts: task.maxRetries + 1,
          timeout_ms: task.timeoutMs ?? 0,
          fused_before: t.fusedBefore ?? [],
        };
      }),
    };
  }

  // ---- the state machine ----

  private take(): EngineCommand[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  private wantPass(): void {
    if (this.passWanted) return;
    this.passWanted = true;
    this.out.push({ kind: 'schedule' });
  }

  /** Runs `run` once `ms` have passed (at the first tick after). */
  private after(ms: number, run: () => void): void {
    const timer: Timer = { atMs: this.clock() + ms, run };
    let i = this.timers.length;
    while (i > 0 && this.timers[i - 1]!.atMs > timer.atMs) i--;
    this.timers.splice(i, 0, timer);
    if (i === 0) this.out.push({ kind: 'wake', atMs: timer.atMs });
  }

  private release(ref: ObjectRef): void {
    if (ref.ownerId !== '') this.out.push({ kind: 'release', workerId: ref.ownerId, objectId: ref.objectId });
  }

  private scheduleJob(job: EngineJob, now: number): void {
    /** Requests refused in this pass for want of free resources: they go first where they fit. */
    const refused: Refusal[] = [];
    /** Tasks that had a call ready and no room for it in this pass: the job's demand. */
    const wanting = new Set<string>();
    /** Requests that found no free worker in this pass (resources only shrink within a pass). */
    const noRoom = new Set<ResourceSet>();
    const backend = {
      placed: undefined as { workerId: string } | { lease: Lease } | undefined,
      fits: (task: string, ctx: { inputs: readonly { id: string; data: ObjectRef; rows: number }[] }): boolean => {
        // An input lost with its worker waits for its recompute.
        if (!ctx.inputs.every((i) => job.lineage.isReady(i.id))) return false;
        const t = job.tasks.get(task)!;
        const local = localBytes(ctx.inputs, (i) => i.data);
        const slots = this.slotsOf(job, task);
        const short = slots.runMs !== undefined && slots.runMs < BACKFILL_CALL_MS;
        if (!noRoom.has(t.request)) {
          const p = this.place(t.request, local);
          // A slot that a refused request of higher priority could use once its worker drains
          // is kept for it (else a 1-CPU task would take every CPU a 2-CPU task waits for);
          // from a short task's calls once that refusal is firm (RESERVE_AFTER_MS).
          if (p.kind === 'placed' && !this.reservedFor(refused, p.workerId, short)) {
            backend.placed = { workerId: p.workerId };
            job.infeasibleSince.delete(task);
            return true;
          }
          noRoom.add(t.request);
          if (p.kind === 'infeasible') {
            wanting.add(task);
            if (!job.infeasibleSince.has(task)) {
              job.infeasibleSince.set(task, { sinceMs: now, shortfall: p.shortfall });
              // A pass when the wait runs out: it fails the job then, if no worker came.
              this.after(job.spec.infeasible_timeout_ms, () => this.wantPass());
              job.log.warn({ task, request: t.request.toJSON(), shortfall: p.shortfall }, 'task waits: no live worker can fit it');
              this.out.push({
                kind: 'notice',
                jobId: job.id,
                message:
                  `task ${JSON.stringify(task)} needs ${t.request.toString()}; no live worker can fit it: ${p.shortfall}; ` +
                  `waiting for one to join (fails after ${job.spec.infeasible_timeout_ms / 1000} s)`,
              });
            }
            return false;
          }
          job.infeasibleSince.delete(task);
        }
        // No free slot: queue behind a lease this task holds, unless that would keep a slot
        // from a task of higher priority refused in this pass.
        const lease = this.leaseWithRoom(slots, local, refused, short);
        if (lease !== undefined) {
          backend.placed = { lease };
          return true;
        }
        let since = job.refusedSince.get(task);
        if (since === undefined) {
          job.refusedSince.set(task, (since = now));
          // A pass when the refusal turns firm, should nothing else bring one.
          this.after(RESERVE_AFTER_MS, () => this.wantPass());
        }
        refused.push({ request: t.request, firm: now - since >= RESERVE_AFTER_MS });
        wanting.add(task);
        return false;
      },
      submit: (call: TaskCall<ObjectRef>): void => {
        const placed = backend.placed!;
        const lease = 'lease' in placed ? placed.lease : this.openLease(job, call.task, placed.workerId);
        job.refusedSince.delete(call.task);
        this.assign(job, call, lease, undefined);
      },
    };
    this.placeRecomputes(job);
    if (job.state !== 'running') return;
    // Work waiting in the job stays bounded, in proportion to what the cluster can run at once,
    // plus what its leases may queue (a few milliseconds of work each).
    job.scheduler.setMaxPendingCalls(pendingCallsFor(this.registry.liveCpus) + this.queueRoom(job));
    for (;;) {
      const r = job.scheduler.schedule(backend, job.allowSources);
      if (!r.wantsSourceData) break;
      if (job.spec.module_generator) {
        // The module's generator runs on a worker: a few pulls ahead, so that it makes the next
        // batches while the last ones travel (a pull is a round trip through the worker and
        // its generator's process), never past maxBatches. The worker answers them in order.
        const room = Math.min(SOURCE_PULLS_AHEAD, job.scheduler.sourceRoom);
        while (job.sourcePulls < room) if (!this.pullSource(job)) break;
        break;
      }
      job.addDefaultSourceBatch();
    }
    // Slots with nothing queued go back: the next pass gives them to what waited for room.
    if (this.closeIdleLeases(job) && (refused.length > 0 || job.recomputeQueue.length > 0)) this.wantPass();
    // A task with no call left waiting (placed, cancelled, or its input lost) starts its next wait afresh.
    if (job.refusedSince.size > 0) for (const task of job.refusedSince.keys()) if (job.scheduler.waitingCalls(task) === 0) job.refusedSince.delete(task);
    this.noteDemand(job, wanting);
    this.checkInfeasible(job, now);
    this.checkDone(job);
  }

  /**
   * Records what the job waits on resources for, after its pass: per task, the calls it could
   * run now and found no room for (a source task that wants data counts one, so that a cluster
   * with no worker at all shows demand).
   */
  private noteDemand(job: EngineJob, wanting: ReadonlySet<string>): void {
    if (wanting.size === 0) {
      this.demandOf.delete(job.id);
      return;
    }
    const entries: DemandEntry[] = [];
    for (const task of wanting) {
      let calls = job.scheduler.waitingCalls(task);
      if (calls === 0 && job.graph.predecessors(task).length === 0 && !job.scheduler.sourceExhausted) calls = 1;
      if (calls > 0) entries.push({ request: job.tasks.get(task)!.request, calls });
    }
    this.demandOf.set(job.id, entries);
  }

  /**
   * The calls waiting for resources now, per request shape over all jobs (what an autoscaler
   * should add workers for), as of the last pass.
   */
  demand(): { resources: Record<string, number>; calls: number }[] {
    const byShape = new Map<string, { resources: Record<string, number>; calls: number }>();
    for (const [jobId, entries] of this.demandOf) {
      if (!this.byId.has(jobId)) continue;
      for (const e of entries) {
        const k = e.request.toString();
        const d = byShape.get(k);
        if (d === undefined) byShape.set(k, { resources: e.request.toJSON(), calls: e.calls });
        else d.calls += e.calls;
      }
    }
    return [...byShape.values()];
  }

  /**
   * Whether a worker's slots are kept for a request refused earlier in this pass (it would fit
   * there): from a call of a short task (`short`) only once that refusal is firm.
   */
  private reservedFor(refused: readonly Refusal[], workerId: string, short: boolean): boolean {
    if (refused.length === 0) return false;
    const worker = this.registry.get(workerId);
    return worker !== undefined && refused.some((r) => (r.firm || !short) && worker.total.fits(r.request));
  }

  private place(request: ResourceSet, local: ReadonlyMap<string, number>): ReturnType<typeof place> {
    const t0 = performance.now();
    const p = place(request, this.registry.workers(), local, { byId: (id) => this.registry.get(id), start: this.placeTurn++ });
    this.observer.placed((performance.now() - t0) / 1000);
    return p;
  }

  /** Ends the job when nothing is left to run or deliver. */
  private checkDone(job: EngineJob): void {
    if (job.state === 'running' && job.scheduler.isDone() && job.undelivered.size === 0) {
      job.log.info({ outputs: job.outputs, rows: job.rows }, 'job finished');
      this.endJob(job, 'finished', undefined);
    }
  }

  /** Fails the job when a task has been infeasible for longer than the spec allows. */
  private checkInfeasible(job: EngineJob, now: number): void {
    for (const [task, { sinceMs, shortfall }] of job.infeasibleSince) {
      if (now - sinceMs < job.spec.infeasible_timeout_ms) continue;
      const t = job.tasks.get(task)!;
      this.endJob(
        job,
        'failed',
        new InfeasibleTaskError(
          task,
          t.request.toJSON(),
          `task ${JSON.stringify(task)} needs ${t.request.toString()} but no live worker can ever fit it: ${shortfall}; ` +
            `waited ${((now - sinceMs) / 1000).toFixed(1)} s; start a worker with those resources ` +
            '(e.g. dpl worker start --num-gpus N / --resources \'{"name":N}\') or lower the request',
        ),
      );
      return;
    }
  }

  /** The job is over: every worker hears of it; its idle leases go back, the others with their last call. */
  private endJob(job: EngineJob, state: Exclude<JobState, 'running'>, error: DplError | undefined): void {
    if (job.state !== 'running') return;
    job.state = state;
    job.endedAtMs = this.clock();
    if (error !== undefined) {
      job.error = { message: error.message, stack: (error as { remoteStack?: string }).remoteStack ?? '' };
      job.log.warn({ err: error.message }, 'job failed');
    }
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
    this.byId.delete(job.id);
    for (const k of this.interruptions.keys()) if (k.startsWith(`${job.id}/`)) this.interruptions.delete(k);
    // Idle leases go back now; the others when their last call is answered (the worker answers
    // the calls it drops for the job's end, so none is left holding resources).
    this.closeIdleLeases(job);
    job.slots.clear();
    this.leased.delete(job.id);
    this.demandOf.delete(job.id);
    this.out.push({ kind: 'ended', jobId: job.id, state, error, summary: job.summary() });
    // Resources it gave back may go to another job.
    this.wantPass();
  }

  /** A task's leases and run time (made on first use; dropped when its job ends). */
  private slotsOf(job: EngineJob, task: string): TaskSlots {
    let slots = job.slots.get(task);
    if (slots === undefined) {
      slots = { leases: [], runMs: undefined };
      job.slots.set(task, slots);
    }
    return slots;
  }

  /** Takes a slot of a task's resources on a worker. */
  private openLease(job: EngineJob, task: string, workerId: string): Lease {
    const request = job.tasks.get(task)!.request;
    this.registry.take(this.registry.get(workerId)!, request);
    const slots = this.slotsOf(job, task);
    const lease: Lease = { id: ++this.leaseCounter, job, workerId, request, slots, inFlight: 0 };
    slots.leases.push(lease);
    let held = this.leased.get(job.id);
    if (held === undefined) this.leased.set(job.id, (held = new Set()));
    held.add(slots);
    return lease;
  }

  /**
   * A lease of the task that may queue one more call: on a live worker, below the task's depth,
   * on the worker holding most of the call's input bytes (then the least queued), and not on a
   * worker where a refused request of higher priority would fit once the slot is free.
   */
  private leaseWithRoom(slots: TaskSlots, local: ReadonlyMap<string, number>, refused: readonly Refusal[], short: boolean): Lease | undefined {
    const depth = leaseDepth(slots);
    let best: Lease | undefined;
    for (const lease of slots.leases) {
      if (lease.inFlight >= depth) continue;
      const worker = this.registry.get(lease.workerId);
      if (worker === undefined || worker.state !== 'alive') continue;
      if (this.reservedFor(refused, lease.workerId, short)) continue;
      if (best === undefined) {
        best = lease;
        continue;
      }
      const a = local.get(lease.workerId) ?? 0;
      const b = local.get(best.workerId) ?? 0;
      if (a > b || (a === b && lease.inFlight < best.inFlight)) best = lease;
    }
    return best;
  }

  /** Calls the job's open leases may queue beyond one each. */
  private queueRoom(job: EngineJob): number {
    let n = 0;
    for (const slots of this.leased.get(job.id) ?? NO_SLOTS) n += slots.leases.length * (leaseDepth(slots) - 1);
    return n;
  }

  /** Gives back the job's leases with no call left; true when there were any. */
  private closeIdleLeases(job: EngineJob): boolean {
    const held = this.leased.get(job.id);
    if (held === undefined) return false;
    let closed = false;
    for (const slots of held) {
      if (this.closeIdle(slots)) closed = true;
      if (slots.leases.length === 0) held.delete(slots);
    }
    return closed;
  }

  /** Gives back a task's leases with no call left (their worker's resources, if it is there). */
  private closeIdle(slots: TaskSlots): boolean {
    const open = slots.leases.filter((lease) => lease.inFlight > 0);
    if (open.length === slots.leases.length) return false;
    for (const lease of slots.leases) {
      if (lease.inFlight > 0) continue;
      const worker = this.registry.get(lease.workerId);
      if (worker !== undefined) this.registry.giveBack(worker, lease.request);
    }
    slots.leases = open;
    return true;
  }

  /** Asks the job's generator worker (chosen on first use) for its next batch; false when there is none. */
  private pullSource(job: EngineJob): boolean {
    if (job.sourceWorkerId === undefined) {
      // The live worker with the most free CPU hosts the generator for the whole job.
      const live = this.registry.workers().filter((w) => w.state === 'alive');
      live.sort((a, b) => b.available.get('CPU') - a.available.get('CPU'));
      if (live[0] === undefined) return false; // no worker yet: pulled when one registers
      job.sourceWorkerId = live[0].id;
    }
    if (this.registry.get(job.sourceWorkerId) === undefined) return false;
    job.sourcePulls++;
    this.out.push({ kind: 'pullSource', workerId: job.sourceWorkerId, jobId: job.id, moduleHash: job.spec.module_hash, seq: job.sourceSeq++ });
    return true;
  }

  private assign(job: EngineJob, call: TaskCall<ObjectRef>, lease: Lease, recompute: LineageNode | undefined): void {
    const assignment = ++this.assignments;
    lease.inFlight++;
    this.running.set(assignment, { job, call, workerId: lease.workerId, lease, assignment, recompute });
    let inline = 0;
    const inputs = call.inputs.map((s) => {
      const bytes = s.ref.data.inline ?? EMPTY;
      inline += bytes.byteLength;
      return { object_id: s.ref.data.objectId, owner_address: s.ref.data.ownerAddress, offset: String(s.offset), rows: String(s.rows), inline_ipc: bytes };
    });
    this.out.push({
      kind: 'assign',
      workerId: lease.workerId,
      jobId: job.id,
      call: {
        call_id: call.id,
        job_id: job.id,
        task: call.task,
        attempt: call.attempt,
        input_ids: call.inputs.length === 1 ? [call.inputs[0]!.ref.id] : [...new Set(call.inputs.map((s) => s.ref.id))],
        inputs,
        // Unique per assignment: a late answer of an earlier one never overwrites this one's.
        assignment: String(assignment),
        lease: String(lease.id),
      },
      inlineBytes: inline,
    });
    if (job.log.isLevelEnabled('debug')) {
      job.log.debug({ task: call.task, batchId: call.id, workerId: lease.workerId, lease: lease.id, inFlight: lease.inFlight, depth: leaseDepth(lease.slots), attempt: call.attempt, recompute: recompute !== undefined }, 'call placed');
    }
  }

  /**
   * Asks for a lost batch to be made again, and first the lost or freed inputs it needs. A
   * generator's batch cannot be made again: the job fails.
   */
  private requestRecompute(job: EngineJob, node: LineageNode): void {
    if (node.state === 'ready' || node.state === 'recomputing') return;
    if (node.task === undefined) {
      this.endJob(
        job,
        'failed',
        new DplError(
          DplErrorCode.WORKER_LOST,
          `source batch ${node.id} of the module's generator was lost with its worker, and a generator cannot be replayed; submit the job again`,
        ),
      );
      return;
    }
    node.state = 'recomputing';
    job.recomputeQueue.push(node);
    for (const i of node.inputs) if (i.node.state !== 'ready') this.requestRecompute(job, i.node);
  }

  /** Places the recomputes whose inputs are ready, oldest first. */
  private placeRecomputes(job: EngineJob): void {
    const queue = job.recomputeQueue;
    for (let k = 0; k < queue.length && job.state === 'running'; ) {
      const node = queue[k]!;
      const missing = node.inputs.filter((i) => i.node.state !== 'ready');
      if (missing.length > 0) {
        // An input freed again after another recompute read it: make it again too.
        for (const i of missing) this.requestRecompute(job, i.node);
        k++;
        continue;
      }
      const t = job.tasks.get(node.task!)!;
      const p = this.place(t.request, localBytes(node.inputs, (i) => i.node.ref));
      if (p.kind !== 'placed') {
        k++;
        continue;
      }
      queue.splice(k, 1);
      node.recomputes++;
      const call: TaskCall<ObjectRef> = {
        id: node.id,
        task: node.task!,
        seq: -1,
        inputs: node.inputs.map((i) => ({ ref: { id: i.node.id, rows: i.node.rows, data: i.node.ref }, offset: i.offset, rows: i.rows })),
        rows: node.inputs.reduce((n, i) => n + i.rows, 0),
        attempt: node.recomputes,
        isSource: false,
      };
      job.log.info({ task: node.task, batchId: node.id, workerId: p.workerId }, 'recomputing a batch lost with its worker');
      this.assign(job, call, this.openLease(job, node.task!, p.workerId), node);
    }
  }

  /**
   * What task code recorded during a call, into the job's summary and metrics. Values come from
   * workers and are checked here: a non-finite number (or one that would make a total
   * non-finite), an empty or overlong name is dropped, and a param's text is cut short.
   */
  private observed(job: EngineJob, list: readonly { kind: string; name: string; value: number; text: string }[]): void {
    for (const o of list) {
      const kind = o.kind;
      if (kind !== 'param' && kind !== 'observe' && kind !== 'increment') continue;
      const value = kind === 'param' ? o.text.slice(0, MAX_PARAM_TEXT_LENGTH) : o.value;
      const ok = o.name !== '' && o.name.length <= MAX_OBSERVATION_NAME_LENGTH && job.recordObservation(kind, o.name, value);
      if (ok) this.observer.observation(job.id, kind, o.name, value);
      else if (job.droppedObservations++ === 0) {
        job.log.warn(
          { name: o.name.slice(0, 80), kind, value: String(value).slice(0, 40) },
          'observation dropped: a name must be 1-200 characters and a value finite (later drops are not logged)',
        );
      }
    }
  }

  private takeCall(jobId: string, callId: string, workerId: string, assignment: string): RunningCall | undefined {
    const k = Number(assignment);
    const r = this.running.get(k);
    if (r === undefined || r.workerId !== workerId || r.call.id !== callId || r.job.id !== jobId) return undefined;
    this.running.delete(k);
    this.giveBack(r);
    return r;
  }

  /**
   * A call no longer holds its place in its lease. A lease of an ended job closes with its last
   * call (the job's passes, which close idle leases, are over).
   */
  private giveBack(r: RunningCall): void {
    const lease = r.lease;
    lease.inFlight--;
    if (lease.inFlight === 0 && lease.job.state !== 'running') {
      this.closeIdle(lease.slots);
      this.wantPass();
    }
  }

  /** A leaving worker's call that never started: it runs elsewhere, using up nothing. */
  private handBack(r: RunningCall): void {
    this.observer.call(r.job.id, r.call.task, 'handed_back');
    this.runAgain(r);
  }

  /** Starts moving a leaving worker's objects once none of its calls runs. */
  private maybeHandOff(workerId: string): void {
    const l = this.leaving.get(workerId);
    if (l === undefined || l.handingOff) return;
    for (const r of this.running.values()) if (r.workerId === workerId) return;
    l.handingOff = true;
    const leaver = this.registry.get(workerId);
    const keepers = this.registry.workers().filter((w) => w.state === 'alive' && w.id !== workerId && !this.leaving.has(w.id));
    const toMove: LineageNode[] = [];
    for (const job of this.jobs) if (job.state === 'running') toMove.push(...job.lineage.heldBy(workerId));
    if (leaver !== undefined && keepers.length > 0 && toMove.length > 0) {
      // Spread over the keepers by bytes: the one holding least so far takes the next.
      const load = new Map(keepers.map((w) => [w.id, 0]));
      const batches = new Map<string, string[]>();
      for (const node of toMove.sort((a, b) => b.ref.bytes - a.ref.bytes)) {
        let to = keepers[0]!.id;
        for (const [id, bytes] of load) if (bytes < load.get(to)!) to = id;
        load.set(to, load.get(to)! + node.ref.bytes);
        l.pending.set(node.ref.objectId, { node, to });
        const list = batches.get(to) ?? [];
        list.push(node.ref.objectId);
        batches.set(to, list);
      }
      for (const [to, objectIds] of batches) this.out.push({ kind: 'keepObjects', workerId: to, fromAddress: leaver.address, objectIds });
      this.log.info({ workerId, objects: toMove.length, keepers: batches.size }, 'moving the objects of a leaving worker');
    } else if (toMove.length > 0) {
      this.log.warn({ workerId, objects: toMove.length }, 'a leaving worker holds objects and no other worker can keep them; they are recomputed once it goes');
    }
    this.maybeReady(workerId, l);
  }

  /** Tells a leaving worker it may go once nothing it holds is on its way elsewhere. */
  private maybeReady(workerId: string, l: Leaving): void {
    if (!l.handingOff || l.pending.size > 0) return;
    this.leaving.delete(workerId);
    this.out.push({ kind: 'leaveReady', workerId, moved: l.moved });
  }

  /**
   * Takes back a call that did not fail by itself (its worker, or an input's, was lost): it runs
   * again without using up a retry, once its inputs are there.
   */
  private interrupt(r: RunningCall, why: string): void {
    const { job, call } = r;
    if (job.state !== 'running') return;
    const k = key(job.id, call.id);
    const n = (this.interruptions.get(k) ?? 0) + 1;
    this.interruptions.set(k, n);
    if (n > MAX_INTERRUPTIONS) {
      this.endJob(job, 'failed', new DplError(DplErrorCode.WORKER_LOST, `${why}; ${call.id} was interrupted ${n} times in a row, giving up`));
      return;
    }
    job.log.warn({ task: call.task, batchId: call.id, why }, 'call interrupted; it runs again');
    this.observer.call(job.id, call.task, 'interrupted');
    this.runAgain(r);
  }

  /** Puts a call taken back into its queue (a recompute into the recompute queue). */
  private runAgain(r: RunningCall): void {
    const { job, call } = r;
    if (r.recompute !== undefined) {
      // Back into the recompute queue; its inputs are recomputed first if they were lost too.
      r.recompute.state = 'lost';
      this.requestRecompute(job, r.recompute);
      return;
    }
    job.scheduler.interrupt(call.id);
    job.scheduler.retry(call.id);
  }

  private failCall(r: RunningCall, err: DplError): void {
    const { job, call } = r;
    if (err.code === DplErrorCode.OBJECT_LOST) {
      // An input's owner is going away (its loss is on its way) or already gone: run again
      // after a pause, without using up a retry.
      const delay = retryDelayMs(this.interruptions.get(key(job.id, call.id)) ?? 1, this.retryBackoffMs);
      this.after(delay, () => {
        this.interrupt(r, err.message);
        this.wantPass();
      });
      return;
    }
    if (r.recompute !== undefined) {
      const node = r.recompute;
      const maxAttempts = job.graph.taskMap.get(call.task)!.maxRetries + 1;
      if (node.recomputes >= maxAttempts) {
        this.endJob(job, 'failed', new DplError(err.code, `recomputing batch ${node.id} (lost with its worker) failed ${node.recomputes} times: ${err.message}`, { cause: err }));
        return;
      }
      this.after(retryDelayMs(node.recomputes, this.retryBackoffMs), () => {
        if (job.state !== 'running') return;
        node.state = 'lost';
        this.requestRecompute(job, node);
        this.wantPass();
      });
      return;
    }
    const outcome = failedCall(job.scheduler, call, err, job.skipped, { retryBackoffMs: this.retryBackoffMs, maxErroredBatches: job.spec.max_errored_batches });
    if (outcome.kind === 'skip') {
      this.observer.call(job.id, call.task, 'failed');
      this.observer.call(job.id, call.task, 'skipped');
      job.skipped++;
      job.log.warn({ task: call.task, batchId: call.id, err: err.message }, 'batch skipped after its retries (maxErroredBatches)');
      this.out.push({ kind: 'skipped', jobId: job.id, batchId: call.id, task: call.task, inputs: [...new Set(call.inputs.map((s) => s.ref.id))], error: err });
      return;
    }
    if (outcome.kind === 'fail') {
      this.observer.call(job.id, call.task, 'failed');
      this.endJob(job, 'failed', err);
      return;
    }
    this.observer.call(job.id, call.task, 'retried');
    job.log.warn({ task: call.task, batchId: call.id, attempt: call.attempt, delayMs: outcome.delayMs, err: err.message }, 'call failed; retrying');
    this.after(outcome.delayMs, () => {
      if (job.state !== 'running') return;
      job.scheduler.retry(call.id);
      this.wantPass();
    });
  }
}

function key(jobId: string, callId: string): string {
  return `${jobId}/${callId}`;
}

/** Worker id → bytes of the items' objects it holds. */
function localBytes<T>(items: readonly T[], refOf: (item: T) => ObjectRef): ReadonlyMap<string, number> {
  let local: Map<string, number> | undefined;
  for (const item of items) {
    const ref = refOf(item);
    if (ref.ownerId === '') continue;
    local ??= new Map();
    local.set(ref.ownerId, (local.get(ref.ownerId) ?? 0) + ref.bytes);
  }
  // Inputs carried inline (every default-source batch) are on no worker: one shared empty map.
  return local ?? NOWHERE;
}

const NOWHERE: ReadonlyMap<string, number> = new Map();

/** Calls a lease of the task may hold: enough queued for about LEASE_QUEUE_MS of work. */
function leaseDepth(slots: TaskSlots): number {
  if (slots.runMs === undefined) return INITIAL_LEASE_DEPTH;
  return Math.min(MAX_LEASE_DEPTH, 1 + Math.ceil(LEASE_QUEUE_MS / Math.max(slots.runMs, 0.01)));
}

/**
 * Records how long a call of a task ran in its executor (a moving mean): a lease queues about
 * LEASE_QUEUE_MS of that work. The executor's figure, not the time from assignment to answer,
 * which a lease with one call at a time would see as its round trip.
 */
function ranFor(slots: TaskSlots, ms: number): void {
  if (!Number.isFinite(ms) || ms <= 0) return;
  slots.runMs = slots.runMs === undefined ? ms : 0.8 * slots.runMs + 0.2 * ms;
}

/**
 * A call's printed lines as `(task=T worker=W) line` (the last `max`; long lines cut), with a
 * line saying how many were left out before them.
 */
export function taggedOutputLines(workerId: string, o: TaskOutput, max = Infinity): string[] {
  const tag = `(task=${o.task} worker=${workerId})`;
  const dropped = Number(o.dropped_lines);
  const lines = dropped > 0 ? [`… ${dropped} lines left out`, ...o.lines] : o.lines;
  return lines.slice(-max).map((line) => `${tag} ${line.length > OUTPUT_LINE_KEPT_CHARS ? `${line.slice(0, OUTPUT_LINE_KEPT_CHARS)}…` : line}`);
}
