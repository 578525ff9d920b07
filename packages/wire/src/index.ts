/**
 * @dpl/wire (private): dpl's wire contract. The generated proto types, the loaded services,
 * codecs between domain types and messages, and the token helpers. The only package that knows
 * the generated types.
 *
 * ```ts
 * import { loadDplProto, CHANNEL_OPTIONS } from '@dpl/wire';
 * const { HeadService } = loadDplProto();
 * const client = new HeadService('127.0.0.1:6380', credentials.createInsecure(), CHANNEL_OPTIONS);
 * ```
 */
export { loadDplProto, PROTO_LOADER_OPTIONS, PROTO_DIR, CHANNEL_OPTIONS, SERVER_OPTIONS } from './proto';
export type { DplProto } from './proto';
export { tokenMetadata, tokenMatches, presentedToken, unauthenticated, generateToken, tokenProblem, MAX_TOKEN_BYTES } from './auth';
export { resourcesToProto, resourcesFromProto, errorToProto, errorFromProto } from './codecs';
export { statusToProto, statusFromProto, objectStoreFromProto, objectStoreToProto, NO_DEMAND } from './status';
export type { ClusterStatus, ClusterDemand, WorkerInfo, WorkerState, JobInfo, ObjectStoreInfo } from './status';
export type { HeadServiceHandlers, HeadServiceClient } from './generated/dpl/v1/HeadService';
export type { ConnectWorkerRequest, ConnectWorkerRequest__Input } from './generated/dpl/v1/ConnectWorkerRequest';
export type { ConnectWorkerResponse, ConnectWorkerResponse__Input } from './generated/dpl/v1/ConnectWorkerResponse';
export type { GetStatusRequest } from './generated/dpl/v1/GetStatusRequest';
export type { GetStatusResponse, GetStatusResponse__Input } from './generated/dpl/v1/GetStatusResponse';
export type { UpdateWorkerRequest__Input } from './generated/dpl/v1/UpdateWorkerRequest';
export { CHUNK_BYTES, chunksOf, ChunkAssembler } from './chunks';
export { encodeKwargs, decodeKwargs } from './kwargs';
export type { AssignTask, AssignTask__Input } from './generated/dpl/v1/AssignTask';
export type { AssignBatch } from './generated/dpl/v1/AssignBatch';
export type { KeepObjects } from './generated/dpl/v1/KeepObjects';
export type { JobFacts, JobFacts__Input } from './generated/dpl/v1/JobFacts';
export type { TaskFacts, TaskFacts__Input } from './generated/dpl/v1/TaskFacts';
export type { TaskDone__Input } from './generated/dpl/v1/TaskDone';
export type { TaskFailed__Input } from './generated/dpl/v1/TaskFailed';
export type { TaskOutput, TaskOutput__Input } from './generated/dpl/v1/TaskOutput';
export type { OutputChunk, OutputChunk__Input } from './generated/dpl/v1/OutputChunk';
export { inProcessClient, type InProcessClient } from './in-process';
export { TurnBatcher, DEFAULT_BATCH_MAX_BYTES, type TurnBatcherOptions } from './turn-batcher';
export { AssignBatcher, ResultBatcher } from './call-batches';
export type { InputSlice as InputSliceMessage, InputSlice__Input as InputSliceMessage__Input } from './generated/dpl/v1/InputSlice';
export type { JobSpec, JobSpec__Input } from './generated/dpl/v1/JobSpec';
export type { JobLogsResponse } from './generated/dpl/v1/JobLogsResponse';
export type { TaskSpec, TaskSpec__Input } from './generated/dpl/v1/TaskSpec';
export type { RunJobRequest, RunJobRequest__Input } from './generated/dpl/v1/RunJobRequest';
export type { AttachJobRequest, AttachJobRequest__Input } from './generated/dpl/v1/AttachJobRequest';
export type { RunJobResponse, RunJobResponse__Input } from './generated/dpl/v1/RunJobResponse';
export type { FetchModuleRequest } from './generated/dpl/v1/FetchModuleRequest';
export type { FetchModuleResponse, FetchModuleResponse__Input } from './generated/dpl/v1/FetchModuleResponse';
export type { UploadModuleRequest, UploadModuleRequest__Input } from './generated/dpl/v1/UploadModuleRequest';
export type { UploadModuleResponse } from './generated/dpl/v1/UploadModuleResponse';
export type { HasModuleResponse } from './generated/dpl/v1/HasModuleResponse';
export { loadTls, serverCredentials, channelCredentials, type TlsFiles, type TlsMaterial } from './tls';
export {
  ObjectFetcher,
  serveInProcess,
  DATA_MAGIC,
  DataStatus,
  MAX_DATA_FIELD_BYTES,
  encodeDataRequest,
  encodeDataResponseHeader,
} from './data-plane';
export type { TaskDone } from './generated/dpl/v1/TaskDone';
export type { TaskFailed } from './generated/dpl/v1/TaskFailed';
export type { PullSource } from './generated/dpl/v1/PullSource';
export type { SourceBatch } from './generated/dpl/v1/SourceBatch';
export { isHostPort, isLoopbackHost, shutdownServer } from './address';
export { ConnectionGuard, DEFAULT_AUTH_DEADLINE_MS, openFileLimit } from './connection-guard';
export type { ConnectionGuardOptions } from './connection-guard';
