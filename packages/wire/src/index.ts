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
export { tokenMetadata, tokenMatches, presentedToken, unauthenticated } from './auth';
export { resourcesToProto, resourcesFromProto, errorToProto, errorFromProto } from './codecs';
export { statusToProto, statusFromProto } from './status';
export type { ClusterStatus, WorkerInfo, WorkerState, JobInfo } from './status';
export type { HeadServiceHandlers, HeadServiceClient } from './generated/dpl/v1/HeadService';
export type { ConnectWorkerRequest, ConnectWorkerRequest__Input } from './generated/dpl/v1/ConnectWorkerRequest';
export type { ConnectWorkerResponse, ConnectWorkerResponse__Input } from './generated/dpl/v1/ConnectWorkerResponse';
export type { GetStatusRequest } from './generated/dpl/v1/GetStatusRequest';
export type { GetStatusResponse, GetStatusResponse__Input } from './generated/dpl/v1/GetStatusResponse';
