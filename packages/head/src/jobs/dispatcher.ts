/**
 * The dispatcher: the shell around the {@link JobEngine}. It turns what happens on the head's
 * streams and clock into the engine's events, and runs the commands the engine returns — calls
 * and releases over the worker links, outputs and notices over the jobs' client streams, a
 * scheduling pass once per turn of the event loop, a timer for the engine's next wake-up.
 */
import type { DplError, Logger, OutputFiles } from '@dpl/core';
import type { ObjectFetcher, SourceBatch, TaskDone, TaskFailed, TaskOutput } from '@dpl/wire';
import type { WorkerRegistry } from '../registry/worker-registry';
import type { HeadMetrics } from '../metrics/metrics';
import { JobEngine, taggedOutputLines, type EngineCommand, type EngineJob, type JobSummary, type NewJob, type ObjectRef } from './engine';
import { JobStream, type JobCall } from './job';
import type { WorkerLink } from './worker-link';

/** A job to start, for {@link Dispatcher.start}: the engine's view of it and its client stream. */
export interface StartJob extends NewJob {
  call: JobCall;
  /** A detached job's: where the head writes its outputs. */
  files?: OutputFiles;
}

export interface DispatcherHooks {
  /** A job ended (any state). */
  ended?(summary: JobSummary): void;
  /** An output went to a job's client. */
  delivered?(jobId: string, rows: number): void;
}

export class Dispatcher {
  readonly engine: JobEngine;
  private readonly streams = new Map<string, JobStream>();
  /** Who follows each job's task output (dpl job logs --follow). */
  private readonly followers = new Map<string, Set<{ onLines(lines: string[]): void; onEnd(): void }>>();
  private pending = false;
  private wake: { atMs: number; timer: NodeJS.Timeout } | undefined;

  constructor(
    registry: WorkerRegistry,
    private readonly links: ReadonlyMap<string, WorkerLink>,
    private readonly fetcher: ObjectFetcher,
    readonly log: Logger,
    private readonly metrics: HeadMetrics,
    private readonly hooks: DispatcherHooks = {},
  ) {
    this.engine = new JobEngine({
      registry,
      clock: Date.now,
      log,
      observer: {
        call: (job, task, outcome, rows) => metrics.call(job, task, outcome, rows),
        observation: (job, kind, name, value) => metrics.observation(job, kind, name, value),
        placed: (seconds) => metrics.placementLatency.observe(seconds),
        workerLost: () => metrics.workerLost(),
      },
    });
  }

  /** The running jobs. */
  get jobList(): readonly EngineJob[] {
    return this.engine.jobList;
  }

  /** Bytes the head fetched from workers (only sink outputs on their way to clients). */
  get bytesFetched(): number {
    return this.fetcher.bytesFetched;
  }

  /** Starts a job whose client stream is `call`. */
  start(j: StartJob): void {
    const stream = new JobStream(j.id, j.call, {
      fetch: (ref: ObjectRef) => this.fetcher.fetch(ref.ownerAddress, ref.objectId),
      delivered: (batchId, rows) => {
        this.metrics.output(j.id, rows);
        this.hooks.delivered?.(j.id, rows);
        this.run(this.engine.delivered(j.id, batchId));
      },
      deliveryFailed: (batchId, tries, why) => this.run(this.engine.deliveryFailed(j.id, batchId, tries, why)),
      blocked: (blocked) => this.run(this.engine.clientBlocked(j.id, blocked)),
      progress: () => this.engine.job(j.id)?.stats().tasks,
      writeFailed: (err) => this.fail(j.id, err),
    }, j.files, j.spec.detached && j.files === undefined);
    this.streams.set(j.id, stream);
    this.run(this.engine.addJob(j));
  }

  /**
   * Follows what a job's tasks print: `onLines` gets each new line (`(task=T worker=W) line`),
   * `onEnd` once the job ends. Returns the function that stops following.
   */
  followOutput(jobId: string, onLines: (lines: string[]) => void, onEnd: () => void): () => void {
    const f = { onLines, onEnd };
    let set = this.followers.get(jobId);
    if (set === undefined) this.followers.set(jobId, (set = new Set()));
    set.add(f);
    return () => {
      set.delete(f);
      if (set.size === 0 && this.followers.get(jobId) === set) this.followers.delete(jobId);
    };
  }

  /**
   * A client takes the output stream of a detached job that holds its outputs.
   * @throws Error naming the job when there is no such job, it does not hold its outputs, or
   *   another client is attached.
   */
  attach(jobId: string, call: JobCall, have: readonly string[]): void {
    const stream = this.streams.get(jobId);
    if (stream === undefined) throw new Error(`no running job ${JSON.stringify(jobId)} on this head; dpl job list shows its jobs`);
    stream.attach(call, have);
  }

  /** The attached client left (or failed). */
  detach(jobId: string, call: JobCall): void {
    this.streams.get(jobId)?.detach(call);
  }

  /** The attached client took these batches. */
  ack(jobId: string, batchIds: readonly string[]): void {
    this.streams.get(jobId)?.ack(batchIds);
  }

  /** The client went away. */
  cancel(jobId: string): void {
    this.run(this.engine.cancel(jobId));
  }

  /** Fails a running job (the head is stopping). */
  fail(jobId: string, err: DplError): void {
    this.run(this.engine.fail(jobId, err));
  }

  /** Asks for a scheduling pass (a worker joined or changed; the clock moved). */
  schedule(): void {
    this.run(this.engine.workerChanged());
  }

  taskDone(workerId: string, msg: TaskDone): void {
    this.run(this.engine.callDone(workerId, msg));
  }

  taskFailed(workerId: string, msg: TaskFailed): void {
    this.run(this.engine.callFailed(workerId, msg));
  }

  /** A worker asked to leave (the registry drains it already). */
  workerLeaving(workerId: string): void {
    this.run(this.engine.workerLeaving(workerId));
  }

  /** A worker keeps objects a leaving worker held. */
  objectsKept(workerId: string, kept: readonly string[], failed: readonly string[], error: string): void {
    this.run(this.engine.objectsKept(workerId, kept, failed, error));
  }

  taskOutput(workerId: string, msg: TaskOutput): void {
    this.run(this.engine.taskOutput(workerId, msg));
  }

  sourceBatch(workerId: string, msg: SourceBatch): void {
    this.run(this.engine.sourceBatch(workerId, msg));
  }

  /** A worker is gone (marked dead in the registry, its link dropped). */
  workerGone(workerId: string): void {
    this.run(this.engine.workerLost(workerId));
  }

  /** Fails every running job and stops the clock (the head is stopping). */
  stop(err: DplError): void {
    for (const job of [...this.engine.jobList]) this.fail(job.id, err);
    if (this.wake !== undefined) clearTimeout(this.wake.timer);
    this.wake = undefined;
  }

  /** Runs the engine's commands. */
  private run(commands: readonly EngineCommand[]): void {
    for (const c of commands) {
      switch (c.kind) {
        case 'assign':
          this.links.get(c.workerId)?.assign(c.jobId, () => this.engine.jobFacts(c.jobId), c.call, c.inlineBytes);
          break;
        case 'release':
          this.links.get(c.workerId)?.release(c.objectId);
          break;
        case 'pullSource':
          this.links.get(c.workerId)?.send({ pull_source: { job_id: c.jobId, module_hash: c.moduleHash, seq: String(c.seq) } });
          break;
        case 'deliver':
          this.streams.get(c.jobId)?.deliver(c.output, c.tries);
          break;
        case 'output': {
          if (c.toClient) this.streams.get(c.jobId)?.taskOutput(c.output);
          const following = this.followers.get(c.jobId);
          if (following !== undefined) {
            const lines = taggedOutputLines(c.output.worker_id, c.output);
            for (const f of following) f.onLines(lines);
          }
          break;
        }
        case 'notice':
          this.streams.get(c.jobId)?.notice(c.message);
          break;
        case 'skipped':
          this.streams.get(c.jobId)?.skipped(c.batchId, c.task, c.inputs, c.error);
          break;
        case 'ended':
          this.ended(c);
          break;
        case 'schedule':
          this.passSoon();
          break;
        case 'wake':
          this.wakeAt(c.atMs);
          break;
        case 'keepObjects':
          this.links.get(c.workerId)?.send({ keep_objects: { from_address: c.fromAddress, object_ids: c.objectIds } });
          break;
        case 'leaveReady':
          this.log.info({ workerId: c.workerId, moved: c.moved }, 'a leaving worker may go: what it held is elsewhere');
          this.links.get(c.workerId)?.send({ leave_ready: { moved: String(c.moved) } });
          break;
      }
    }
  }

  private ended(c: Extract<EngineCommand, { kind: 'ended' }>): void {
    const following = this.followers.get(c.jobId);
    this.followers.delete(c.jobId);
    for (const f of following ?? []) f.onEnd();
    const stream = this.streams.get(c.jobId);
    this.streams.delete(c.jobId);
    stream?.end(c.state, c.error, c.summary);
    // Every worker drops the job's objects and facts (after the calls it was sent).
    for (const link of this.links.values()) link.jobEnded(c.jobId);
    this.metrics.jobEnded(c.jobId, c.state);
    this.hooks.ended?.(c.summary);
  }

  /**
   * One pass per turn of the event loop: completions arrive in bursts (many answers per network
   * read), and one pass over all of them costs far less than a pass per answer.
   */
  private passSoon(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.run(this.engine.pass());
    });
  }

  /** Keeps one timer armed, for the engine's earliest wake-up. */
  private wakeAt(atMs: number): void {
    if (this.wake !== undefined && this.wake.atMs <= atMs && this.wake.atMs >= Date.now()) return;
    if (this.wake !== undefined) clearTimeout(this.wake.timer);
    const timer = setTimeout(() => {
      this.wake = undefined;
      this.run(this.engine.tick());
    }, Math.max(0, atMs - Date.now()));
    this.wake = { atMs, timer };
  }
}
