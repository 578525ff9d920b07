/**
 * The cluster's status as the SDK, the CLI and the dashboard see it, and its proto codec.
 */
import type { ResourceMap } from '@dpl/core';
import type { GetStatusResponse, GetStatusResponse__Input } from './generated/dpl/v1/GetStatusResponse';
import type { WorkerState as WorkerStateProto } from './generated/dpl/v1/WorkerState';
import { resourcesFromProto, resourcesToProto } from './codecs';
import type { ObjectStoreStats, ObjectStoreStats__Input } from './generated/dpl/v1/ObjectStoreStats';

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
  /** Its object store as of its last heartbeat (budgetBytes: -1 for none). */
  objectStore: ObjectStoreInfo;
}

/** A worker's object store as of its last heartbeat. */
export interface ObjectStoreInfo {
  memoryBytes: number;
  peakMemoryBytes: number;
  diskBytes: number;
  spills: number;
  objects: number;
  budgetBytes: number;
  /** Task outputs kept as views so far: rows of their inputs, returned unchanged (no bytes written). */
  views: number;
}

const NO_STORE: ObjectStoreInfo = { memoryBytes: 0, peakMemoryBytes: 0, diskBytes: 0, spills: 0, objects: 0, budgetBytes: -1, views: 0 };

/** Object store figures from their message (zeros when absent). */
export function objectStoreFromProto(p: ObjectStoreStats | null | undefined): ObjectStoreInfo {
  if (p === null || p === undefined) return { ...NO_STORE };
  const budget = Number(p.budget_bytes);
  return {
    memoryBytes: Number(p.memory_bytes),
    peakMemoryBytes: Number(p.peak_memory_bytes),
    diskBytes: Number(p.disk_bytes),
    spills: Number(p.spills),
    objects: Number(p.objects),
    // The largest uint64 means no budget.
    budgetBytes: budget >= Number.MAX_SAFE_INTEGER ? -1 : budget,
    views: Number(p.views),
  };
}

/** The message of object store figures. */
export function objectStoreToProto(s: ObjectStoreInfo): ObjectStoreStats__Input {
  return {
    memory_bytes: String(s.memoryBytes),
    peak_memory_bytes: String(s.peakMemoryBytes),
    disk_bytes: String(s.diskBytes),
    spills: String(s.spills),
    objects: String(s.objects),
    budget_bytes: s.budgetBytes < 0 ? '18446744073709551615' : String(s.budgetBytes),
    views: String(s.views),
  };
}

/** One job as the head sees it (running, or among the last ones that ended). */
export interface JobInfo {
  id: string;
  /** running, finished, failed or cancelled. */
  state: string;
  /** Milliseconds since the epoch (head clock); 0 when the head did not say. */
  startedAtMs: number;
  /** Undefined while it runs. */
  endedAtMs: number | undefined;
  /** Output batches and rows so far (delivered to its client, or written by the head). */
  outputs: number;
  rows: number;
  /** Why it failed. */
  error: string | undefined;
  /** Submitted with --detach: it runs without its client, its outputs written under outDir. */
  detached: boolean;
  outDir: string | undefined;
}

/**
 * What the cluster's work needs, for an autoscaler (scale on demand, not on utilization): the
 * calls that wait for room, by the resources each asks for, and per resource the amount in use
 * plus the amount waiting. Workers to run it all: `resources.CPU / CPUs per worker`, rounded up.
 */
export interface ClusterDemand {
  waiting: { resources: ResourceMap; calls: number }[];
  /** Held by running calls now plus asked for by the waiting ones. */
  resources: ResourceMap;
  /** Asked for by the waiting calls only. */
  pending: ResourceMap;
}

/** What `cluster.status()`, `dpl status --json` and the dashboard's `/api/status` return. */
export interface ClusterStatus {
  workers: WorkerInfo[];
  jobs: JobInfo[];
  version: string;
  demand: ClusterDemand;
}

/** No demand: nothing waits, nothing runs. */
export const NO_DEMAND: ClusterDemand = Object.freeze({ waiting: [], resources: {}, pending: {} });

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
      object_store: objectStoreToProto(w.objectStore),
    })),
    jobs: s.jobs.map((j) => ({
      id: j.id,
      state: j.state,
      started_at_ms: String(j.startedAtMs),
      ended_at_ms: String(j.endedAtMs ?? 0),
      outputs: String(j.outputs),
      rows: String(j.rows),
      error: j.error ?? '',
      detached: j.detached,
      out_dir: j.outDir ?? '',
    })),
    demand: {
      waiting: s.demand.waiting.map((w) => ({ resources: resourcesToProto(w.resources), calls: String(w.calls) })),
      resources: resourcesToProto(s.demand.resources),
      pending: resourcesToProto(s.demand.pending),
    },
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
      objectStore: objectStoreFromProto(w.object_store),
    })),
    jobs: p.jobs.map((j) => ({
      id: j.id,
      state: j.state,
      startedAtMs: Number(j.started_at_ms),
      endedAtMs: Number(j.ended_at_ms) > 0 ? Number(j.ended_at_ms) : undefined,
      outputs: Number(j.outputs),
      rows: Number(j.rows),
      error: j.error === '' ? undefined : j.error,
      detached: j.detached,
      outDir: j.out_dir === '' ? undefined : j.out_dir,
    })),
    demand: {
      waiting: (p.demand?.waiting ?? []).map((w) => ({ resources: resourcesFromProto(w.resources), calls: Number(w.calls) })),
      resources: resourcesFromProto(p.demand?.resources),
      pending: resourcesFromProto(p.demand?.pending),
    },
  };
}
