/**
 * The cluster's status as the SDK, the CLI and the dashboard see it, and its proto codec.
 */
import type { ResourceMap } from '@dpl/core';
import type { GetStatusResponse, GetStatusResponse__Input } from './generated/dpl/v1/GetStatusResponse';
import type { WorkerState as WorkerStateProto } from './generated/dpl/v1/WorkerState';
import { resourcesFromProto, resourcesToProto } from './codecs';

/** A worker's state: taking tasks, finishing its tasks before leaving, or gone. */
export type WorkerState = 'alive' | 'draining' | 'dead';

/** One worker as the head sees it. */
export interface WorkerInfo {
  id: string;
  /** Where its objects are fetched from (host:port). */
  address: string;
  hostname: string;
  state: WorkerState;
  resources: { total: ResourceMap; available: ResourceMap };
  /** Milliseconds since the epoch (head clock). */
  lastHeartbeatMs: number;
  registeredAtMs: number;
}

/** One job as the head sees it. */
export interface JobInfo {
  id: string;
  state: string;
}

/** What `cluster.status()`, `dpl status --json` and the dashboard's `/api/status` return. */
export interface ClusterStatus {
  workers: WorkerInfo[];
  jobs: JobInfo[];
  version: string;
}

const STATE_TO_PROTO: Record<WorkerState, WorkerStateProto> = {
  alive: 'WORKER_STATE_ALIVE',
  draining: 'WORKER_STATE_DRAINING',
  dead: 'WORKER_STATE_DEAD',
};

function stateFromProto(s: string): WorkerState {
  for (const [k, v] of Object.entries(STATE_TO_PROTO)) if (v === s) return k as WorkerState;
  return 'dead';
}

export function statusToProto(s: ClusterStatus): GetStatusResponse__Input {
  return {
    version: s.version,
    workers: s.workers.map((w) => ({
      id: w.id,
      address: w.address,
      hostname: w.hostname,
      state: STATE_TO_PROTO[w.state],
      total: resourcesToProto(w.resources.total),
      available: resourcesToProto(w.resources.available),
      last_heartbeat_ms: String(w.lastHeartbeatMs),
      registered_at_ms: String(w.registeredAtMs),
    })),
    jobs: s.jobs.map((j) => ({ id: j.id, state: j.state })),
  };
}

export function statusFromProto(p: GetStatusResponse): ClusterStatus {
  return {
    version: p.version,
    workers: p.workers.map((w) => ({
      id: w.id,
      address: w.address,
      hostname: w.hostname,
      state: stateFromProto(w.state),
      resources: { total: resourcesFromProto(w.total), available: resourcesFromProto(w.available) },
      lastHeartbeatMs: Number(w.last_heartbeat_ms),
      registeredAtMs: Number(w.registered_at_ms),
    })),
    jobs: p.jobs.map((j) => ({ id: j.id, state: j.state })),
  };
}
