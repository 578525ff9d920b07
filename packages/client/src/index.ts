/**
 * @dpl/client: the TypeScript SDK for a dpl cluster.
 *
 * ```ts
 * import { connect } from '@dpl/client';
 * const cluster = await connect('127.0.0.1:6380', { token: process.env.DPL_TOKEN });
 * for (const w of (await cluster.status()).workers) console.log(w.id, w.resources.available);
 * await cluster.close();
 * ```
 */
export { connect } from './cluster';
export { bundleModule, loadPipelineModule, moduleCacheDir } from './module/bundle';
export type { ModuleBundle, LoadedModule } from './module/bundle';
export type { Cluster, ConnectOptions, SubmitOptions, JobHandle } from './cluster';
export { ClusterExecutor, DEFAULT_INFEASIBLE_TIMEOUT_MS } from './cluster-executor';
export type { ClusterExecutorOptions } from './cluster-executor';
export type { ClusterRun, ClusterRunHooks } from './cluster-run';
export { formatTaskOutput, printTaskOutput } from './task-output';
export type { TaskOutputLine } from './task-output';
export { recordDaemon, listDaemons, localHead, tokenFor, processStartTime } from './local/daemon-records';
export type { DaemonRecord } from './local/daemon-records';
export type { ClusterStatus, ClusterDemand, WorkerInfo, WorkerState, JobInfo, ObjectStoreInfo } from '@dpl/wire';
