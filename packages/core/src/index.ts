/**
 * @dpl/core: the pipeline model, the streaming scheduler, the local executor, and the Arrow and
 * parquet helpers every dpl package shares.
 *
 * ```ts
 * import { LocalExecutor, PipelineGraph, PipelineTask, assign, column } from '@dpl/core';
 *
 * const generate = new PipelineTask('generate', (df) =>
 *   assign(df, { sample: Float64Array.from({ length: df.numRows }, Math.random) }));
 * const round = new PipelineTask('round', (df, { decimals }) => {
 *   const f = 10 ** (decimals as number);
 *   const sample = column(df, 'sample').toArray() as Float64Array;
 *   return assign(df, { rounded: sample.map((v) => Math.round(v * f) / f) });
 * }, { batchSize: 10, kwargs: { decimals: 1 } });
 *
 * const executor = new LocalExecutor(new PipelineGraph([generate, round]), { maxBatches: 100 });
 * for await (const batch of executor.setConfig('round.kwargs.decimals', 2).run()) {
 *   console.log(batch.task, batch.data.numRows);
 * }
 * ```
 */
export {
  DplError,
  DplErrorCode,
  ValidationError,
  ConfigError,
  TaskError,
  InfeasibleTaskError,
  CancelledError,
  isDplError,
  isRetryableCode,
  shouldRetry,
  retryDelayMs,
  MAX_RETRY_DELAY_MS,
  ensureError,
} from './errors';
export type { DplErrorOptions } from './errors';
export { CPU, GPU, ResourceSet, resourceProblems, amountProblem, describe, MAX_RESOURCE_AMOUNT } from './resources';
export type { ResourceMap } from './resources';
export { PipelineTask, DEFAULT_MAX_RETRIES, isPipelineTask, taskProblems } from './model/task';
export type { TaskFn, PipelineTaskOptions, PipelineTaskOverrides } from './model/task';
export { PipelineGraph, isPipelineGraph } from './model/graph';
export type { PipelineEdge } from './model/graph';
export { parseConfigValue, parseAssignment, readConfigFile } from './config';
export type { ConfigFile } from './config';
export {
  StreamingScheduler,
  DEFAULT_MAX_PENDING_CALLS,
  MAX_PENDING_CALLS_CAP,
  pendingCallsFor,
} from './scheduler/streaming-scheduler';
export type {
  BatchRef,
  InputSlice,
  TaskCall,
  SubmitContext,
  SchedulerBackend,
  StreamingSchedulerOptions,
  ScheduleResult,
  SinkOutput,
  TaskStats,
  SchedulerStats,
} from './scheduler/streaming-scheduler';
export { PipelineExecutor } from './executor/pipeline-executor';
export { OutputFiles, outputFileName, writeFileAtomically } from './executor/output-files';
export type { OutputFilesOptions } from './executor/output-files';
export type {
  ErroredBatch,
  OutputBatch,
  PipelineRun,
  WriteToOptions,
  WriteSummary,
  FromYaml,
} from './executor/pipeline-executor';
export {
  LocalExecutor,
  resolveLocalExecutorOptions,
  defaultSource,
  erroredBatch,
} from './executor/local-executor';
export type {
  LocalExecutorOptions,
  ResolvedLocalExecutorOptions,
  BatchGenerator,
} from './executor/local-executor';
export { failedCall, callFailureMessage, notATable, DEFAULT_RETRY_BACKOFF_MS } from './executor/run-policy';
export type { FailedCallOutcome, RunPolicy } from './executor/run-policy';
export { detectGpus } from './executor/gpus';
export { capacityProblems } from './executor/capacity';
export { OutputQueue } from './executor/output-queue';
export { EncodedOutputBatch, ipcOfOutput } from './executor/encoded-output';
export { splitTable, concatTables, assign, column, isTable, sameSchema, take, filter, tableRows } from './data/table';
export { isOwnTable, ownTable } from './data/adopt';
export { strings, utf8Vector } from './data/strings';
export { compactTable, COMPACT_MAX_BYTES } from './data/compact';
export type { ColumnInput, NumericArray, RowIndices } from './data/table';
export { encodeIpc, decodeIpc } from './data/ipc';
/** @internal Framing check of IPC bytes from another process. */
export { ipcStreamProblem, checkIpcStream } from './data/ipc-check';
/** @internal The executor's vectored write of an output (no gathering copy). */
export { ipcStreamParts, joinIpcParts, type IpcParts } from './data/ipc-writer';
export { writeParquet, readParquet } from './data/parquet';
export type { ParquetCompression, ParquetWriteOptions } from './data/parquet';
/** @internal The nesting rule for kwargs, checked by the head too. */
export { nestsDeeperThan, KWARG_DEPTH_RULE, MAX_KWARG_DEPTH } from './internal/nesting';
/** @internal A byte count for messages. */
export { formatBytes } from './internal/bytes';
export { silentLogger } from './logger';
export type { Logger, LogFn } from './logger';
export { DPL_VERSION } from './version';
export {
  BUNDLE_BANNER,
  REQUIRE_ANCHOR_GLOBAL,
  SHARED_MODULES_GLOBAL,
  SHARED_REQUIRE_GLOBAL,
  sharedRequire,
  writeBundle,
  importBundleFile,
  checkPipelineModule,
} from './module/pipeline-module';
export type { PipelineModule } from './module/pipeline-module';
export {
  NoOpObserver,
  InMemoryObserver,
  Timer,
  setObserver,
  getObserver,
  observe,
  increment,
  param,
  timer,
  tapObservations,
} from './observer/observer';
export type { Observer, Observation } from './observer/observer';
export {
  ensurePrivateDir,
  writePrivateFile,
  readPrivateFile,
  privateDir,
  dplHomeDir,
  defaultRunDir,
} from './security/private-files';
export { loadPackage } from './module/load-package';
export { NATIVE_REQUIRE_GLOBAL, enclosingPackage, findInstalledPackage, packageName, requireNative, type PackageJson } from './module/native-packages';
