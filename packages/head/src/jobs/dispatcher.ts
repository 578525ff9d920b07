/**
 * The dispatcher: runs every job's streaming scheduler against the live workers' free
 * resources, sends the calls it places to the workers, and feeds their results back. Jobs take
 * turns (a rotating start), so several jobs share the cluster by resources.
 */
import { DplError, DplErrorCode, ensureError, pendingCallsFor, retryDelayMs, type Logger, type ResourceSet, type TaskCall } from '@dpl/core';
import { errorFromProto, type JobFacts__Input, type ObjectFetcher, type TaskDone, type SourceBatch, type TaskFailed } from '@dpl/wire';
import { place } from '../placement/placement';
import type { WorkerRegistry } from '../registry/worker-registry';
import type { Job, ObjectRef } from './job';
import type { LineageNode } from './lineage';
import type { HeadMetrics } from '../metrics/metrics';
import type { WorkerLink } from './worker-link';

/**
 * One slot of a task's resources on a worker, held while calls of that task are queued or
 * running on it (Ray's worker lease per scheduling class). The head places a call by opening a
 * lease where the resources are free, or by queueing it behind the calls of a lease the task
 * already holds; the worker runs a lease's calls one after another, so what runs at once never
 * exceeds what the head took. Queueing keeps the worker busy while an answer and the next call
 * cross the network, without a round trip through the head per call.
 */
interface Lease {
  readonly id: number;
  readonly job: Job;
  readonly workerId: string;
  readonly request: ResourceSet;
  /** Its task's leases (this one among them). */
  readonly slots: TaskSlots;
  /** Calls assigned under it and not answered yet. */
  inFlight: number;
}

/** A task of a job as the dispatcher places it: its open leases, and how long its calls run. */
interface TaskSlots {
  leases: Lease[];
  /** Mean run time of its calls in their executors (ms), once one has been answered. */
  runMs: number | undefined;
}

interface RunningCall {
  job: Job;
  call: TaskCall<ObjectRef>;
  workerId: string;
  lease: Lease;
  /** The assignment's number: an answer must carry it. */
  assignment: number;
  /** Set for a call that recomputes a lost batch (not the scheduler's). */
  recompute: LineageNode | undefined;
}

/** Queued work per lease the head aims for, in milliseconds of the task's service time. */
const LEASE_QUEUE_MS = 4;
/** The most calls a lease holds (running and queued). */
const MAX_LEASE_DEPTH = 16;
/** A lease's depth before its task's service time is known: one running, one queued. */
const INITIAL_LEASE_DEPTH = 2;

const RETRY_BACKOFF_MS = 100;
/** A call whose input keeps being lost this many times in a row fails the job. */
const MAX_INTERRUPTIONS = 10;
/** Sink outputs up to this size come back inside TaskDone (no fetch round trip). */
const INLINE_SINK_OUTPUT_MAX_BYTES = 1024 * 1024;

export class Dispatcher {
  private readonly jobs: Job[] = [];
  private readonly running = new Map<string, RunningCall>();
  /** The running jobs' tasks, by "<jobId>/<task>". */
  private readonly slots = new Map<string, TaskSlots>();
  private leaseCounter = 0;
  /** Times each call was taken back because an input or its worker was lost. */
  private readonly interruptions = new Map<string, number>();
  private assignments = 0;
  /** Rotates where placement's least-loaded sample starts. */
  private placeTurn = 0;
  private turn = 0;
  private pending = false;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly links: ReadonlyMap<string, WorkerLink>,
    private readonly fetcher: ObjectFetcher,
    readonly log: Logger,
    private readonly metrics: HeadMetrics,
  ) {}

  get jobList(): readonly Job[] {
    return this.jobs;
  }

  add(job: Job): void {
    this.jobs.push(job);
    this.schedule();
  }

  remove(job: Job): void {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
  }

  /** Bytes the head fetched from workers (only sink outputs on their way to clients). */
  get bytesFetched(): number {
    return this.fetcher.bytesFetched;
  }

  fetch(ref: ObjectRef): Promise<Uint8Array> {
    return this.fetcher.fetch(ref.ownerAddress, ref.objectId);
  }

  release(ref: ObjectRef): void {
    this.links.get(ref.ownerId)?.release(ref.objectId);
  }

  /**
   * Asks for a scheduling pass. Requests are coalesced into one pass per turn of the event
   * loop: completions arrive in bursts (many TaskDone messages per network read), and one pass
   * over all of them costs far less than a pass per message.
   */
  schedule(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.scheduleNow();
    });
  }

  /** One pass over every job, starting with a different job each time (fair turns). */
  scheduleNow(): void {
    const now = Date.now();
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
        job.fail(new DplError(DplErrorCode.INTERNAL, `the head failed while scheduling job ${job.id}: ${err.message}; this is a dpl bug, please report it`, { cause: err }));
      }
    }
    this.turn = n === 0 ? 0 : (this.turn + 1) % n;
  }

  private scheduleJob(job: Job, now: number): void {
    /** Requests refused in this pass for want of free resources: they go first where they fit. */
    const refused: ResourceSet[] = [];
    /** Requests that found no free worker in this pass (resources only shrink within a pass). */
    const noRoom = new Set<ResourceSet>();
    const backend = {
      placed: undefined as { workerId: string } | { lease: Lease } | undefined,
      fits: (task: string, ctx: { inputs: readonly { id: string; data: ObjectRef; rows: number }[] }): boolean => {
        // An input lost with its worker waits for its recompute.
        if (!ctx.inputs.every((i) => job.lineage.isReady(i.id))) return false;
        const t = job.tasks.get(task)!;
        const local = localBytes(ctx.inputs, (i) => i.data);
        if (!noRoom.has(t.request)) {
          const t0 = performance.now();
          const p = place(t.request, this.registry.workers(), local, { byId: (id) => this.registry.get(id), start: this.placeTurn++ });
          this.metrics.placementLatency.observe((performance.now() - t0) / 1000);
          if (p.kind === 'placed') {
            backend.placed = { workerId: p.workerId };
            job.infeasibleSince.delete(task);
            return true;
          }
          noRoom.add(t.request);
          if (p.kind === 'infeasible') {
            if (!job.infeasibleSince.has(task)) {
              job.infeasibleSince.set(task, { sinceMs: now, shortfall: p.shortfall });
              const message =
                `task ${JSON.stringify(task)} needs ${t.request.toString()}; no live worker can fit it: ${p.shortfall}; ` +
                `waiting for one to join (fails after ${job.spec.infeasible_timeout_ms / 1000} s)`;
              job.log.warn({ task, request: t.request.toJSON(), shortfall: p.shortfall }, 'task waits: no live worker can fit it');
              job.notice(message);
            }
            return false;
          }
          job.infeasibleSince.delete(task);
        }
        // No free slot: queue behind a lease this task holds, unless that would keep a slot
        // from a task of higher priority refused in this pass.
        const lease = this.leaseWithRoom(this.slotsOf(job, task), local, refused);
        if (lease !== undefined) {
          backend.placed = { lease };
          return true;
        }
        refused.push(t.request);
        return false;
      },
      submit: (call: TaskCall<ObjectRef>): void => {
        const placed = backend.placed!;
        const lease = 'lease' in placed ? placed.lease : this.openLease(job, call.task, placed.workerId);
        this.assign(job, call, lease, undefined);
      },
    };
    this.placeRecomputes(job);
    if (job.state !== 'running') return;
    // Work waiting in the job stays bounded, in proportion to what the cluster can run at once,
    // plus what its leases may queue (a few milliseconds of work each).
    job.scheduler.setMaxPendingCalls(pendingBound(this.registry) + this.queueRoom(job));
    for (;;) {
      const r = job.scheduler.schedule(backend, job.allowSources);
      if (!r.wantsSourceData) break;
      if (job.spec.module_generator) {
        // The module's generator runs on a worker: ask for one batch at a time.
        if (!job.pullingSource) this.pullSource(job);
        break;
      }
      job.addDefaultSourceBatch();
    }
    // Slots with nothing queued go back: the next pass may give them to another task.
    if (this.closeIdleLeases(job) && refused.length > 0) this.schedule();
    job.checkInfeasible(now);
    job.checkDone();
  }

  /** A task's leases and run time (made on first use; dropped when its job ends). */
  private slotsOf(job: Job, task: string): TaskSlots {
    const k = key(job.id, task);
    let slots = this.slots.get(k);
    if (slots === undefined) {
      slots = { leases: [], runMs: undefined };
      this.slots.set(k, slots);
    }
    return slots;
  }

  /** Takes a slot of a task's resources on a worker. */
  private openLease(job: Job, task: string, workerId: string): Lease {
    const request = job.tasks.get(task)!.request;
    this.registry.take(this.registry.get(workerId)!, request);
    const slots = this.slotsOf(job, task);
    const lease: Lease = { id: ++this.leaseCounter, job, workerId, request, slots, inFlight: 0 };
    slots.leases.push(lease);
    return lease;
  }

  /**
   * A lease of the task that may queue one more call: on a live worker, below the task's depth,
   * on the worker holding most of the call's input bytes (then the least queued), and not on a
   * worker where a refused request of higher priority would fit once the slot is free.
   */
  private leaseWithRoom(slots: TaskSlots, local: ReadonlyMap<string, number>, refused: readonly ResourceSet[]): Lease | undefined {
    const depth = leaseDepth(slots);
    let best: Lease | undefined;
    for (const lease of slots.leases) {
      if (lease.inFlight >= depth) continue;
      const worker = this.registry.get(lease.workerId);
      if (worker === undefined || worker.state !== 'alive') continue;
      if (refused.some((r) => worker.total.fits(r))) continue;
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
  private queueRoom(job: Job): number {
    let n = 0;
    for (const t of job.tasks.keys()) {
      const slots = this.slots.get(key(job.id, t));
      if (slots !== undefined) n += slots.leases.length * (leaseDepth(slots) - 1);
    }
    return n;
  }

  /** Gives back the job's leases with no call left; true when there were any. */
  private closeIdleLeases(job: Job): boolean {
    let closed = false;
    for (const t of job.tasks.keys()) {
      const slots = this.slots.get(key(job.id, t));
      if (slots !== undefined && this.closeIdle(slots)) closed = true;
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

  /** Asks the job's generator worker (chosen on first use) for its next batch. */
  private pullSource(job: Job): void {
    if (job.sourceWorkerId === undefined) {
      // The live worker with the most free CPU hosts the generator for the whole job.
      const live = this.registry.workers().filter((w) => w.state === 'alive');
      live.sort((a, b) => b.available.get('CPU') - a.available.get('CPU'));
      if (live[0] === undefined) return; // no worker yet: pulled when one registers
      job.sourceWorkerId = live[0].id;
    }
    const link = this.links.get(job.sourceWorkerId);
    if (link === undefined) return;
    job.pullingSource = true;
    link.send({ pull_source: { job_id: job.id, module_hash: job.spec.module_hash, seq: String(job.sourceSeq++) } });
  }

  /** A worker answered a pull of a job's generator. */
  sourceBatch(workerId: string, msg: SourceBatch): void {
    const job = this.jobs.find((j) => j.id === msg.job_id);
    if (job === undefined || job.state !== 'running' || job.sourceWorkerId !== workerId) {
      if (msg.object_id !== '') this.links.get(workerId)?.release(msg.object_id);
      return;
    }
    job.pullingSource = false;
    if (msg.error) {
      const err = errorFromProto(msg.error);
      job.fail(new DplError(DplErrorCode.TASK_FAILED, `the module's generator failed: ${err.message}`, { cause: err }));
      return;
    }
    if (msg.done) job.scheduler.endSource();
    else {
      const worker = this.registry.get(workerId);
      const ref: ObjectRef = { objectId: msg.object_id, ownerId: workerId, ownerAddress: worker?.address ?? '', inline: undefined, bytes: Number(msg.bytes) };
      job.addSourceBatch(ref, Number(msg.rows), true);
    }
    this.schedule();
  }

  /** Tells every worker a job is over: they drop its objects and its generator. */
  jobEnded(job: Job): void {
    for (const k of this.interruptions.keys()) if (k.startsWith(`${job.id}/`)) this.interruptions.delete(k);
    for (const link of this.links.values()) link.jobEnded(job.id);
    // Idle leases go back now; the others when their last call is answered (the worker answers
    // the calls it drops for the job's end, so none is left holding resources).
    this.closeIdleLeases(job);
    for (const t of job.tasks.keys()) this.slots.delete(key(job.id, t));
  }

  private assign(job: Job, call: TaskCall<ObjectRef>, lease: Lease, recompute: LineageNode | undefined): void {
    const assignment = ++this.assignments;
    lease.inFlight++;
    this.running.set(key(job.id, call.id), { job, call, workerId: lease.workerId, lease, assignment, recompute });
    let inline = 0;
    const inputs = call.inputs.map((s) => {
      const bytes = s.ref.data.inline ?? EMPTY;
      inline += bytes.byteLength;
      return { object_id: s.ref.data.objectId, owner_address: s.ref.data.ownerAddress, offset: String(s.offset), rows: String(s.rows), inline_ipc: bytes };
    });
    const link = this.links.get(lease.workerId)!;
    link.assign(
      job.id,
      () => jobFacts(job),
      {
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
      inline,
    );
    if (job.log.isLevelEnabled('debug')) {
      job.log.debug({ task: call.task, batchId: call.id, workerId: lease.workerId, lease: lease.id, inFlight: lease.inFlight, depth: leaseDepth(lease.slots), attempt: call.attempt, recompute: recompute !== undefined }, 'call placed');
    }
  }

  /**
   * Asks for a lost batch to be made again, and first the lost or freed inputs it needs. A
   * generator's batch cannot be made again: the job fails.
   */
  private requestRecompute(job: Job, node: LineageNode): void {
    if (node.state === 'ready' || node.state === 'recomputing') return;
    if (node.task === undefined) {
      job.fail(
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
  private placeRecomputes(job: Job): void {
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
      const local = localBytes(node.inputs, (i) => i.node.ref);
      const p = place(t.request, this.registry.workers(), local, { byId: (id) => this.registry.get(id), start: this.placeTurn++ });
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

  /** A worker finished a call. */
  taskDone(workerId: string, msg: TaskDone): void {
    const r = this.take(msg.job_id, msg.call_id, workerId, msg.assignment);
    if (r !== undefined) {
      this.observed(r.job, msg.observations);
      ranFor(r.lease.slots, Number(msg.run_us) / 1000);
    }
    const worker = this.registry.get(workerId);
    const inline = msg.output_id === '';
    if (r === undefined || r.job.state !== 'running') {
      // A stale or cancelled call: its output is not needed.
      if (!inline) this.links.get(workerId)?.release(msg.output_id);
      return;
    }
    this.interruptions.delete(key(r.job.id, r.call.id));
    const ref: ObjectRef = inline
      ? { objectId: '', ownerId: '', ownerAddress: '', inline: msg.inline_ipc, bytes: Number(msg.bytes) }
      : { objectId: msg.output_id, ownerId: workerId, ownerAddress: worker?.address ?? '', inline: undefined, bytes: Number(msg.bytes) };
    if (r.recompute !== undefined) {
      r.job.lineage.recomputed(r.recompute, ref);
      this.metrics.call(r.job.id, r.call.task, 'recomputed');
      this.schedule();
      return;
    }
    this.metrics.call(r.job.id, r.call.task, 'done', r.call.rows);
    const rows = Number(msg.rows);
    // Recorded before the scheduler frees the call's inputs, so they stay in the lineage.
    if (rows > 0) {
      const inputs = r.call.inputs.map((s) => ({ id: s.ref.id, offset: s.offset, rows: s.rows }));
      r.job.lineage.addOutput(r.call.id, ref, rows, r.call.task, inputs);
    }
    const out = r.job.scheduler.complete(r.call.id, { rows, data: ref });
    if (out !== undefined) r.job.deliver(out);
    this.schedule();
  }

  /** A worker reports a failed call. */
  taskFailed(workerId: string, msg: TaskFailed): void {
    const r = this.take(msg.job_id, msg.call_id, workerId, msg.assignment);
    if (r !== undefined) this.observed(r.job, msg.observations);
    if (r === undefined || r.job.state !== 'running') return;
    this.failCall(r, errorFromProto(msg.error!));
    this.schedule();
  }

  /**
   * What task code recorded during a call, into the job's summary and metrics. Values come from
   * workers and are checked here: a non-finite number (or one that would make a total
   * non-finite), an empty or overlong name is dropped, and a param's text is cut short.
   */
  private observed(job: Job, list: readonly { kind: string; name: string; value: number; text: string }[]): void {
    for (const o of list) {
      const kind = o.kind;
      if (kind !== 'param' && kind !== 'observe' && kind !== 'increment') continue;
      const value = kind === 'param' ? o.text.slice(0, MAX_PARAM_TEXT_LENGTH) : o.value;
      const ok = o.name !== '' && o.name.length <= MAX_OBSERVATION_NAME_LENGTH && job.recordObservation(kind, o.name, value);
      if (ok) this.metrics.observation(job.id, kind, o.name, value);
      else if (job.droppedObservations++ === 0) {
        job.log.warn(
          { name: o.name.slice(0, 80), kind, value: String(value).slice(0, 40) },
          'observation dropped: a name must be 1-200 characters and a value finite (later drops are not logged)',
        );
      }
    }
  }

  /**
   * A worker is gone: the batches only it held are recomputed where something still needs
   * them, and its running calls, and calls elsewhere reading from it, run again.
   */
  workerGone(workerId: string): void {
    this.metrics.workerLost();
    for (const job of [...this.jobs]) {
      if (job.sourceWorkerId === workerId && job.state === 'running' && !job.scheduler.sourceExhausted) {
        job.fail(
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
    this.schedule();
  }

  private take(jobId: string, callId: string, workerId: string, assignment: string): RunningCall | undefined {
    const k = key(jobId, callId);
    const r = this.running.get(k);
    if (r === undefined || r.workerId !== workerId || String(r.assignment) !== assignment) return undefined;
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
    if (lease.inFlight === 0 && lease.job.state !== 'running') this.closeIdle(lease.slots);
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
      job.fail(new DplError(DplErrorCode.WORKER_LOST, `${why}; ${call.id} was interrupted ${n} times in a row, giving up`));
      return;
    }
    job.log.warn({ task: call.task, batchId: call.id, why }, 'call interrupted; it runs again');
    this.metrics.call(job.id, call.task, 'interrupted');
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
      const delay = retryDelayMs(this.interruptions.get(key(job.id, call.id)) ?? 1, RETRY_BACKOFF_MS);
      setTimeout(() => {
        this.interrupt(r, err.message);
        this.schedule();
      }, delay);
      return;
    }
    if (r.recompute !== undefined) {
      const node = r.recompute;
      const maxAttempts = job.graph.taskMap.get(call.task)!.maxRetries + 1;
      if (node.recomputes >= maxAttempts) {
        job.fail(new DplError(err.code, `recomputing batch ${node.id} (lost with its worker) failed ${node.recomputes} times: ${err.message}`, { cause: err }));
        return;
      }
      setTimeout(() => {
        node.state = 'lost';
        this.requestRecompute(job, node);
        this.schedule();
      }, retryDelayMs(node.recomputes, RETRY_BACKOFF_MS));
      return;
    }
    if (job.scheduler.fail(call.id, err) === 'fatal') {
      this.metrics.call(job.id, call.task, 'failed');
      if (job.skipped < job.spec.max_errored_batches) {
        this.metrics.call(job.id, call.task, 'skipped');
        job.scheduler.skip(call.id);
        job.batchSkipped(call, err);
        return;
      }
      job.fail(err);
      return;
    }
    const delay = retryDelayMs(call.attempt, RETRY_BACKOFF_MS);
    this.metrics.call(job.id, call.task, 'retried');
    job.log.warn({ task: call.task, batchId: call.id, attempt: call.attempt, delayMs: delay, err: err.message }, 'call failed; retrying');
    setTimeout(() => {
      if (job.state !== 'running') return;
      job.scheduler.retry(call.id);
      this.schedule();
    }, delay);
  }
}

/** Calls a job may have running or ready at once, by the LocalExecutor's rule over the live CPUs. */
function pendingBound(registry: WorkerRegistry): number {
  return pendingCallsFor(registry.liveCpus);
}

/** The longest name of an observation task code may record. */
const MAX_OBSERVATION_NAME_LENGTH = 200;
/** The longest text of a param; longer ones are cut. */
const MAX_PARAM_TEXT_LENGTH = 1_000;

function key(jobId: string, callId: string): string {
  return `${jobId}/${callId}`;
}

const EMPTY = new Uint8Array(0);

/** Worker id → bytes of the items' objects it holds. */
function localBytes<T>(items: readonly T[], refOf: (item: T) => ObjectRef): Map<string, number> {
  const local = new Map<string, number>();
  for (const item of items) {
    const ref = refOf(item);
    if (ref.ownerId !== '') local.set(ref.ownerId, (local.get(ref.ownerId) ?? 0) + ref.bytes);
  }
  return local;
}

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

/** What every call of a job shares, for a worker that has not seen the job yet. */
function jobFacts(job: Job): JobFacts__Input {
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
      };
    }),
  };
}
