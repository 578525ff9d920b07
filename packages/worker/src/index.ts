/**
 * @dpl/worker: the worker daemon. It registers its resources with the head and keeps a
 * heartbeat; task executors and the object store build on it.
 *
 * ```ts
 * import { startWorker } from '@dpl/worker';
 * const worker = startWorker({ address: '127.0.0.1:6380', resources: { bigdb: 1 } });
 * process.on('SIGTERM', () => void worker.stop());
 * ```
 */
export { startWorker } from './worker';
export type { Worker, LeaveOutcome } from './worker';
export { resolveWorkerOptions } from './worker-options';
export type { WorkerOptions, ResolvedWorkerOptions } from './worker-options';
export { ObjectStore } from './store/object-store';
export { startDataServer } from './data/data-server';
export type { DataServer } from './data/data-server';
