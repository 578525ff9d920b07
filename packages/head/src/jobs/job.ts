/**
 * One submitted job on the head: its graph (as the head sees it: names, resources, batch sizes),
 * its streaming scheduler, and its client stream. Outputs of sink calls are fetched from the
 * worker that made them and relayed to the client in order, with backpressure.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  DplError,
  DplErrorCode,
  InfeasibleTaskError,
  PipelineGraph,
  PipelineTask,
  StreamingScheduler,
  type Logger,
  type ResourceSet,
  type SchedulerStats,
  type SinkOutput,
} from '@dpl/core';
import {
  DEFAULT_BATCH_MAX_BYTES,
  chunksOf,
  decodeKwargs,
  type OutputChunk__Input,
  errorToProto,
  resourcesFromProto,
  type JobSpec,
  type RunJobRequest,
  type RunJobResponse__Input,
} from '@dpl/wire';
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
}

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
  /** What task code recorded: observe → last value, increment → total, param → last value. */
  observed: Record<string, number>;
  params: Record<string, string>;
}

/** Distinct observation names a job keeps for its summary. */
const MAX_OBSERVED_NAMES = 200;

export type JobCall = grpc.ServerDuplexStream<RunJobRequest, RunJobResponse__Input>;
export type JobState = 'running' | 'finished' | 'failed' | 'cancelled';

/** A placeholder for task functions: on the head a task is a description; it runs on workers. */
function runsOnWorkers(): never {
  throw new DplError(DplErrorCode.INTERNAL, 'task functions run on workers, not on the head');
}

/**
 * Builds the head's view of a job from its spec.
 * @throws DplError(VALIDATION) when the spec describes no valid graph.
 */
export function graphOfSpec(spec: JobSpec): { graph: PipelineGraph; tasks: Map<string, JobTask> } {
  try {
    const tasks = new Map<string, PipelineTask>();
    const jobTasks = new Map<string, JobTask>();
    for (const t of spec.tasks) {
      const resources = resourcesFromProto(t.resources);
      const task = new PipelineTask(t.name, runsOnWorkers, {
        numCpus: t.num_cpus,
        numGpus: t.num_gpus,
        resources,
        batchSize: t.batch_size === 0 ? undefined : t.batch_size,
        maxRetries: t.max_retries,
        timeoutMs: t.timeout_ms === 0 ? undefined : t.timeout_ms,
      });
      tasks.set(t.name, task);
      jobTasks.set(t.name, { name: t.name, request: task.request(), numGpus: t.num_gpus, kwargs: t.kwargs });
      decodeKwargs(t.kwargs); // fails now, not on a worker, when they are corrupt
    }
    const node = (name: string): PipelineTask => {
      const t = tasks.get(name);
      if (t === undefined) throw new TypeError(`edge names unknown task ${JSON.stringify(name)}`);
      return t;
    };
    const graph =
      spec.edges.length === 0
        ? new PipelineGraph([...tasks.values()])
        : new PipelineGraph(spec.edges.map((e) => [node(e.from), node(e.to)] as const));
    if (graph.tasks.length !== tasks.size) throw new TypeError('every task must be on an edge when the graph has edges');
    return { graph, tasks: jobTasks };
  } catch (e) {
    throw new DplError(DplErrorCode.VALIDATION, `invalid job: ${(e as Error).message}`, { cause: e });
  }
}

export interface JobHooks {
  /** Fetches an object's bytes from its owner. */
  fetch(ref: ObjectRef): Promise<Uint8Array>;
  /** Tells the owner to drop an object. */
  release(ref: ObjectRef): void;
  /** Asks the dispatcher to schedule again (a slot opened, the client drained). */
  wake(): void;
  /** The job is over (any state). */
  ended(job: Job): void;
  /** An output went to the client. */
  delivered(job: Job, rows: number): void;
}

/** How often the client hears where its job is (when that changed). */
const PROGRESS_INTERVAL_MS = 500;

/** How often a delivery retries fetching an output whose owner seems alive but does not answer. */
const DELIVERY_FETCH_TRIES = 20;

export class Job {
  readonly scheduler: StreamingScheduler<ObjectRef>;
  /** Which task made each needed batch from what, to recompute what a dead worker held. */
  readonly lineage: Lineage;
  /** Lost batches waiting to be recomputed (placed when their inputs are ready). */
  readonly recomputeQueue: LineageNode[] = [];
  state: JobState = 'running';
  /** Sink outputs waiting to be relayed, in completion order. */
  private readonly deliveries: SinkOutput<ObjectRef>[] = [];
  private delivering = false;
  private clientBlocked = false;
  private outputs = 0;
  private rows = 0;
  /** Why it failed, once it has. */
  error: { message: string; stack: string } | undefined;
  endedAtMs: number | undefined;
  /** The default `{ run_id, id }` source, the same one the LocalExecutor uses, encoded. */
  private readonly source: (n: bigint) => Uint8Array;
  private sourceId = 0n;
  /** Task → when it was first found infeasible. */
  readonly infeasibleSince = new Map<string, { sinceMs: number; shortfall: string }>();
  readonly startedAtMs = Date.now();
  /** With a module generator: the worker running it, and whether a pull is under way. */
  sourceWorkerId: string | undefined;
  pullingSource = false;
  sourceSeq = 0;

  constructor(
    readonly id: string,
    readonly spec: JobSpec,
    readonly graph: PipelineGraph,
    readonly tasks: ReadonlyMap<string, JobTask>,
    private readonly call: JobCall,
    private readonly hooks: JobHooks,
    readonly log: Logger,
  ) {
    const maxBatches = Number(spec.max_batches);
    this.lineage = new Lineage((ref) => hooks.release(ref));
    this.scheduler = new StreamingScheduler<ObjectRef>(graph, {
      maxBatches: maxBatches < 0 ? undefined : maxBatches,
      onRelease: (ref) => {
        // Untracked: an empty batch, or a duplicate output of a call.
        if (!this.lineage.unneeded(ref.id, ref.data) && ref.data.objectId !== '') hooks.release(ref.data);
      },
    });
    this.source = defaultSourceIpc(spec.run_id);
    call.on('drain', () => {
      this.clientBlocked = false;
      hooks.wake();
    });
    this.progressTimer = setInterval(() => this.sendProgress(), PROGRESS_INTERVAL_MS);
    this.progressTimer.unref();
  }

  /** Whether sources may run: the client keeps up. */
  get allowSources(): boolean {
    return !this.clientBlocked && this.deliveries.length < 8;
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
   * Queues a sink output for the client. Outputs that complete in the same turn of the event
   * loop leave in one message.
   */
  deliver(out: SinkOutput<ObjectRef>): void {
    this.deliveries.push(out);
    if (this.pumpScheduled || this.delivering) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.pumpDeliveries(); // failures end the job inside
    });
  }

  private pumpScheduled = false;

  /** Ends the job when nothing is left to run or deliver. */
  checkDone(): void {
    if (this.state === 'running' && this.scheduler.isDone() && this.deliveries.length === 0 && !this.delivering && !this.pumpScheduled) {
      this.state = 'finished';
      this.endedAtMs = Date.now();
      this.write({ finished: { outputs: String(this.outputs), rows: String(this.rows) } });
      this.call.end();
      this.log.info({ outputs: this.outputs, rows: this.rows }, 'job finished');
      this.hooks.ended(this);
    }
  }

  /** Fails the job: the client gets the error, the stream ends. */
  fail(err: DplError): void {
    if (this.state !== 'running') return;
    this.state = 'failed';
    this.endedAtMs = Date.now();
    this.error = { message: err.message, stack: (err as { remoteStack?: string }).remoteStack ?? '' };
    this.log.warn({ err: err.message }, 'job failed');
    this.write({ failed: errorToProto(err) });
    this.call.end();
    this.hooks.ended(this);
  }

  /** The client went away. */
  cancel(): void {
    if (this.state !== 'running') return;
    this.state = 'cancelled';
    this.endedAtMs = Date.now();
    this.log.info('job cancelled by its client');
    this.hooks.ended(this);
  }

  private readonly progressTimer: NodeJS.Timeout;
  private lastProgress = '';

  /** Tells the client where the job is, when that changed. */
  private sendProgress(): void {
    if (this.state !== 'running') {
      clearInterval(this.progressTimer);
      return;
    }
    const tasks = Object.entries(this.scheduler.stats().tasks).map(([name, t]) => ({
      name,
      running: t.running,
      queued_rows: String(t.queuedRows),
      calls: String(t.calls),
      rows_in: String(t.rowsIn),
      rows_out: String(t.rowsOut),
      retries: t.retries,
      skipped: t.skipped,
      empty_outputs: String(t.emptyOutputs),
    }));
    const text = JSON.stringify(tasks);
    if (text === this.lastProgress) return;
    this.lastProgress = text;
    this.write({ progress: { tasks } });
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
      tasks: this.scheduler.stats().tasks,
      error: this.error,
      observed: Object.fromEntries(this.observedValues),
      params: Object.fromEntries(this.paramValues),
    };
  }

  private readonly observedValues = new Map<string, number>();
  private readonly paramValues = new Map<string, string>();

  /** Observations refused (non-finite, badly named, or past the names kept). */
  droppedObservations = 0;

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

  /** Batches skipped so far under max_errored_batches. */
  skipped = 0;

  /** A batch given up on after its retries: the client hears of it, the job goes on. */
  batchSkipped(call: { id: string; task: string; inputs: readonly { ref: { id: string } }[] }, err: DplError): void {
    this.skipped++;
    this.log.warn({ task: call.task, batchId: call.id, err: err.message }, 'batch skipped after its retries (maxErroredBatches)');
    this.write({
      skipped: { batch_id: call.id, task: call.task, inputs: [...new Set(call.inputs.map((s) => s.ref.id))], error: errorToProto(err) },
    });
  }

  /** Tells the client once that a task waits for resources no worker has. */
  notice(message: string): void {
    this.write({ notice: { message } });
  }

  /** Fails the job when a task has been infeasible for longer than the spec allows. */
  checkInfeasible(now: number): void {
    for (const [task, { sinceMs, shortfall }] of this.infeasibleSince) {
      if (now - sinceMs >= this.spec.infeasible_timeout_ms) {
        const t = this.tasks.get(task)!;
        this.fail(
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
  }

  private write(msg: RunJobResponse__Input): boolean {
    if (this.call.cancelled || this.call.writableEnded) return true;
    const ok = this.call.write(msg);
    if (!ok) this.clientBlocked = true;
    return ok;
  }

  /**
   * A sink output's bytes from the worker that holds them. When that worker dies meanwhile,
   * waits for the output to be recomputed elsewhere.
   */
  private async fetchOutput(out: SinkOutput<ObjectRef>): Promise<Uint8Array> {
    for (let tries = 1; ; tries++) {
      const node = this.lineage.get(out.id);
      if (node !== undefined && node.state !== 'ready') {
        await new Promise<void>((r) => node.waiters.push(r));
        if (this.state !== 'running') return new Uint8Array(0);
      }
      if (out.ref.data.inline !== undefined) return out.ref.data.inline;
      try {
        return await this.hooks.fetch(out.ref.data);
      } catch (e) {
        // The owner may be dying: its loss (and the recompute) is then on its way.
        if (tries >= DELIVERY_FETCH_TRIES || this.state !== 'running') throw e;
        await new Promise((r) => setTimeout(r, 100 * Math.min(tries, 10)));
      }
    }
  }

  private async pumpDeliveries(): Promise<void> {
    if (this.delivering) return;
    this.delivering = true;
    let batch: OutputChunk__Input[] = [];
    let bytes = 0;
    const send = (): void => {
      if (batch.length === 0) return;
      this.write({ outputs: { chunks: batch } });
      batch = [];
      bytes = 0;
    };
    try {
      while (this.deliveries.length > 0 && this.state === 'running') {
        const out = this.deliveries[0]!;
        if (out.ref.data.inline === undefined) send(); // what is ready leaves before a fetch
        const data = out.ref.data.inline ?? (await this.fetchOutput(out));
        if (this.state !== 'running') break;
        const chunks = [...chunksOf(data)];
        chunks.forEach((chunk, i) => {
          if (bytes + chunk.byteLength > DEFAULT_BATCH_MAX_BYTES) send();
          batch.push({ batch_id: out.id, task: out.task, chunk, last: i === chunks.length - 1 });
          bytes += chunk.byteLength + out.id.length + out.task.length + 16;
        });
        this.deliveries.shift();
        this.outputs++;
        this.rows += out.ref.rows;
        this.hooks.delivered(this, out.ref.rows);
        if (!this.lineage.unneeded(out.id, out.ref.data) && out.ref.data.objectId !== '') this.hooks.release(out.ref.data);
        if (this.clientBlocked) {
          send();
          await new Promise<void>((r) => this.call.once('drain', () => r()));
        }
      }
      send();
    } catch (e) {
      this.fail(
        new DplError(DplErrorCode.OBJECT_LOST, `cannot deliver an output of the job: ${(e as Error).message}`, { cause: e }),
      );
    } finally {
      this.delivering = false;
    }
    this.hooks.wake();
  }
}
