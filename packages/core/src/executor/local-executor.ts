/**
 * The in-process backend: runs a pipeline's tasks as async functions in this process, as many
 * at once as the machine's resources allow (numCpus against the cores, numGpus against the
 * GPUs, custom resources as given).
 */
import { availableParallelism } from 'node:os';
import { Table, Utf8, makeVector, vectorFromArray, type Vector } from 'apache-arrow';
import { ownTable } from '../data/adopt';
import { concatTables, isTable, tableRows } from '../data/table';
import { DplError, DplErrorCode, TaskError, ensureError } from '../errors';
import { DEFAULT_RETRY_BACKOFF_MS, callFailureMessage, failedCall, notATable } from './run-policy';
import { silentLogger, type Logger } from '../logger';
import type { PipelineGraph } from '../model/graph';
import type { PipelineTask } from '../model/task';
import { capacityProblems } from './capacity';
import { CPU, GPU, ResourceSet, describe, type ResourceMap } from '../resources';
import {
  StreamingScheduler,
  pendingCallsFor,
  type SchedulerBackend,
  type SchedulerStats,
  type TaskCall,
} from '../scheduler/streaming-scheduler';
import { detectGpus } from './gpus';
import { PipelineExecutor, type ErroredBatch, type OutputBatch, type PipelineRun } from './pipeline-executor';
import { OutputQueue } from './output-queue';

/** Where a run's batches come from: called once per run. */
export type BatchGenerator = () => AsyncIterable<Table> | Iterable<Table>;

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /** Stop after this many generator batches. @default undefined (until the generator ends) */
  maxBatches?: number;
  /**
   * The source of batches, called once per run. Each table it yields goes to every source task.
   * @default an endless stream of one-row tables `{ run_id, id }` with an increasing `id`
   */
  generator?: BatchGenerator;
  /** CPUs to schedule against. @default the machine's available parallelism */
  numCpus?: number;
  /** GPUs to schedule against. @default the count `nvidia-smi -L` reports, else 0 */
  numGpus?: number;
  /** Custom resources this machine has, e.g. `{ bigdb: 1 }`. @default {} */
  resources?: ResourceMap;
  /** Outputs kept ready for a slow consumer before sources pause. @default 8 */
  maxBufferedOutputs?: number;
  /** Calls running or ready downstream before sources pause. @default max(16, 4 * numCpus) */
  maxPendingCalls?: number;
  /** Delay before the first retry of a failed call; doubles each time, up to 10 s. @default 100 */
  retryBackoffMs?: number;
  /**
   * Batches the run may skip when their call still fails after its retries; the next one fails
   * the run. Skipped batches are listed in `run.erroredBatches`. @default 0
   */
  maxErroredBatches?: number;
  logger?: Logger;
}

/** {@link LocalExecutorOptions} with every default filled in. */
export interface ResolvedLocalExecutorOptions {
  maxBatches: number | undefined;
  generator: BatchGenerator | undefined;
  capacity: ResourceSet;
  maxBufferedOutputs: number;
  maxPendingCalls: number;
  retryBackoffMs: number;
  maxErroredBatches: number;
  logger: Logger;
}

/**
 * Fills defaults and checks every option.
 * @throws TypeError listing every problem.
 */
export function resolveLocalExecutorOptions(o: LocalExecutorOptions = {}): ResolvedLocalExecutorOptions {
  const problems: string[] = [];
  const int = (name: string, v: unknown, min: number): void => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min)) {
      problems.push(`${name} must be an integer >= ${min}, got ${describe(v)}`);
    }
  };
  int('maxBatches', o.maxBatches, 0);
  int('maxBufferedOutputs', o.maxBufferedOutputs, 1);
  int('maxPendingCalls', o.maxPendingCalls, 1);
  int('maxErroredBatches', o.maxErroredBatches, 0);
  if (o.generator !== undefined && typeof o.generator !== 'function') {
    problems.push(`generator must be a function returning an (async) iterable of Tables, got ${describe(o.generator)}`);
  }
  for (const [name, v] of [['numCpus', o.numCpus], ['numGpus', o.numGpus], ['retryBackoffMs', o.retryBackoffMs]] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      problems.push(`${name} must be a number >= 0, got ${describe(v)}`);
    }
  }
  let capacity = ResourceSet.EMPTY;
  const numCpus = o.numCpus ?? availableParallelism();
  try {
    capacity = ResourceSet.from({ ...(o.resources ?? {}), [CPU]: numCpus, [GPU]: o.numGpus ?? detectGpus() });
  } catch (e) {
    problems.push((e as Error).message.replace(/^resources/, 'resources option'));
  }
  if (problems.length > 0) throw new TypeError(`invalid LocalExecutor options: ${problems.join('; ')}`);
  return {
    maxBatches: o.maxBatches,
    generator: o.generator,
    capacity,
    maxBufferedOutputs: o.maxBufferedOutputs ?? 8,
    maxPendingCalls: o.maxPendingCalls ?? pendingCallsFor(numCpus),
    retryBackoffMs: o.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS,
    maxErroredBatches: o.maxErroredBatches ?? 0,
    logger: o.logger ?? silentLogger,
  };
}

/**
 * Runs a pipeline in this process.
 *
 * ```ts
 * const executor = new LocalExecutor(graph, { maxBatches: 100 }).setConfig('round.kwargs.decimals', 2);
 * for await (const batch of executor.run()) console.log(batch.task, batch.data.numRows);
 * ```
 */
export class LocalExecutor extends PipelineExecutor {
  private readonly options: ResolvedLocalExecutorOptions;

  constructor(graph: PipelineGraph | readonly PipelineTask[], options: LocalExecutorOptions = {}) {
    super(graph);
    this.options = resolveLocalExecutorOptions(options);
  }

  /** The resources this executor schedules against. */
  get capacity(): ResourceSet {
    return this.options.capacity;
  }

  protected override backendProblems(graph: PipelineGraph): string[] {
    return capacityProblems(
      graph,
      this.options.capacity,
      'lower the request, or give the executor the resource (LocalExecutor options numCpus/numGpus/resources), ' +
        'or run on a cluster whose workers have it',
    );
  }

  protected execute(graph: PipelineGraph, context: ReadonlyMap<string, unknown>, runId: string): PipelineRun {
    return new LocalRun(graph, context, runId, this.options);
  }
}

/** The endless default source: one-row tables `{ run_id, id }`, id = 0, 1, 2, … */
export function* defaultSource(runId: string, firstId = 0n): Generator<Table> {
  // The run_id column is the same for every batch: build it once.
  const runIdColumn: Vector<Utf8> = vectorFromArray([runId], new Utf8());
  for (let id = firstId; ; id++) {
    yield new Table({ run_id: runIdColumn, id: makeVector(BigInt64Array.of(id)) });
  }
}

/** One run of a LocalExecutor. */
class LocalRun implements PipelineRun, AsyncIterator<OutputBatch> {
  readonly erroredBatches: ErroredBatch[] = [];
  readonly runId: string;
  private readonly scheduler: StreamingScheduler<Table>;
  private readonly tasks: ReadonlyMap<string, { task: PipelineTask; request: ResourceSet; kwargs: Record<string, unknown> }>;
  private readonly options: ResolvedLocalExecutorOptions;
  private readonly log: Logger;
  private readonly source: Iterator<Table> | AsyncIterator<Table>;
  // Taking an output opens a slot in the buffer: sources may go on.
  private readonly outputs = new OutputQueue<OutputBatch>(() => this.pump());
  private readonly backend: SchedulerBackend<Table>;
  private free: ResourceSet;
  private stopped = false;
  private pulling = false;
  private iterated = false;
  /** Retry timers; they keep the process alive (a run waiting only on a retry is not over). */
  private readonly retryTimers = new Set<NodeJS.Timeout>();

  constructor(
    graph: PipelineGraph,
    context: ReadonlyMap<string, unknown>,
    runId: string,
    options: ResolvedLocalExecutorOptions,
  ) {
    this.runId = runId;
    this.options = options;
    this.log = options.logger.child({ runId });
    this.free = options.capacity;
    this.tasks = new Map(
      graph.tasks.map((t) => [t.name, { task: t, request: t.request(), kwargs: t.resolveKwargs(context) }]),
    );
    this.scheduler = new StreamingScheduler<Table>(graph, {
      maxBatches: options.maxBatches,
      maxPendingCalls: options.maxPendingCalls,
    });
    const source = options.generator ? options.generator() : defaultSource(runId);
    this.source = openIterator(source);
    this.backend = {
      fits: (task) => this.free.fits(this.tasks.get(task)!.request),
      submit: (call) => {
        this.free = this.free.subtract(this.tasks.get(call.task)!.request);
        // setImmediate, not a microtask: synchronous tasks must still let I/O (and signals) in.
        setImmediate(() => void this.runCall(call));
      },
    };
    this.log.info({ tasks: graph.tasks.length, capacity: options.capacity.toJSON() }, 'run started');
  }

  [Symbol.asyncIterator](): AsyncIterator<OutputBatch> {
    if (this.iterated) {
      throw new TypeError('a run can be iterated once; call executor.run() again for a new run');
    }
    this.iterated = true;
    this.pump();
    return this;
  }

  next(): Promise<IteratorResult<OutputBatch>> {
    return this.outputs.next();
  }

  async return(): Promise<IteratorResult<OutputBatch>> {
    await this.cancel();
    return { value: undefined, done: true };
  }

  async cancel(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearRetryTimers();
    this.log.info(this.scheduler.stats(), 'run cancelled');
    this.outputs.end();
    await this.closeSource();
  }

  stats(): SchedulerStats {
    return this.scheduler.stats();
  }

  /** Submits what can run, asks the generator for data when a source wants it, ends the run. */
  private pump(): void {
    if (this.stopped) return;
    const allowSources = this.outputs.length < this.options.maxBufferedOutputs;
    const { wantsSourceData } = this.scheduler.schedule(this.backend, allowSources);
    if (wantsSourceData && !this.pulling) {
      this.pulling = true;
      void this.pull(); // errors are handled inside and fail the run
    }
    if (!this.pulling && this.scheduler.isDone()) {
      this.stopped = true;
      this.log.info(this.scheduler.stats(), 'run finished');
      this.outputs.end();
    }
  }

  private async pull(): Promise<void> {
    let result: IteratorResult<Table>;
    try {
      result = await this.source.next();
    } catch (e) {
      this.pulling = false;
      this.failRun(new DplError(DplErrorCode.TASK_FAILED, `the generator threw: ${ensureError(e).message}`, { cause: e }));
      return;
    }
    this.pulling = false;
    if (this.stopped) return;
    if (result.done === true) {
      this.scheduler.endSource();
    } else if (!isTable(result.value)) {
      this.failRun(
        new DplError(
          DplErrorCode.TASK_FAILED,
          `the generator yielded ${describe(result.value)}, not an Arrow Table; yield apache-arrow Tables (e.g. tableFromArrays({...}))`,
        ),
      );
      return;
    } else {
      this.scheduler.addSourceBatch(ownTable(result.value), result.value.numRows);
    }
    this.pump();
  }

  private async runCall(call: TaskCall<Table>): Promise<void> {
    const entry = this.tasks.get(call.task)!;
    let output: Table | undefined;
    let failure: TaskError | undefined;
    try {
      if (this.stopped) return;
      const slices = call.inputs.map((s) => tableRows(s.ref.data, s.offset, s.rows));
      const input = slices.length === 1 ? slices[0]! : concatTables(slices);
      const result: unknown = await withTimeout(entry.task.fn(input, { ...entry.kwargs }), entry.task.timeoutMs);
      if (!isTable(result)) throw notATable(result);
      // A table of the script's own apache-arrow (its ESM build, another install) becomes dpl's.
      output = ownTable(result);
    } catch (e) {
      const err = ensureError(e);
      const inputIds = [...new Set(call.inputs.map((s) => s.ref.id))];
      failure = new TaskError(
        call.task,
        call.id,
        call.attempt,
        callFailureMessage(call.task, call.id, inputIds, call.attempt, entry.task.maxRetries + 1, err.message),
        // What a retry cannot help (a non-Table result) stays so.
        { cause: err, remoteStack: err.stack, details: { inputs: inputIds }, retryable: !(err instanceof DplError) || err.retryable },
      );
    } finally {
      this.free = this.free.add(entry.request);
    }
    if (this.stopped) return;
    if (output !== undefined) {
      const out = this.scheduler.complete(call.id, { rows: output.numRows, data: output });
      if (out !== undefined) this.outputs.push({ data: out.ref.data, task: out.task, id: out.id, rows: out.ref.data.numRows });
    } else if (failure !== undefined) {
      this.handleFailure(call, failure);
    }
    this.pump();
  }

  private handleFailure(call: TaskCall<Table>, failure: TaskError): void {
    const outcome = failedCall(this.scheduler, call, failure, this.erroredBatches.length, this.options);
    if (outcome.kind === 'skip') {
      this.erroredBatches.push(erroredBatch(call, failure));
      this.log.warn({ task: call.task, batchId: call.id, err: failure.message }, 'batch skipped after its retries (maxErroredBatches)');
      return;
    }
    if (outcome.kind === 'fail') {
      this.failRun(failure);
      return;
    }
    this.log.warn({ task: call.task, batchId: call.id, attempt: call.attempt, delayMs: outcome.delayMs, err: failure.cause }, 'task failed, retrying');
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      if (this.stopped) return;
      this.scheduler.retry(call.id);
      this.pump();
    }, outcome.delayMs);
    this.retryTimers.add(timer);
  }

  private failRun(err: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearRetryTimers();
    // The error reaches the consumer, who decides how to report it: log it only for debugging.
    this.log.debug({ err }, 'run failed');
    void this.closeSource();
    this.outputs.fail(err);
  }

  private clearRetryTimers(): void {
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
  }

  private async closeSource(): Promise<void> {
    try {
      await this.source.return?.();
    } catch (e) {
      this.log.warn({ err: ensureError(e) }, 'the generator failed to close');
    }
  }
}

function openIterator(source: AsyncIterable<Table> | Iterable<Table>): Iterator<Table> | AsyncIterator<Table> {
  if (source !== null && typeof source === 'object') {
    if (Symbol.asyncIterator in source) return source[Symbol.asyncIterator]();
    if (Symbol.iterator in source) return source[Symbol.iterator]();
  }
  throw new TypeError(`the generator must return an iterable or async iterable of Tables, got ${describe(source)}`);
}

/**
 * The call's result, or a rejection once `timeoutMs` passes (the call itself cannot be stopped
 * in process: it is abandoned, and what it returns later is ignored).
 */
async function withTimeout<T>(result: T | Promise<T>, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined || !(result instanceof Promise)) return result;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it ran longer than its timeoutMs of ${timeoutMs} ms and was abandoned`)), timeoutMs);
  });
  try {
    return await Promise.race([result, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The record of a batch skipped under maxErroredBatches. */
export function erroredBatch(call: TaskCall<unknown>, err: Error): ErroredBatch {
  return { id: call.id, task: call.task, inputs: [...new Set(call.inputs.map((s) => s.ref.id))], message: err.message };
}
