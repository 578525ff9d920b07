/**
 * A job on a cluster, as the client sees it: an async iterable of output batches that starts
 * the job on first use, reassembles batches from their chunks, and cancels the job when the
 * consumer stops early.
 */
import * as grpc from '@grpc/grpc-js';
import {
  DplError,
  DplErrorCode,
  OutputQueue,
  EncodedOutputBatch,
  checkIpcStream,
  type ErroredBatch,
  type Logger,
  type OutputBatch,
  type PipelineRun,
  type SchedulerStats,
} from '@dpl/core';
import {
  ChunkAssembler,
  errorFromProto,
  tokenMetadata,
  type HeadServiceClient,
  type JobSpec__Input,
  type RunJobRequest__Input,
  type AttachJobRequest__Input,
  type OutputChunk,
  type RunJobResponse,
} from '@dpl/wire';
import { taskOutputLines, type TaskOutputLine } from './task-output';

/** What a run tells its caller besides outputs. */
export interface ClusterRunHooks {
  /** The head's notices (e.g. a task waiting for resources); logged when absent. */
  onNotice?: (message: string) => void;
  /** Lines the job's tasks printed; absent: not asked for. */
  onTaskOutput?: (line: TaskOutputLine) => void;
  /**
   * Attach to a running detached job instead of starting one: each batch is acknowledged when
   * it is taken from the run, and `have` (batch ids taken before) are not sent again.
   */
  attach?: { have: readonly string[] };
  /**
   * Uploads the job's module again when the head lacks it (it may evict a module between the
   * client's check and the job's start); resolves true when it did. Without it, a refusal for
   * a missing module fails the run.
   */
  reupload?: () => Promise<boolean>;
}

/** Times a job is started again after the head evicted its module before the start (a race, not a loop). */
const MODULE_RESTARTS = 2;

/** Outputs buffered on the client before it stops reading from the head (backpressure). */
const MAX_BUFFERED_OUTPUTS = 8;

export class ClusterRun implements PipelineRun, AsyncIterator<OutputBatch> {
  /** The job's id on the head: the run id, which the head takes as the job's id. */
  jobId: string;
  readonly erroredBatches: ErroredBatch[] = [];
  private call: grpc.ClientDuplexStream<RunJobRequest__Input | AttachJobRequest__Input, RunJobResponse> | undefined;
  /** The job's sink tasks, as the head said when it accepted the job (or the attachment). */
  sinks: string[] = [];
  private readonly outputs = new OutputQueue<OutputBatch>(() => {
    this.delivered++;
    if (this.outputs.length < MAX_BUFFERED_OUTPUTS) this.call?.resume();
  });
  private readonly partial = new Map<string, ChunkAssembler>();
  private starting: Promise<void> | undefined;
  private delivered = 0;
  /** Settles when the head accepts the job (or refuses it, or the stream fails first). */
  private readonly acceptance: Promise<string>;
  private acceptedWith!: (id: string) => void;
  private refusedWith!: (e: Error) => void;

  constructor(
    readonly runId: string,
    private readonly client: HeadServiceClient,
    private readonly token: string | undefined,
    /** Uploads the module if needed and returns the spec to start. */
    private readonly prepare: () => Promise<JobSpec__Input>,
    private readonly log: Logger,
    private readonly hooks: ClusterRunHooks,
  ) {
    this.jobId = runId;
    this.acceptance = new Promise<string>((resolve, reject) => {
      this.acceptedWith = resolve;
      this.refusedWith = reject;
    });
    this.acceptance.catch(() => undefined); // also reported through iteration
  }

  /** Resolves with the job's id once the head has accepted it; rejects when it refused it. */
  async accepted(): Promise<string> {
    await this.start();
    return this.acceptance;
  }

  [Symbol.asyncIterator](): AsyncIterator<OutputBatch> {
    return this;
  }

  /**
   * Where the job is, as the head last said (about twice a second): per task calls, rows and
   * calls running; `outputs` counts the batches this client has taken.
   */
  stats(): SchedulerStats {
    return { sourceBatches: 0, emptySourceBatches: 0, outputs: this.delivered, tasks: this.taskStats };
  }

  private taskStats: SchedulerStats['tasks'] = {};

  /** Starts the job (once); iteration starts it too. */
  start(): Promise<void> {
    this.starting ??= this.open().catch((e: unknown) => {
      this.outputs.end();
      throw e;
    });
    return this.starting;
  }

  async next(): Promise<IteratorResult<OutputBatch>> {
    await this.start();
    const r = await this.outputs.next();
    // Taken: the head may count it delivered (another client attaching later does not get it).
    if (this.hooks.attach !== undefined && r.done !== true) this.call?.write({ ack: { batch_ids: [r.value.id] } });
    return r;
  }

  async return(): Promise<IteratorResult<OutputBatch>> {
    await this.cancel();
    return { value: undefined, done: true };
  }

  cancel(): Promise<void> {
    if (!this.outputs.closed) {
      this.outputs.end();
      // An attachment ends in order, after the acknowledgements it wrote (a cancel would drop
      // them, and the head would send those batches again); a job of its own is cancelled.
      if (this.hooks.attach !== undefined) this.call?.end();
      else this.call?.cancel();
    }
    return Promise.resolve();
  }

  private async open(): Promise<void> {
    const attach = this.hooks.attach;
    this.spec = attach === undefined ? await this.prepare() : undefined;
    if (this.outputs.closed) return;
    this.startCall();
  }

  /** The spec this run starts its job with (undefined for an attachment). */
  private spec: JobSpec__Input | undefined;
  private wasAccepted = false;
  private moduleRestarts = 0;

  private startCall(): void {
    const attach = this.hooks.attach;
    const spec = this.spec;
    const md = tokenMetadata(this.token);
    const call = (attach === undefined ? this.client.RunJob(md) : this.client.AttachJob(md)) as NonNullable<typeof this.call>;
    this.call = call;
    // A stream given up for a new one (see restartForModule) says nothing more.
    call.on('data', (m: RunJobResponse) => {
      if (this.call === call) this.onMessage(m);
    });
    call.on('error', (e: grpc.ServiceError) => {
      if (this.call !== call) return;
      const err =
        e.code === grpc.status.UNAVAILABLE
          ? new DplError(DplErrorCode.UNAVAILABLE, `lost the head while the job ran: ${e.details}; submit it again when the head is back`, { cause: e })
          : new DplError(DplErrorCode.INTERNAL, `the job stream failed: ${e.details || e.message}`, { cause: e });
      this.refusedWith(err);
      if (this.outputs.closed) return;
      this.outputs.fail(err);
    });
    call.on('end', () => {
      if (this.call !== call) return;
      this.outputs.fail(new DplError(DplErrorCode.UNAVAILABLE, 'the head ended the job stream without finishing the job'));
    });
    call.write(attach === undefined ? { start: spec } : { start: { job_id: this.jobId, have: [...attach.have] } });
  }

  /**
   * The head refused the start for its module: when it no longer has the module (evicted since
   * the upload check), the module goes up again and the job starts once more; else the
   * refusal stands.
   */
  private async restartForModule(refusal: DplError): Promise<void> {
    let again: boolean;
    try {
      again = await this.hooks.reupload!();
    } catch (e) {
      this.refusedWith(e as Error);
      this.outputs.fail(e as Error);
      return;
    }
    if (this.outputs.closed) return;
    if (!again) {
      this.refusedWith(refusal);
      this.outputs.fail(refusal);
      return;
    }
    this.log.info({ jobId: this.jobId }, 'the head had evicted the module before the job started; uploaded it again');
    this.startCall();
  }

  /** One chunk of an output batch; the last one completes it. */
  private chunk(o: OutputChunk): void {
    let a = this.partial.get(o.batch_id);
    if (a === undefined && o.last) {
      // The whole batch in one chunk (the common case): no assembly.
      this.received(o.batch_id, o.task, o.chunk);
      return;
    }
    if (a === undefined) {
      a = new ChunkAssembler();
      this.partial.set(o.batch_id, a);
    }
    a.add(o.chunk);
    if (o.last) {
      this.partial.delete(o.batch_id);
      this.received(o.batch_id, o.task, a.finish());
    }
  }

  /** A whole batch: its framing checked and its rows counted here, decoded when its `data` is read. */
  private received(id: string, task: string, bytes: Uint8Array): void {
    const checked = checkIpcStream(bytes);
    if (typeof checked === 'string') {
      // The head checked these bytes where they reached it: this is its stream, or the network, broken.
      if (this.outputs.closed) return;
      this.outputs.fail(new DplError(DplErrorCode.INTERNAL, `output batch ${id} of task ${JSON.stringify(task)} came from the head as bytes that are not Arrow IPC (${checked})`));
      this.call?.cancel();
      return;
    }
    this.outputs.push(new EncodedOutputBatch(bytes, task, id, checked.rows));
    if (this.outputs.length >= MAX_BUFFERED_OUTPUTS) this.call?.pause();
  }

  private onMessage(m: RunJobResponse): void {
    switch (m.msg) {
      case 'accepted':
        this.wasAccepted = true;
        this.jobId = m.accepted!.job_id;
        this.sinks = m.accepted!.sinks;
        this.log.info({ jobId: this.jobId }, 'job accepted');
        this.acceptedWith(this.jobId);
        return;
      case 'outputs':
        for (const o of m.outputs!.chunks) this.chunk(o);
        return;
      case 'task_output': {
        const onLine = this.hooks.onTaskOutput;
        if (onLine !== undefined) for (const o of m.task_output!.output) for (const line of taskOutputLines(o)) onLine(line);
        return;
      }
      case 'notice':
        if (this.hooks.onNotice !== undefined) this.hooks.onNotice(m.notice!.message);
        else this.log.warn({ jobId: this.jobId, notice: m.notice!.message }, 'notice from the head');
        return;
      case 'progress': {
        const tasks: SchedulerStats['tasks'] = {};
        for (const t of m.progress!.tasks) {
          tasks[t.name] = {
            calls: Number(t.calls),
            rowsIn: Number(t.rows_in),
            rowsOut: Number(t.rows_out),
            running: t.running,
            queuedRows: Number(t.queued_rows),
            retries: t.retries,
            emptyOutputs: Number(t.empty_outputs),
            skipped: t.skipped,
          };
        }
        this.taskStats = tasks;
        return;
      }
      case 'skipped': {
        const s = m.skipped!;
        this.erroredBatches.push({ id: s.batch_id, task: s.task, inputs: s.inputs, message: s.error?.message ?? '' });
        this.log.warn({ jobId: this.jobId, batchId: s.batch_id, err: s.error?.message }, 'batch skipped after its retries');
        return;
      }
      case 'finished':
        this.outputs.end();
        return;
      case 'failed': {
        const err = errorFromProto(m.failed!);
        if (!this.wasAccepted && err.code === DplErrorCode.MODULE && this.hooks.reupload !== undefined && this.moduleRestarts < MODULE_RESTARTS && !this.outputs.closed) {
          this.moduleRestarts++;
          this.call = undefined; // its end and anything after this are ignored
          void this.restartForModule(err);
          return;
        }
        this.refusedWith(err);
        this.outputs.fail(err);
        return;
      }
      case undefined:
        return;
    }
  }
}
