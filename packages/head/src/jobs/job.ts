/**
 * A submitted job's spec as the head reads it, and the shell around its client stream: what the
 * job engine decides for the client (outputs, notices, skipped batches, the end) is written here,
 * outputs fetched from the workers that hold them and relayed in order, with backpressure.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  DplError,
  DplErrorCode,
  PipelineGraph,
  PipelineTask,
  KWARG_DEPTH_RULE,
  ipcStreamProblem,
  EncodedOutputBatch,
  ensureError,
  type OutputFiles,
  nestsDeeperThan,
  type SchedulerStats,
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
  type TaskOutput,
} from '@dpl/wire';
import type { Delivery, JobTask, ObjectRef } from './engine';
import { fuseChains } from './fusion';

export type { Delivery, JobState, JobSummary, JobTask, ObjectRef } from './engine';

export type JobCall = grpc.ServerDuplexStream<RunJobRequest, RunJobResponse__Input>;

/** A placeholder for task functions: on the head a task is a description; it runs on workers. */
function runsOnWorkers(): never {
  throw new DplError(DplErrorCode.INTERNAL, 'task functions run on workers, not on the head');
}

/** A job's graph as the head schedules it. */
export interface JobGraph {
  /** The graph of calls: with fusion, each fused chain is one task named after its last. */
  graph: PipelineGraph;
  tasks: Map<string, JobTask>;
  /** A fused task → the tasks it runs, in order. */
  chains: Map<string, readonly string[]>;
  /** Every task as submitted. */
  taskNames: string[];
}

/**
 * Builds the head's view of a job from its spec, fusing chains of compatible tasks unless
 * `fuse` is false (see fusion.ts).
 * @throws DplError(VALIDATION) when the spec describes no valid graph.
 */
export function graphOfSpec(spec: JobSpec, { fuse = true }: { fuse?: boolean } = {}): JobGraph {
  const { graph, tasks } = unfusedGraphOfSpec(spec);
  const taskNames = graph.tasks.map((t) => t.name);
  if (!fuse) return { graph, tasks, chains: new Map(), taskNames };
  return { ...fuseChains(graph, tasks, runsOnWorkers), taskNames };
}

function unfusedGraphOfSpec(spec: JobSpec): { graph: PipelineGraph; tasks: Map<string, JobTask> } {
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
      // Fails now, not on a worker, when they are corrupt or nest deeper than executors take.
      for (const [k, v] of Object.entries(decodeKwargs(t.kwargs))) {
        if (nestsDeeperThan(v)) throw new TypeError(`kwarg ${JSON.stringify(k)} of task ${JSON.stringify(t.name)} ${KWARG_DEPTH_RULE}`);
      }
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

export interface JobStreamHooks {
  /** Fetches an object's bytes from its owner. */
  fetch(ref: ObjectRef): Promise<Uint8Array>;
  /** An output went to the client. */
  delivered(batchId: string, rows: number): void;
  /** An output's bytes could not be fetched (after `tries` tries). */
  deliveryFailed(batchId: string, tries: number, why: string): void;
  /** The client's stream filled up (true) or drained (false). */
  blocked(blocked: boolean): void;
  /** Where the job's tasks are, for the progress the client sees (undefined once it ended). */
  progress(): SchedulerStats['tasks'] | undefined;
  /** Writing a detached job's output failed: the job fails with this. */
  writeFailed?(err: DplError): void;
}


/** Outputs of a detached job waiting to be written before the job waits for them. */
const FILES_QUEUED_MAX = 16;

/** How often the client hears where its job is (when that changed). */
const PROGRESS_INTERVAL_MS = 500;

/**
 * The head's side of one job's client stream. Outputs leave in completion order; those that are
 * ready in the same turn of the event loop leave in one message.
 */
export class JobStream {
  private readonly queue: { output: Delivery; tries: number }[] = [];
  private pumping = false;
  private pumpScheduled = false;
  private ended = false;
  private readonly progressTimer: NodeJS.Timeout;
  private lastProgress = '';
  /** The client's stream is full: wait for its 'drain'. */
  private blocked = false;
  /** Task output for the client, sent at the end of the turn. */
  private output: TaskOutput[] = [];
  private outputChars = 0;
  /** Task output left out while the client's stream was full, told with the next lines. */
  private droppedLines = 0;
  private droppedBytes = 0;


  /** The client's stream; undefined while a holding job has no client attached. */
  private call: JobCall | undefined;
  /** A holding job's outputs sent to its attached client and not yet acknowledged. */
  private readonly unacked = new Map<string, { output: Delivery; tries: number }>();

  constructor(
    readonly jobId: string,
    call: JobCall,
    private readonly hooks: JobStreamHooks,
    /** A detached job's: its outputs are written there, not sent. */
    private readonly files?: OutputFiles,
    /**
     * A detached job without files: its outputs wait for a client to attach (AttachJob), and
     * count as delivered when that client acknowledges them.
     */
    private readonly holds = false,
  ) {
    if (!holds) this.listenTo(call);
    else {
      this.blocked = true; // no client yet
      hooks.blocked(true);
    }
    this.progressTimer = setInterval(() => {
      const stats = hooks.progress();
      if (stats !== undefined) this.sendProgress(stats);
    }, PROGRESS_INTERVAL_MS);
    this.progressTimer.unref();
  }

  private listenTo(call: JobCall): void {
    this.call = call;
    call.on('drain', () => {
      if (this.call !== call) return;
      this.blocked = false;
      this.hooks.blocked(false);
      this.schedulePump();
    });
  }

  /**
   * A client takes a holding job's output stream: what it already has (`have`) counts as
   * delivered, the rest goes to it from here.
   * @throws Error when another client is attached.
   */
  attach(call: JobCall, have: readonly string[]): void {
    if (!this.holds) throw new Error(`job ${this.jobId} streams its outputs to the client that submitted it; only a detached job without --out-dir can be attached to`);
    if (this.call !== undefined) throw new Error(`job ${this.jobId} already has a client attached; one at a time`);
    this.listenTo(call);
    const had = new Set(have);
    for (const [id, u] of [...this.unacked]) if (had.has(id)) this.ack([id], u);
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      if (!had.has(q.output.id)) continue;
      this.queue.splice(i, 1);
      this.hooks.delivered(q.output.id, q.output.ref.rows);
    }
    this.lastProgress = '';
    const stats = this.hooks.progress();
    if (stats !== undefined) this.sendProgress(stats);
    this.blocked = false;
    this.hooks.blocked(false);
    this.schedulePump();
  }

  /** The attached client left: what it did not acknowledge waits for the next one, first. */
  detach(call: JobCall): void {
    if (this.call !== call) return;
    this.call = undefined;
    this.queue.unshift(...this.unacked.values());
    this.unacked.clear();
    if (!this.blocked) {
      this.blocked = true;
      this.hooks.blocked(true);
    }
  }

  /** The attached client took these batches. */
  ack(ids: readonly string[], known?: { output: Delivery }): void {
    for (const id of ids) {
      const u = known ?? this.unacked.get(id);
      if (u === undefined) continue;
      this.unacked.delete(id);
      this.hooks.delivered(id, u.output.ref.rows);
    }
  }

  private schedulePump(): void {
    if (this.queue.length === 0 || this.pumpScheduled || this.pumping) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.pump(); // failures are reported to the engine inside
    });
  }

  /** Queues an output for the client. */
  deliver(output: Delivery, tries: number): void {
    if (this.ended) return;
    this.queue.push({ output, tries });
    // A detached job's files are written one at a time: past a few waiting, the job waits too.
    if (this.files !== undefined && this.queue.length >= FILES_QUEUED_MAX && !this.blocked) {
      this.blocked = true;
      this.hooks.blocked(true);
    }
    if (this.holds && this.call === undefined) return; // for the next client
    this.schedulePump();
  }

  notice(message: string): void {
    this.write({ notice: { message } });
  }

  /**
   * Lines a call printed, for the client. While its stream is full they are left out (and
   * counted): outputs matter more, and a task printing without end must not fill the head.
   */
  taskOutput(o: TaskOutput): void {
    if (this.ended) return;
    const chars = o.lines.reduce((n, l) => n + l.length, 0);
    if (this.blocked) {
      this.droppedLines += o.lines.length + Number(o.dropped_lines);
      this.droppedBytes += chars + o.lines.length + Number(o.dropped_bytes);
      return;
    }
    if (this.droppedLines > 0) {
      o = { ...o, dropped_lines: String(Number(o.dropped_lines) + this.droppedLines), dropped_bytes: String(Number(o.dropped_bytes) + this.droppedBytes) };
      this.droppedLines = 0;
      this.droppedBytes = 0;
    }
    if (this.output.push(o) === 1) setImmediate(() => this.flushOutput());
    this.outputChars += chars;
    // Well under gRPC's 4 MiB a message (3 bytes per character at most in UTF-8).
    if (this.outputChars > DEFAULT_BATCH_MAX_BYTES / 3) this.flushOutput();
  }

  private flushOutput(): void {
    if (this.output.length === 0 || this.ended) return;
    const output = this.output;
    this.output = [];
    this.outputChars = 0;
    this.write({ task_output: { output } });
  }

  skipped(batchId: string, task: string, inputs: string[], err: DplError): void {
    this.write({ skipped: { batch_id: batchId, task, inputs, error: errorToProto(err) } });
  }

  /**
   * The job is over: the client hears where its tasks ended and how (unless it left), the
   * stream ends.
   */
  end(state: 'finished' | 'failed' | 'cancelled', err: DplError | undefined, summary: { outputs: number; rows: number; tasks: SchedulerStats['tasks'] }): void {
    if (this.ended) return;
    clearInterval(this.progressTimer);
    this.queue.length = 0;
    this.flushOutput();
    this.sendProgress(summary.tasks);
    this.ended = true;
    const { outputs, rows } = summary;
    if (state === 'finished') this.write({ finished: { outputs: String(outputs), rows: String(rows) } });
    else if (state === 'failed') this.write({ failed: errorToProto(err ?? new DplError(DplErrorCode.INTERNAL, 'the job failed')) });
    if (this.call !== undefined && !this.call.cancelled && !this.call.writableEnded) this.call.end();
  }

  /** Tells the client where the job is, when that changed. */
  private sendProgress(stats: SchedulerStats['tasks']): void {
    if (this.ended) return;
    const tasks = Object.entries(stats).map(([name, t]) => ({
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

  private write(msg: RunJobResponse__Input): boolean {
    if (this.call === undefined || this.call.cancelled || this.call.writableEnded) return true;
    const ok = this.call.write(msg);
    if (!ok && !this.blocked) {
      this.blocked = true;
      this.hooks.blocked(true);
    }
    return ok;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    let batch: OutputChunk__Input[] = [];
    let bytes = 0;
    /** Outputs in `batch`: delivered once it is written (the job may end then), or for a holding job once acknowledged. */
    let outputs: { output: Delivery; tries: number }[] = [];
    const send = (): void => {
      if (batch.length === 0) return;
      this.write({ outputs: { chunks: batch } });
      const sent = outputs;
      batch = [];
      bytes = 0;
      outputs = [];
      if (this.holds) for (const o of sent) this.unacked.set(o.output.id, o);
      else for (const o of sent) this.hooks.delivered(o.output.id, o.output.ref.rows);
    };
    try {
      while (this.queue.length > 0 && !this.ended) {
        if (this.holds && this.call === undefined) break; // the rest waits for the next client
        const next = this.queue.shift()!;
        const { output, tries } = next;
        const ref = output.ref.data;
        let data = ref.inline;
        if (data === undefined) {
          send(); // what is ready leaves before a fetch
          if (ref.objectId === '') {
            // Lost with its worker: the engine sends it again once it is recomputed.
            this.hooks.deliveryFailed(output.id, tries, 'its bytes were lost with their worker');
            continue;
          }
          try {
            data = await this.hooks.fetch(ref);
            const bad = ipcStreamProblem(data);
            if (bad !== undefined) throw new Error(`the bytes of object ${ref.objectId} from the worker at ${ref.ownerAddress} are not an Arrow IPC stream (${bad})`);
          } catch (e) {
            // The owner may be dying: its loss (and the recompute) is then on its way.
            if (!this.ended) this.hooks.deliveryFailed(output.id, tries, (e as Error).message);
            continue;
          }
          if (this.ended) break;
          if (this.holds && this.call === undefined) {
            this.queue.unshift(next); // its client left while it was fetched
            break;
          }
        }
        if (this.files !== undefined) {
          send();
          try {
            await this.files.write(new EncodedOutputBatch(data, output.task, output.id, output.ref.rows));
          } catch (e) {
            this.hooks.writeFailed?.(
              new DplError(DplErrorCode.INTERNAL, `cannot write output ${output.id} of job ${this.jobId} under ${this.files.dir}: ${ensureError(e).message}`, { cause: e }),
            );
            break;
          }
          this.hooks.delivered(output.id, output.ref.rows);
          if (this.blocked && this.queue.length <= FILES_QUEUED_MAX / 2) {
            this.blocked = false;
            this.hooks.blocked(false);
          }
          continue;
        }
        // The last chunk is the one that reaches the end (no array of them, no closure per output).
        let through = 0;
        for (const chunk of chunksOf(data)) {
          through += chunk.byteLength;
          if (bytes + chunk.byteLength > DEFAULT_BATCH_MAX_BYTES) send();
          batch.push({ batch_id: output.id, task: output.task, chunk, last: through === data.byteLength });
          bytes += chunk.byteLength + output.id.length + output.task.length + 16;
        }
        outputs.push(next);
        if (this.blocked) {
          send();
          const call = this.call;
          if (call === undefined) break; // a holding job's client left: the rest waits for the next
          await new Promise<void>((r) => call.once('drain', () => r()));
        }
      }
      send();
    } finally {
      this.pumping = false;
    }
  }
}
