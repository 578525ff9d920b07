/**
 * The worker daemon: registers its resources with the head over one long-lived bidi stream,
 * heartbeats on it, runs the task calls the head assigns in executor processes, keeps their
 * outputs in its object store, serves them to peers, and reconnects (as a new worker) when the
 * session is lost.
 */
import * as grpc from '@grpc/grpc-js';
import { DPL_VERSION, DplError, DplErrorCode, ResourceSet, ipcStreamProblem, ensureError, privateDir, writeBundle, type Observation } from '@dpl/core';
import {
  CHANNEL_OPTIONS,
  ChunkAssembler,
  channelCredentials,
  objectStoreToProto,
  errorToProto,
  loadDplProto,
  ObjectFetcher,
  serveInProcess,
  resourcesToProto,
  resourcesFromProto,
  tokenMetadata,
  ResultBatcher,
  type AssignBatch,
  type AssignTask,
  type TaskFacts,
  type ConnectWorkerRequest__Input,
  type ConnectWorkerResponse,
  type FetchModuleResponse,
  type HeadServiceClient,
  type PullSource,
  type KeepObjects,
} from '@dpl/wire';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options';
import { ObjectStore, rowsOf, type StoredBytes, type StoredObject } from './store/object-store';
import { startDataServer, type DataServer } from './data/data-server';
import { ExecutorPool, dropFile, type ExecutorResult } from './executor/executor-pool';
import { PRESTARTED_EXECUTORS, executorLaunch } from './executor/fork';
import type { OutputLines } from './executor/task-output';
import { GpuAllocator } from './executor/gpu-allocator';
import { outputFileOf, type CallFacts, type CallInput, type Output, type RunCall, type SharedOut } from './executor/protocol';

const sizeOf = (p: Output): number => ('ipc' in p ? p.ipc.byteLength : p.bytes);

/** A call's inputs from a stored object: its bytes or file, or (a view) the rows of the objects it names. */
function storedInputs(into: CallInput[], objectId: string, local: StoredObject, offset: number, rows: number): void {
  if (!('parts' in local)) {
    into.push(storedInput(objectId, local, offset, rows));
    return;
  }
  for (const p of rowsOf(local.parts, offset, rows)) into.push(storedInput(p.objectId, p.at, p.offset, p.rows));
}

const storedInput = (objectId: string, at: StoredBytes, offset: number, rows: number): CallInput =>
  'bytes' in at ? { ipc: at.bytes, offset, rows, objectId } : { file: at.path, bytes: at.size, offset, rows, objectId };

/** A call's failure, with what its task recorded before it failed, on its way to the head. */
function callFailed(results: ResultBatcher, a: AssignTask, e: unknown): void {
  const recorded = (e as { details?: { observations?: Observation[] } }).details?.observations;
  results.failed({ call_id: a.call_id, job_id: a.job_id, error: errorToProto(e), assignment: a.assignment, observations: observationsToProto(recorded) });
}

/** Outputs up to this size come back through the executor's socket, larger ones as a shared-memory file. */
const SHARED_MIN_BYTES = 64 * 1024;

/** A running worker. */
export interface Worker {
  /** The id the head gave this worker's current session (undefined until registered). */
  readonly id: string | undefined;
  readonly options: ResolvedWorkerOptions;
  /** `host:port` of this worker's data server. */
  readonly dataAddress: string;
  readonly store: ObjectStore;
  /** Bytes this worker fetched from peers, and served to them. */
  readonly bytesFetched: number;
  readonly bytesServed: number;
  /** Resolves on the next successful registration (at once when registered); rejects if the worker gives up. */
  registered(): Promise<string>;
  /**
   * Settles once the worker has stopped: resolves after `stop()`; rejects with a DplError when
   * it gave up on its head (none answered for `connectTimeoutMs`, or the head refused it).
   */
  closed(): Promise<void>;
  /**
   * Leaves gracefully (as on SIGTERM): takes no new calls (the queued ones go back to the head,
   * to run elsewhere), finishes the running ones, waits while the head moves the objects only
   * this worker holds to other workers, then stops. After `graceMs` (default: the
   * `leaveGraceMs` option) it stops anyway, and lineage recomputes what was not moved.
   * Resolves once stopped, with what happened.
   */
  leave(options?: { graceMs?: number }): Promise<LeaveOutcome>;
  /** Leaves the cluster and closes everything. Idempotent. */
  stop(): Promise<void>;
}

/** How a graceful leave went. */
export interface LeaveOutcome {
  /** Whether the head said "go" before the grace period ended. */
  handedOff: boolean;
  /** Objects other workers took over. */
  moved: number;
  /** Queued calls handed back to the head (they run elsewhere). */
  handedBack: number;
}

/**
 * Starts a worker; it (re)connects to the head until stopped, or until it gives up (no head for
 * `connectTimeoutMs`, or the head refused it: see `closed()`).
 *
 * ```ts
 * const worker = await startWorker({ address: '127.0.0.1:6380', resources: { bigdb: 1 } });
 * console.log(await worker.registered()); // w1-myhost-3fa2
 * ```
 * @throws TypeError for invalid options.
 */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const opts = resolveWorkerOptions(options);
  // Bundles are imported from here: a private folder, checked before anything starts.
  const moduleDir = privateDir('worker-modules');
  const storeLog = opts.logger.child({ component: 'object-store' });
  const store = new ObjectStore({
    memoryBytes: opts.objectStoreMemoryMb * 1024 * 1024,
    spillDir: opts.spillDir,
    sharedDir: opts.sharedMemoryDir,
    warn: (message) => storeLog.warn(message),
  });
  const data = await startDataServer(store, opts.host, opts.token, opts.tls, opts.dataPort);
  return new WorkerDaemon(opts, store, data, moduleDir);
}

type Session = grpc.ClientDuplexStream<ConnectWorkerRequest__Input, ConnectWorkerResponse>;

/** What a job's calls share, as the head sent it once per session. */
interface JobOnWorker {
  moduleHash: string;
  tasks: Map<string, TaskFacts>;
  /** Per task, what its calls' executors are sent once (made with the task's first call here). */
  callFacts: Map<string, CallFacts>;
}

/**
 * A lease's calls (the head took one slot of resources for them): they run one after another
 * in one executor, up to EXECUTOR_PIPELINE_DEPTH of them sent ahead into its process.
 */
interface LeaseQueue {
  calls: AssignTask[];
  /** Calls taken from `calls` and not answered yet. */
  inFlight: number;
  /** Where its answers go (its session's). */
  results: ResultBatcher;
}

/**
 * Calls of a lease sent into its executor at once. The process runs them in order; having the
 * next one there saves it waiting for a round trip through the worker after each call, and
 * refilling half of them in one write wakes it once for that many. (The head's lease holds
 * about 4 ms of a task's work, so only calls shorter than ~0.1 ms fill this.) At 32 rather than
 * 16: dpl run no-op 20,000 own 1.43 -> 1.31 s, main-process CPU 1.69 -> 1.56 s (medians of 7,
 * alternating); the README pipeline unchanged. The cost: a process that dies with that many
 * calls in it has them run again one at a time (see ExecutorPool).
 */
const EXECUTOR_PIPELINE_DEPTH = 32;
const EXECUTOR_REFILL_AT = EXECUTOR_PIPELINE_DEPTH / 2;

class WorkerDaemon implements Worker {
  readonly dataAddress: string;
  private readonly client: HeadServiceClient;
  private readonly fetcher: ObjectFetcher;
  private readonly pool: ExecutorPool;
  private readonly gpus: GpuAllocator;
  private readonly modules = new Map<string, Promise<string>>();
  /** The bundle paths of the modules fetched so far (what `modules` resolved to). */
  private readonly bundles = new Map<string, string>();
  private session: Session | undefined;
  private results: ResultBatcher | undefined;
  /** This session's jobs and lease queues (a new session starts empty). */
  private jobs = new Map<string, JobOnWorker>();
  private leases = new Map<string, LeaseQueue>();
  /**
   * Per job whose generator runs here (this session): its pulls, answered one after another in
   * the order they came (the head sends a few ahead), and whether it ended (then a pull is told
   * so; the generator never starts again).
   */
  private sources = new Map<string, { turn: Promise<void>; ended: boolean }>();
  private workerId: string | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private delayMs: number;
  private stopped = false;
  private waiters: { resolve(id: string): void; reject(e: Error): void }[] = [];
  /** Since when no head has taken this worker (ms); undefined while registered. */
  private headlessSince: number | undefined = Date.now();
  /** Whether this stretch without a head has been logged (once; the retries at debug). */
  private saidHeadless = false;
  /** Why the worker gave up on its head, once it has. */
  private gaveUp: DplError | undefined;
  private endedWith!: (e: DplError | undefined) => void;
  private readonly ended = new Promise<DplError | undefined>((resolve) => (this.endedWith = resolve));
  private seq = 0;
  private stopping: Promise<void> | undefined;
  /** Set once leave() was called: new calls go back to the head. */
  private leaving: { ready: (moved: number) => void; handedBack: number } | undefined;
  private leavingOutcome: Promise<LeaveOutcome> | undefined;
  /** What it registers with: its options, as changed since by `dpl worker update`. */
  private advertised: ResourceSet;
  private readonly unserve: () => void = () => undefined;

  constructor(
    readonly options: ResolvedWorkerOptions,
    readonly store: ObjectStore,
    private readonly data: DataServer,
    private readonly moduleDir: string,
  ) {
    this.delayMs = options.reconnectDelayMs;
    this.advertised = options.resources;
    this.dataAddress = `${options.host}:${data.port}`;
    // Linked in memory to a head in this process (`dpl run`): the head reads this worker's
    // outputs from the store, not through a loopback connection to the data server.
    if (options.headClient !== undefined) this.unserve = serveInProcess(this.dataAddress, (id) => store.read(id));
    const { HeadService } = loadDplProto();
    this.client = options.headClient ?? new HeadService(options.address, channelCredentials(options.tls), CHANNEL_OPTIONS);
    this.fetcher = new ObjectFetcher(options.token, options.tls);
    this.pool = new ExecutorPool(options.logger.child({ component: 'executors' }), {
      maxIdle: options.maxIdleExecutors,
      launch: executorLaunch(options.resources.get('CPU'), options.executorMemoryMb, options.executorNodeFlags, options.executorScheduling),
      onOutput: (output) => this.taskOutput(output),
      // A call killed while writing its output leaves a file no reply announced: removed now, not when the worker stops.
      onGone: (pid, lastFile) => {
        const removed = store.removeStrays((name) => {
          const f = outputFileOf(name);
          return f !== undefined && f.pid === pid && f.n > lastFile;
        });
        if (removed > 0) this.log.debug({ pid, removed }, 'removed output files an executor left unfinished');
      },
    });
    this.gpus = new GpuAllocator(options.resources.get('GPU'));
    // One executor per CPU, up to PRESTARTED_EXECUTORS, starts while the worker registers (or
    // was started before the worker, by `dpl run`).
    this.pool.prestart(Math.min(PRESTARTED_EXECUTORS, Math.ceil(options.resources.get('CPU')), options.maxIdleExecutors), options.earlyExecutors);
    this.connect();
  }

  get id(): string | undefined {
    return this.workerId;
  }

  get bytesFetched(): number {
    return this.fetcher.bytesFetched;
  }

  get bytesServed(): number {
    return this.data.bytesServed;
  }

  registered(): Promise<string> {
    if (this.workerId !== undefined) return Promise.resolve(this.workerId);
    if (this.gaveUp !== undefined) return Promise.reject(this.gaveUp);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  closed(): Promise<void> {
    return this.ended.then((e) => {
      if (e !== undefined) throw e;
    });
  }

  /**
   * What tasks printed: to the head, for the job's client (and its dashboard), and on this
   * worker's stderr tagged with the call (a worker linked to a head in this process, as in `dpl
   * run`, leaves the printing to its client).
   */
  private taskOutput(output: OutputLines[]): void {
    const local = this.options.headClient === undefined;
    for (const o of output) {
      if (local) process.stderr.write(taggedLines(o));
      if (o.jobId === '') continue; // not a call's: an executor that failed to start
      this.results?.output({
        job_id: o.jobId,
        task: o.task,
        call_id: o.callId,
        stderr: o.stderr,
        lines: o.lines,
        dropped_lines: String(o.droppedLines),
        dropped_bytes: String(o.droppedBytes),
      });
    }
  }

  private get log() {
    return this.options.logger.child({ component: 'worker', workerId: this.workerId });
  }

  private connect(): void {
    if (this.stopped) return;
    const session = this.client.ConnectWorker(tokenMetadata(this.options.token));
    this.session = session;
    this.results = new ResultBatcher((msg) => session.write(msg));
    this.jobs = new Map();
    this.leases = new Map();
    this.sources = new Map();
    session.on('data', (msg: ConnectWorkerResponse) => this.onMessage(session, msg));
    session.on('error', (e: grpc.ServiceError) => this.lost(session, e));
    session.on('end', () => this.lost(session, undefined));
    session.write({
      register: {
        data_address: this.dataAddress,
        hostname: this.options.hostname,
        pid: process.pid,
        resources: resourcesToProto(this.advertised.toJSON()),
        version: DPL_VERSION,
      },
    });
  }

  private onMessage(session: Session, msg: ConnectWorkerResponse): void {
    if (session !== this.session) return;
    switch (msg.msg) {
      case 'registered': {
        const { worker_id: id, heartbeat_interval_ms: intervalMs } = msg.registered!;
        this.workerId = id;
        this.delayMs = this.options.reconnectDelayMs;
        this.headlessSince = undefined;
        this.saidHeadless = false;
        this.log.info({ head: this.options.address, data: this.dataAddress, resources: this.options.resources.toJSON() }, 'registered with the head');
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => {
          const budget = this.options.objectStoreMemoryMb * 1024 * 1024;
          const object_store = objectStoreToProto({ ...this.store.stats(), budgetBytes: Number.isFinite(budget) ? budget : -1 });
          session.write({
            heartbeat: {
              seq: String(++this.seq),
              sent_at_ms: String(Date.now()),
              object_store,
              bytes_fetched: String(this.fetcher.bytesFetched),
              bytes_served: String(this.data.bytesServed),
            },
          });
        }, intervalMs);
        for (const w of this.waiters.splice(0)) w.resolve(id);
        return;
      }
      case 'assign_batch':
        this.assigned(msg.assign_batch!);
        return;
      case 'pull_source':
        this.queuePull(session, msg.pull_source!);
        return;
      case 'resources_changed':
        this.advertised = ResourceSet.from(resourcesFromProto(msg.resources_changed));
        this.log.info({ resources: this.advertised.toJSON() }, 'now advertising');
        return;
      case 'cancel_job': {
        const jobId = msg.cancel_job!.job_id;
        this.jobs.delete(jobId);
        this.dropQueued(jobId);
        this.pool.closeSource(jobId);
        this.sources.delete(jobId);
        this.store.deletePrefix(`${jobId}/`);
        return;
      }
      case 'keep_objects':
        void this.keepObjects(session, msg.keep_objects!);
        return;
      case 'please_leave': {
        const grace = Number(msg.please_leave!.grace_ms);
        this.log.info('the head asks this worker to leave');
        void this.leave(grace > 0 ? { graceMs: grace } : { graceMs: this.options.leaveGraceMs });
        return;
      }
      case 'leave_ready':
        this.leaving?.ready(Number(msg.leave_ready!.moved));
        return;
      case 'heartbeat_ack':
      case undefined:
        return;
    }
  }

  /** Fetches objects of a leaving worker and keeps them under their ids; tells the head. */
  private async keepObjects(session: Session, k: KeepObjects): Promise<void> {
    const kept: string[] = [];
    const failed: string[] = [];
    let error = '';
    await Promise.all(
      k.object_ids.map(async (id) => {
        try {
          const bytes = await this.fetcher.fetch(k.from_address, id);
          const bad = ipcStreamProblem(bytes);
          if (bad !== undefined) throw new Error(`not an Arrow IPC stream (${bad})`);
          this.store.put(id, bytes);
          kept.push(id);
        } catch (e) {
          failed.push(id);
          error = ensureError(e).message;
        }
      }),
    );
    if (session !== this.session) return;
    this.flushResults(session);
    session.write({ kept: { object_ids: kept, failed_ids: failed, error } });
  }

  leave(options: { graceMs?: number } = {}): Promise<LeaveOutcome> {
    this.leavingOutcome ??= (async () => {
      const graceMs = options.graceMs ?? this.options.leaveGraceMs;
      let ready!: (moved: number) => void;
      const headSaysGo = new Promise<number>((resolve) => (ready = resolve));
      this.leaving = { ready, handedBack: 0 };
      const session = this.session;
      if (session === undefined || this.workerId === undefined) {
        await this.stop();
        return { handedOff: false, moved: 0, handedBack: 0 };
      }
      this.handBackQueued();
      this.flushResults(session);
      session.write({ leave: { grace_ms: String(graceMs) } });
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), graceMs)));
      // A lost session cannot say go: the worker stops then (see lost()).
      const stoppedMeanwhile = this.ended.then(() => undefined);
      const moved = await Promise.race([headSaysGo, graceOver, stoppedMeanwhile]);
      clearTimeout(timer);
      const handedBack = this.leaving.handedBack;
      await this.stop();
      return { handedOff: moved !== undefined, moved: moved ?? 0, handedBack };
    })();
    return this.leavingOutcome;
  }

  /** Answers every call not started yet as handed back: the head runs it elsewhere. */
  private handBackQueued(): void {
    const results = this.results;
    for (const q of this.leases.values()) {
      for (const c of q.calls.splice(0)) {
        this.leaving!.handedBack++;
        results?.failed({
          call_id: c.call_id,
          job_id: c.job_id,
          assignment: c.assignment,
          handed_back: true,
          error: errorToProto(new DplError(DplErrorCode.WORKER_LOST, `worker ${this.workerId ?? ''} is leaving; call ${c.call_id} runs elsewhere`)),
        });
      }
    }
  }

  /** Calls (and releases) from one scheduling pass of the head. */
  private assigned(batch: AssignBatch): void {
    for (const j of batch.jobs) this.jobs.set(j.job_id, { moduleHash: j.module_hash, tasks: new Map(j.tasks.map((t) => [t.task, t])), callFacts: new Map() });
    const touched = new Set<string>();
    for (const call of batch.calls) {
      let q = this.leases.get(call.lease);
      if (q === undefined) {
        q = { calls: [], inFlight: 0, results: this.results! };
        this.leases.set(call.lease, q);
      }
      q.calls.push(call);
      touched.add(call.lease);
    }
    if (this.leaving !== undefined) this.handBackQueued(); // sent before the head heard we leave
    for (const id of touched) this.pumpLease(id, this.leases.get(id)!);
    for (const id of batch.release) this.store.delete(id);
  }

  /**
   * Starts a lease's next calls: into its executor up to EXECUTOR_PIPELINE_DEPTH at once, one at
   * a time for a task holding GPUs (each call takes and gives back its GPU ids).
   */
  private pumpLease(id: string, q: LeaseQueue): void {
    const results = q.results;
    while (q.calls.length > 0 && q.inFlight < EXECUTOR_PIPELINE_DEPTH) {
      const next = q.calls[0]!;
      const gpus = this.jobs.get(next.job_id)?.tasks.get(next.task)?.num_gpus ?? 0;
      if (gpus > 0 && q.inFlight > 0) break;
      q.calls.shift();
      q.inFlight++;
      void this.runTask(results, next, id).finally(() => {
        // reports its own outcome; then the lease goes on, or is done
        q.inFlight--;
        // Refilled at half depth: several calls then go into the process in one write.
        if (q.calls.length > 0 && q.inFlight <= EXECUTOR_REFILL_AT) this.pumpLease(id, q);
        else if (q.inFlight === 0 && this.leases.get(id) === q) this.leases.delete(id);
      });
    }
  }

  /**
   * Answers the queued calls of an ended job as cancelled: the head holds a lease's resources
   * until each of its calls is answered.
   */
  private dropQueued(jobId: string): void {
    const results = this.results;
    for (const q of this.leases.values()) {
      const keep = q.calls.filter((c) => c.job_id !== jobId);
      if (keep.length === q.calls.length) continue;
      for (const c of q.calls) {
        if (c.job_id !== jobId) continue;
        results?.failed({
          call_id: c.call_id,
          job_id: c.job_id,
          assignment: c.assignment,
          error: errorToProto(new DplError(DplErrorCode.CANCELLED, `job ${jobId} ended before call ${c.call_id} started`)),
        });
      }
      q.calls = keep;
    }
  }

  /**
   * Runs one call and reports its outcome (never rejects). A call whose module is here and whose
   * inputs are inline or in this store goes into its executor at once; one that must fetch its
   * module or an input first waits for those.
   */
  private runTask(results: ResultBatcher, a: AssignTask, lease: string): Promise<void> {
    const job = this.jobs.get(a.job_id);
    const facts = job?.tasks.get(a.task);
    if (job === undefined || facts === undefined) {
      const err = new DplError(DplErrorCode.CANCELLED, `job ${a.job_id} (task ${JSON.stringify(a.task)}) is not running on this worker`);
      results.failed({ call_id: a.call_id, job_id: a.job_id, error: errorToProto(err), assignment: a.assignment });
      return Promise.resolve();
    }
    const gpuIds = this.gpus.allocate(facts.num_gpus) ?? [];
    const bundlePath = this.bundles.get(job.moduleHash);
    const inputs = bundlePath === undefined ? undefined : this.localInputs(a);
    const out =
      bundlePath !== undefined && inputs !== undefined
        ? this.pool.run(this.runCall(a, job, facts, bundlePath, inputs), a.attempt, gpuIds.join(','), facts.timeout_ms, lease)
        : this.prepareAndRun(a, job, facts, gpuIds, lease);
    return out.then(
      (r) => {
        this.gpus.release(gpuIds, facts.num_gpus);
        try {
          this.answer(results, a, facts, r);
        } catch (e) {
          callFailed(results, a, e); // keeping the output failed (the store): the call fails, the daemon goes on
        }
      },
      (e: unknown) => {
        this.gpus.release(gpuIds, facts.num_gpus);
        callFailed(results, a, e);
      },
    );
  }

  /** A call whose module or inputs are not here yet: fetched, then run. */
  private async prepareAndRun(a: AssignTask, job: JobOnWorker, facts: TaskFacts, gpuIds: number[], lease: string): Promise<ExecutorResult> {
    const bundlePath = await this.module(job.moduleHash);
    const inputs = (await Promise.all(a.inputs.map((s) => this.input(s.object_id, s.owner_address, s.inline_ipc, Number(s.offset), Number(s.rows), a)))).flat();
    return this.pool.run(this.runCall(a, job, facts, bundlePath, inputs), a.attempt, gpuIds.join(','), facts.timeout_ms, lease);
  }

  /** The call's inputs when every one is inline or in this store; undefined when one must be fetched. */
  private localInputs(a: AssignTask): RunCall['inputs'] | undefined {
    const inputs: RunCall['inputs'] = [];
    for (const s of a.inputs) {
      const offset = Number(s.offset);
      const rows = Number(s.rows);
      if (s.object_id === '') {
        inputs.push({ ipc: aligned(s.inline_ipc), offset, rows });
        continue;
      }
      const local = this.store.open(s.object_id);
      if (local === undefined) return undefined;
      storedInputs(inputs, s.object_id, local, offset, rows);
    }
    return inputs;
  }

  /** What an executor is sent for a call. */
  private runCall(a: AssignTask, job: JobOnWorker, facts: TaskFacts, bundlePath: string, inputs: RunCall['inputs']): RunCall {
    // One object per task of the job: the pool sends it into each process once.
    let callFacts = job.callFacts.get(a.task);
    if (callFacts === undefined) {
      callFacts = {
        bundlePath,
        label: job.moduleHash.slice(0, 12),
        jobId: a.job_id,
        task: a.task,
        kwargs: facts.kwargs,
        before: facts.fused_before.length > 0 ? facts.fused_before : undefined,
        maxAttempts: facts.max_attempts,
        shared: this.sharedOut(this.inlineMax(facts)),
        // A sink's output goes to the head, which would have to encode a view's rows: written by the executor instead.
        views: facts.inline_output_max_bytes === 0,
      };
      job.callFacts.set(a.task, callFacts);
    }
    return { facts: callFacts, callId: a.call_id, inputs, inputIds: a.input_ids };
  }

  /** Outputs up to this size go to the head in the answer. */
  private inlineMax(facts: TaskFacts): number {
    return this.options.headClient === undefined ? facts.inline_output_max_bytes : Math.min(facts.inline_output_max_bytes, SHARED_MIN_BYTES);
  }

  /** A call's output: kept in the store (or inlined), and its answer on its way to the head. */
  private answer(results: ResultBatcher, a: AssignTask, facts: TaskFacts, out: ExecutorResult): void {
    const bytes = sizeOf(out);
    const inline = 'ipc' in out && bytes <= this.inlineMax(facts);
    const outputId = `${a.job_id}/${a.call_id}~${a.assignment}`;
    if (!inline) this.keep(outputId, out);
    results.done(
      {
        call_id: a.call_id,
        job_id: a.job_id,
        output_id: inline ? '' : outputId,
        rows: String(out.rows),
        bytes: String(bytes),
        inline_ipc: inline ? out.ipc : EMPTY,
        assignment: a.assignment,
        observations: observationsToProto(out.observations),
        run_us: String(out.runUs ?? 0),
        stage_rows: out.stageRows?.map(String) ?? [],
      },
      inline ? bytes : 0,
    );
  }

  /**
   * Starts a pull of a job's generator at once (its process makes the batches of the pulls it
   * has in the order they came) and answers it after the job's earlier pulls.
   */
  private queuePull(session: Session, p: PullSource): void {
    let source = this.sources.get(p.job_id);
    if (source === undefined) {
      source = { turn: Promise.resolve(), ended: false };
      this.sources.set(p.job_id, source);
    }
    const s = source;
    const pulled = s.ended ? undefined : this.pullSource(p).then(
      (r) => ({ r }),
      (e: unknown) => ({ e }),
    );
    s.turn = s.turn.then(async () => this.answerPull(session, p, s, await pulled));
  }

  /** The next batch of a job's generator, in the store; undefined when it has ended. */
  private async pullSource(p: PullSource): Promise<ExecutorResult | undefined> {
    const bundlePath = await this.module(p.module_hash);
    return this.pool.nextSource(p.job_id, bundlePath, p.module_hash.slice(0, 12), this.sharedOut(0));
  }

  /**
   * Tells the head what a pull gave. Once the generator ended or failed, later pulls are told
   * it ended (those already in its process when it stopped included); it never starts again.
   */
  private answerPull(session: Session, p: PullSource, source: { ended: boolean }, got: { r?: ExecutorResult; e?: unknown } | undefined): void {
    const base = { job_id: p.job_id, seq: p.seq };
    if (source.ended || got === undefined) {
      if (got?.r !== undefined) dropFile(got.r);
      session.write({ source_batch: { ...base, done: true } });
      return;
    }
    this.flushResults(session);
    if ('e' in got || got.r === undefined) {
      source.ended = true;
      this.pool.closeSource(p.job_id);
      session.write({ source_batch: { ...base, ...('e' in got ? { error: errorToProto(got.e) } : { done: true }) } });
      return;
    }
    const id = `${p.job_id}/s${p.seq}`;
    this.keep(id, got.r);
    session.write({ source_batch: { ...base, object_id: id, rows: String(got.r.rows), bytes: String(sizeOf(got.r)) } });
  }

  /** Sends the answers waiting for this session first, so the head sees them in order. */
  private flushResults(session: Session): void {
    if (session === this.session) this.results?.flush();
  }

  /** An executor's output into the store: its bytes, the shared-memory file it wrote, or a view of stored objects. */
  private keep(id: string, p: Output): void {
    if ('view' in p) this.store.adoptView(id, p.view);
    else if ('file' in p) this.store.adopt(id, p.file, p.bytes);
    else this.store.put(id, p.ipc);
  }

  /**
   * Where executors leave outputs larger than both `inlineMax` (those go to the head in the
   * answer) and SHARED_MIN_BYTES (below it a file costs more than the copy it saves).
   */
  private sharedOut(inlineMax: number): SharedOut | undefined {
    const dir = this.store.sharedDir;
    return dir === undefined ? undefined : { dir, overBytes: Math.max(inlineMax, SHARED_MIN_BYTES) };
  }

  /**
   * An input: inline, from this worker's store (its bytes, or the file that holds them: the
   * executor reads it), or fetched from its owner.
   */
  private async input(objectId: string, owner: string, inline: Uint8Array, offset: number, rows: number, call: AssignTask): Promise<CallInput[]> {
    if (objectId === '') return [{ ipc: aligned(inline), offset, rows }];
    const local = this.store.open(objectId);
    if (local === undefined) {
      const ipc = await this.fetcher.fetch(owner, objectId);
      // Checked where it arrives, naming the sender: not later, inside arrow, in this task.
      const bad = ipcStreamProblem(ipc);
      if (bad !== undefined) {
        // Not lost (fetching again gets the same bytes): the call fails, using up a retry.
        throw new DplError(
          DplErrorCode.TASK_FAILED,
          `the input of call ${call.call_id} of task ${JSON.stringify(call.task)}, object ${objectId} fetched from the worker at ${owner}, ` +
            `is not an Arrow IPC stream (${bad}); that worker's store, or the network, is broken`,
        );
      }
      return [{ ipc, offset, rows }];
    }
    const inputs: CallInput[] = [];
    storedInputs(inputs, objectId, local, offset, rows);
    return inputs;
  }

  /** The path of a module bundle, fetched from the head once per hash. */
  private module(hash: string): Promise<string> {
    let p = this.modules.get(hash);
    if (p === undefined) {
      p = new Promise<Uint8Array>((resolve, reject) => {
        const assembler = new ChunkAssembler();
        const call = this.client.FetchModule({ hash }, tokenMetadata(this.options.token));
        call.on('data', (m: FetchModuleResponse) => assembler.add(m.chunk));
        call.on('error', (e: grpc.ServiceError) => reject(new Error(`cannot fetch module ${hash} from the head: ${e.details}`)));
        call.on('end', () => resolve(assembler.finish()));
      }).then((code) => {
        const path = writeBundle(this.moduleDir, hash, code);
        this.bundles.set(hash, path);
        return path;
      });
      p.catch(() => this.modules.delete(hash)); // a failed fetch is retried by the next call
      this.modules.set(hash, p);
    }
    return p;
  }

  /**
   * The session ended: forget the registration and reconnect after a backoff, or give up when
   * the head refused this worker or none answered for `connectTimeoutMs`. Each stretch without
   * a head is logged once; the retries are at debug.
   */
  private lost(session: Session, e: grpc.ServiceError | undefined): void {
    if (session !== this.session) return;
    this.session = undefined;
    this.results?.close();
    this.results = undefined;
    clearInterval(this.heartbeat);
    const was = this.workerId;
    this.workerId = undefined;
    if (this.stopped) return;
    if (this.leaving !== undefined) {
      // Leaving: no new session (it would take calls); what the head did not move, lineage covers.
      void this.stop();
      return;
    }
    const head = this.options.address;
    const why = e === undefined ? 'the head ended the session' : grpcReason(e);
    // A wrong token, or a registration the head will not take, fails the same way every time.
    if (e !== undefined && (e.code === grpc.status.UNAUTHENTICATED || e.code === grpc.status.PERMISSION_DENIED || (e.code === grpc.status.INVALID_ARGUMENT && was === undefined))) {
      // The head's refusal says what to do about a token; a registration's needs the next step.
      const invalid = e.code === grpc.status.INVALID_ARGUMENT;
      const message = `the head at ${head} refused this worker: ${why}${invalid ? '; fix what it names and start the worker again' : ''}`;
      this.giveUp(invalid ? DplErrorCode.VALIDATION : DplErrorCode.UNAUTHENTICATED, message);
      return;
    }
    const now = Date.now();
    this.headlessSince ??= now;
    const timeout = this.options.connectTimeoutMs;
    const left = timeout === 0 ? Infinity : this.headlessSince + timeout - now;
    if (left <= 0) {
      this.giveUp(
        DplErrorCode.UNAVAILABLE,
        `no head answered at ${head} for ${seconds(timeout)} (last error: ${why}); start one there (dpl head start), check --address, or wait longer with --connect-timeout SECONDS (0: forever)`,
      );
      return;
    }
    const retrying = timeout === 0 ? 'retrying until stopped' : `retrying for up to ${seconds(timeout)} (--connect-timeout)`;
    if (!this.saidHeadless) {
      this.saidHeadless = true;
      const msg = was === undefined ? `cannot reach the head at ${head} yet; ${retrying}` : `lost the head at ${head}; ${retrying}`;
      this.options.logger.warn({ workerId: was, head, err: why }, msg);
    } else {
      this.options.logger.debug({ head, err: why, retryInMs: this.delayMs }, 'still no head; retrying');
    }
    this.reconnect = setTimeout(() => this.connect(), Math.min(this.delayMs, left));
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxReconnectDelayMs);
  }

  /** Stops for good with `message`: logged, and the reason `registered()` and `closed()` reject with. */
  private giveUp(code: DplErrorCode, message: string): void {
    this.gaveUp = new DplError(code, message);
    this.options.logger.error({ head: this.options.address }, `gave up: ${message}`);
    for (const w of this.waiters.splice(0)) w.reject(this.gaveUp);
    void this.stop();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      clearInterval(this.heartbeat);
      clearTimeout(this.reconnect);
      const session = this.session;
      this.session = undefined;
      if (session !== undefined) {
        await new Promise<void>((resolve) => {
          session.once('error', () => resolve());
          session.once('end', () => resolve());
          session.once('close', () => resolve());
          session.end();
          setTimeout(resolve, 1_000).unref();
        });
      }
      this.unserve();
      this.pool.stop();
      this.fetcher.close();
      this.client.close();
      await this.data.stop();
      this.store.close();
      this.endedWith(this.gaveUp);
    })();
    return this.stopping;
  }
}

const EMPTY = new Uint8Array(0);

/** What went wrong, from grpc-js's wording ("No connection established. Last error: Error: connect ECONNREFUSED …"). */
function grpcReason(e: grpc.ServiceError): string {
  const text = e.details || ensureError(e).message;
  const m = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/s.exec(text);
  return m?.[1] || text;
}

/** 60000 → "60 s", 1500 → "1.5 s". */
const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`;


function aligned(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset % 8 === 0) return bytes;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/** Observations as their proto messages. */
function observationsToProto(list: Observation[] | undefined): { kind: string; name: string; value: number; text: string }[] {
  return (list ?? []).map((o) =>
    o.kind === 'param' ? { kind: o.kind, name: o.name, value: 0, text: o.value } : { kind: o.kind, name: o.name, value: o.value, text: '' },
  );
}

/** Lines of task output as this worker's stderr shows them: `(task=score job=J call=score#3) line`. */
function taggedLines(o: OutputLines): string {
  const tag = o.jobId === '' ? '(executor)' : `(task=${o.task} job=${o.jobId} call=${o.callId})`;
  let text = o.droppedLines > 0 ? `${tag} … ${o.droppedLines} lines (${o.droppedBytes} bytes) of task output left out: over the rate output is kept at\n` : '';
  for (const line of o.lines) text += `${tag} ${line}\n`;
  return text;
}
