/**
 * The dispatcher: runs every job's streaming scheduler against the live workers' free
 * resources, sends the calls it places to the workers, and feeds their results back. Jobs take
 * turns (a rotating start), so several jobs share the cluster by resources.
 */
import type * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode, retryDelayMs, type Logger, type TaskCall } from '@dpl/core';
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

/** A worker session the dispatcher can write to. */
export type WorkerSession = Pick<grpc.ServerDuplexStream<unknown, ConnectWorkerResponse__Input>, 'write'>;

interface RunningCall {
  job: Job;
  call: TaskCall<ObjectRef>;
  workerId: string;
}

const RETRY_BACKOFF_MS = 100;
/** Sink outputs up to this size come back inside TaskDone (no fetch round trip). */
const INLINE_SINK_OUTPUT_MAX_BYTES = 1024 * 1024;

export class Dispatcher {
  private readonly jobs: Job[] = [];
  private readonly running = new Map<string, RunningCall>();
  private turn = 0;
  private pending = false;

  constructor(
    private readonly registry: WorkerRegistry,
    private readonly sessions: ReadonlyMap<string, WorkerSession>,
    private readonly fetcher: ObjectFetcher,
    readonly log: Logger,
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
      if (job.state === 'running') this.scheduleJob(job, now);
    }
    this.turn = n === 0 ? 0 : (this.turn + 1) % n;
  }

  private scheduleJob(job: Job, now: number): void {
    const backend = {
      placed: undefined as string | undefined,
      fits: (task: string, ctx: { inputs: readonly { data: ObjectRef; rows: number }[] }): boolean => {
        const t = job.tasks.get(task)!;
        const local = new Map<string, number>();
        for (const ref of ctx.inputs) {
          if (ref.data.ownerId !== '') local.set(ref.data.ownerId, (local.get(ref.data.ownerId) ?? 0) + ref.data.bytes);
        }
        const p = place(t.request, this.registry.workers(), local);
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
      submit: (call: TaskCall<ObjectRef>): void => this.assign(job, call, backend.placed!),
    };
    for (;;) {
      const r = job.scheduler.schedule(backend, job.allowSources);
      if (!r.wantsSourceData) break;
      if (job.spec.module_generator) {
        // The module's generator runs on a worker: ask for one batch at a time.
        if (!job.pullingSource) this.pullSource(job);
        break;
      }
      const ref = job.nextSourceBatch();
      job.scheduler.addSourceBatch(ref, 1);
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
      job.scheduler.addSourceBatch(ref, Number(msg.rows));
    }
    this.schedule();
  }

  /** Tells every worker a job is over: they drop its objects and its generator. */
  jobEnded(job: Job): void {
    for (const session of this.sessions.values()) session.write({ cancel_job: { job_id: job.id } });
  }

  private assign(job: Job, call: TaskCall<ObjectRef>, workerId: string): void {
    const worker = this.registry.get(workerId)!;
    const t = job.tasks.get(call.task)!;
    worker.available = worker.available.subtract(t.request);
    this.running.set(key(job.id, call.id), { job, call, workerId });
    this.sessions.get(workerId)!.write({
      assign: {
        call_id: call.id,
        job_id: job.id,
        module_hash: job.spec.module_hash,
        task: call.task,
        kwargs: t.kwargs,
        attempt: call.attempt,
        output_id: `${job.id}/${call.id}`,
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
      },
    });
    if (job.log.isLevelEnabled('debug')) {
      job.log.debug({ task: call.task, batchId: call.id, workerId, attempt: call.attempt }, 'call placed');
    }
  }

  /** A worker finished a call. */
  taskDone(workerId: string, msg: TaskDone): void {
    const r = this.take(msg.job_id, msg.call_id, workerId);
    const worker = this.registry.get(workerId);
    const inline = msg.output_id === '';
    if (r === undefined || r.job.state !== 'running') {
      // A stale or cancelled call: its output is not needed.
      if (!inline) this.sessions.get(workerId)?.write({ release: { object_ids: [msg.output_id] } });
      return;
    }
    const ref: ObjectRef = inline
      ? { objectId: '', ownerId: '', ownerAddress: '', inline: msg.inline_ipc, bytes: Number(msg.bytes) }
      : { objectId: msg.output_id, ownerId: workerId, ownerAddress: worker?.address ?? '', inline: undefined, bytes: Number(msg.bytes) };
    const out = r.job.scheduler.complete(r.call.id, { rows: Number(msg.rows), data: ref });
    if (out !== undefined) r.job.deliver(out);
    this.schedule();
  }

  /** A worker reports a failed call. */
  taskFailed(workerId: string, msg: TaskFailed): void {
    const r = this.take(msg.job_id, msg.call_id, workerId);
    if (r === undefined || r.job.state !== 'running') return;
    this.failCall(r, errorFromProto(msg.error!));
    this.schedule();
  }

  /** A worker is gone: its running calls are lost and run again elsewhere. */
  workerGone(workerId: string): void {
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
      if (r.workerId !== workerId) continue;
      this.running.delete(k);
      this.failCall(r, new DplError(DplErrorCode.WORKER_LOST, `worker ${workerId} was lost while running ${r.call.id}`));
    }
    this.schedule();
  }

  private take(jobId: string, callId: string, workerId: string): RunningCall | undefined {
    const k = key(jobId, callId);
    const r = this.running.get(k);
    if (r === undefined || r.workerId !== workerId) return undefined;
    this.running.delete(k);
    const worker = this.registry.get(workerId);
    if (worker !== undefined) worker.available = worker.available.add(r.job.tasks.get(r.call.task)!.request);
    return r;
  }

  private failCall(r: RunningCall, err: DplError): void {
    const { job, call } = r;
    if (err.code === DplErrorCode.OBJECT_LOST) {
      // Recomputing lost objects from lineage is not built yet: fail clearly instead of looping.
      job.fail(err);
      return;
    }
    if (job.scheduler.fail(call.id, err) === 'fatal') {
      job.fail(err);
      return;
    }
    const delay = retryDelayMs(call.attempt, RETRY_BACKOFF_MS);
    job.log.warn({ task: call.task, batchId: call.id, attempt: call.attempt, delayMs: delay, err: err.message }, 'call failed; retrying');
    setTimeout(() => {
      if (job.state !== 'running') return;
      job.scheduler.retry(call.id);
      this.schedule();
    }, delay);
  }
}

function key(jobId: string, callId: string): string {
  return `${jobId}/${callId}`;
}
