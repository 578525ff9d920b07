/**
 * @dpl/head: the head daemon. It keeps the registry of workers (resources, heartbeats) and
 * answers status queries; placement and jobs build on it.
 *
 * ```ts
 * import { startHead } from '@dpl/head';
 * const head = await startHead({ host: '127.0.0.1', port: 6380, token: process.env.DPL_TOKEN });
 * process.on('SIGTERM', () => void head.stop());
 * ```
 */
export { startHead } from './head';
export type { Head } from './head';
export {
  resolveHeadOptions,
  isLoopback,
  DEFAULT_HEAD_PORT,
  DEFAULT_DASHBOARD_PORT,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
} from './head-options';
export type { HeadOptions, ResolvedHeadOptions } from './head-options';
export { WorkerRegistry, DEAD_WORKERS_KEPT } from './registry/worker-registry';
export type { WorkerRecord, WorkerRegistration } from './registry/worker-registry';
