/**
 * The dispatcher: runs every job's streaming scheduler against the live workers' free
 * resources, sends the calls it places to the workers, and feeds their results back. Jobs take
 * turns (a rotating start), so several jobs share the cluster by resources.
 */
import type * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode, ensureError, pendingCallsFor, retryDelayMs, type Logger, type TaskCall } from '@dpl/core';
import {
  errorFromProto,
  type ConnectWorkerResponse__Input,
  type ObjectFetcher,
  type TaskDone,
  type SourceBatch,
  type TaskFailed,
} from '@dpl/wire';
import { place } from '../placement/placement';
import type { WorkerRegistry } from '../registry/worker-registry';
import type { Job, ObjectRef } from './job';
import type { LineageNode } from './lineage';
import type { HeadMetrics } from '../metrics/metrics';

/** A worker session the dispatcher can write to. */
export type WorkerSession = Pick<grpc.ServerDuplexStream<unknown, ConnectWorkerResponse__Input>, 'write'>;

interface RunningCall {
  job: Job;
  call: TaskCall<ObjectRef>;
  workerId: string;
  /** The assignment's number: an answer must carry it. */
  assignment: number;
  /** Set for a call that recomputes a lost batch (not the scheduler's). */
  recompute: LineageNode | undefined;
}

const RETRY_BACKOFF_MS = 100;
/** A call whose input keeps being lost this many times in a row fails the job. */
const MAX_INTERRUPTIONS = 10;
/** Sink outputs up to this size come back inside TaskDone (no fetch round trip). */
const INLINE_SINK_OUTPUT_MAX_BYTES = 1024 * 1024;

export class Dispatcher {
  private readonly jobs: Job[] = [];
  private readonly running = new Map<string, RunningCall>();
  /** Times each call was taken back because an input or its worker was lost. */
  private readonly interruptions = new Map<string, number>();
  private assignments = 0;
  /** Rotates where placement's least-loaded sample starts. */
  private placeTurn = 0;
  private turn = 0;
  private pending = false;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly sessions: ReadonlyMap<string, WorkerSession>,
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
    this.sessions.get(ref.ownerId)?.write({ release: { object_ids: [ref.objectId] } });
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
    const backend = {
      placed: undefined as string | undefined,
      fits: (task: string, ctx: { inputs: readonly { id: string; data: ObjectRef; rows: number }[] }): boolean => {
        // An input lost with its worker waits for its recompute.
        if (!ctx.inputs.every((i) => job.lineage.isReady(i.id))) return false;
        const t = job.tasks.get(task)!;
        const local = new Map<string, number>();
        for (const ref of ctx.inputs) {
          if (ref.data.ownerId !== '') local.set(ref.data.ownerId, (local.get(ref.data.ownerId) ?? 0) + ref.data.bytes);
        }
        const t0 = performance.now();
        const p = place(t.request, this.registry.workers(), local, { byId: (id) => this.registry.get(id), start: this.placeTurn++ });
        this.metrics.placementLatency.observe((performance.now() - t0) / 1000);
        if (p.kind === 'placed') {
          backend.placed = p.workerId;
          job.infeasibleSince.delete(task);
          return true;
        }
        if (p.kind === 'infeasible' && !job.infeasibleSince.has(task)) {
          job.infeasibleSince.set(task, { sinceMs: now, shortfall: p.shortfall });
          const message =
            `task ${JSON.stringify(task)} needs ${t.request.toString()}; no live worker can fit it: ${p.shortfall}; ` +
            `waiting for one to join (fails after ${job.spec.infeasible_timeout_ms / 1000} s)`;
          job.log.warn({ task, request: t.request.toJSON(), shortfall: p.shortfall }, 'task waits: no live worker can fit it');
          job.notice(message);
        } else if (p.kind === 'wait') {
          job.infeasibleSince.delete(task);
        }
        return false;
      },
      submit: (call: TaskCall<ObjectRef>): void => this.assign(job, call, backend.placed!, undefined),
    };
    this.placeRecomputes(job);
    if (job.state !== 'running') return;
    // Work waiting in the job stays bounded, in proportion to what the cluster can run at once.
    job.scheduler.setMaxPendingCalls(pendingBound(this.registry));
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
    job.checkInfeasible(now);
    job.checkDone();
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
    const session = this.sessions.get(job.sourceWorkerId);
    if (session === undefined) return;
    job.pullingSource = true;
    session.write({ pull_source: { job_id: job.id, module_hash: job.spec.module_hash, seq: String(job.sourceSeq++) } });
  }

  /** A worker answered a pull of a job's generator. */
  sourceBatch(workerId: string, msg: SourceBatch): void {
    const job = this.jobs.find((j) => j.id === msg.job_id);
    if (job === undefined || job.state !== 'running' || job.sourceWorkerId !== workerId) {
      if (msg.object_id !== '') this.sessions.get(workerId)?.write({ release: { object_ids: [msg.object_id] } });
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
    for (const session of this.sessions.values()) session.write({ cancel_job: { job_id: job.id } });
  }

  private assign(job: Job, call: TaskCall<ObjectRef>, workerId: string, recompute: LineageNode | undefined): void {
    const worker = this.registry.get(workerId)!;
    const t = job.tasks.get(call.task)!;
    this.registry.take(worker, t.request);
    const assignment = ++this.assignments;
    this.running.set(key(job.id, call.id), { job, call, workerId, assignment, recompute });
    this.sessions.get(workerId)!.write({
      assign: {
        call_id: call.id,
        job_id: job.id,
        module_hash: job.spec.module_hash,
        task: call.task,
        kwargs: t.kwargs,
        attempt: call.attempt,
        // Unique per assignment: a late answer of an earlier one never overwrites this one's.
        output_id: `${job.id}/${call.id}~${assignment}`,
        num_gpus: t.numGpus,
        inline_output_max_bytes: job.graph.successors(call.task).length === 0 ? INLINE_SINK_OUTPUT_MAX_BYTES : 0,
        max_attempts: job.graph.taskMap.get(call.task)!.maxRetries + 1,
        input_ids: [...new Set(call.inputs.map((s) => s.ref.id))],
        inputs: call.inputs.map((s) => ({
          object_id: s.ref.data.objectId,
          owner_address: s.ref.data.ownerAddress,
          offset: String(s.offset),
          rows: String(s.rows),
          inline_ipc: s.ref.data.inline ?? new Uint8Array(0),
        })),
        assignment: String(assignment),
        timeout_ms: job.graph.taskMap.get(call.task)!.timeoutMs ?? 0,
      },
    });
    if (job.log.isLevelEnabled('debug')) {
      job.log.debug({ task: call.task, batchId: call.id, workerId, attempt: call.attempt, recompute: recompute !== undefined }, 'call placed');
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
      const local = new Map<string, number>();
      for (const i of node.inputs) {
        if (i.node.ref.ownerId !== '') local.set(i.node.ref.ownerId, (local.get(i.node.ref.ownerId) ?? 0) + i.node.ref.bytes);
      }
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
      this.assign(job, call, p.workerId, node);
    }
  }

  /** A worker finished a call. */
  taskDone(workerId: string, msg: TaskDone): void {
    const r = this.take(msg.job_id, msg.call_id, workerId, msg.assignment);
    if (r !== undefined) this.observed(r.job, msg.observations);
    const worker = this.registry.get(workerId);
    const inline = msg.output_id === '';
    if (r === undefined || r.job.state !== 'running') {
      // A stale or cancelled call: its output is not needed.
      if (!inline) this.sessions.get(workerId)?.write({ release: { object_ids: [msg.output_id] } });
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
      if (r.workerId !== workerId) this.giveBack(r);
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

  /** Returns a call's resources to its worker. */
  private giveBack(r: RunningCall): void {
    const worker = this.registry.get(r.workerId);
    if (worker !== undefined) this.registry.giveBack(worker, r.job.tasks.get(r.call.task)!.request);
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
