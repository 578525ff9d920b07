/**
 * The head's registry of workers: who is alive, what each has in total and free, and when each
 * was last heard from. Pure bookkeeping with an injected clock; the gRPC layer feeds it.
 */
import { randomBytes } from 'node:crypto';
import { ResourceSet, type ResourceMap } from '@dpl/core';
import { NO_DEMAND, type ClusterStatus, type ObjectStoreInfo, type WorkerInfo, type WorkerState } from '@dpl/wire';

/** What a worker tells the head when it registers. */
export interface WorkerRegistration {
  address: string;
  hostname: string;
  pid: number;
  resources: ResourceMap;
}

/** One registered worker. */
export interface WorkerRecord {
  readonly id: string;
  readonly address: string;
  readonly hostname: string;
  readonly pid: number;
  /** What it advertises (changed by `update()`). */
  total: ResourceSet;
  available: ResourceSet;
  /**
   * Resources still held by running calls beyond a lowered total: given back by those calls,
   * they vanish instead of becoming available.
   */
  withheld: ResourceSet;
  state: WorkerState;
  lastHeartbeatMs: number;
  /** As of its last heartbeat. */
  objectStore: ObjectStoreInfo;
  bytesFetched: number;
  bytesServed: number;
  readonly registeredAtMs: number;
  /** Why it died, once it has. */
  deathReason?: string;
}

/** How many dead workers `status()` still lists (the most recent ones). */
export const DEAD_WORKERS_KEPT = 50;

export class WorkerRegistry {
  private readonly live = new Map<string, WorkerRecord>();
  private readonly dead: WorkerRecord[] = [];
  private next = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Adds a worker and returns its record. Every registration is a new worker with a new id,
   * also when the same process registers again after losing the head.
   * @throws TypeError when the resources are malformed.
   */
  register(reg: WorkerRegistration): WorkerRecord {
    const total = ResourceSet.from(reg.resources);
    const at = this.now();
    // A random suffix keeps ids unique across head restarts (workers re-register as new).
    const host = reg.hostname.replace(/[^A-Za-z0-9-]/g, '').slice(0, 20) || 'host';
    const id = `w${++this.next}-${host}-${randomBytes(2).toString('hex')}`;
    const rec: WorkerRecord = {
      id,
      address: reg.address,
      hostname: reg.hostname,
      pid: reg.pid,
      total,
      available: total,
      state: 'alive',
      lastHeartbeatMs: at,
      registeredAtMs: at,
      objectStore: { memoryBytes: 0, peakMemoryBytes: 0, diskBytes: 0, spills: 0, objects: 0, budgetBytes: -1, views: 0 },
      withheld: ResourceSet.EMPTY,
      bytesFetched: 0,
      bytesServed: 0,
    };
    this.live.set(id, rec);
    this.liveList = undefined;
    this.cpus = undefined;
    return rec;
  }

  /** Records a heartbeat; false when the worker is not (or no longer) registered. */
  heartbeat(id: string, figures?: { objectStore: ObjectStoreInfo; bytesFetched: number; bytesServed: number }): boolean {
    const rec = this.live.get(id);
    if (rec === undefined) return false;
    rec.lastHeartbeatMs = this.now();
    if (figures !== undefined) Object.assign(rec, figures);
    return true;
  }

  /** Takes a call's request from a worker's free resources. */
  take(w: WorkerRecord, request: ResourceSet): void {
    w.available = w.available.subtract(request);
  }

  /** Gives a finished call's request back (less what a lowered total withholds). */
  giveBack(w: WorkerRecord, request: ResourceSet): void {
    if (w.withheld.isEmpty()) {
      w.available = w.available.add(request);
      return;
    }
    const withheld = w.withheld.toJSON();
    const back: Record<string, number> = {};
    const absorbed: Record<string, number> = {};
    for (const [k, v] of Object.entries(request.toJSON())) {
      const absorb = Math.min(withheld[k] ?? 0, v);
      absorbed[k] = absorb;
      back[k] = v - absorb;
    }
    w.withheld = w.withheld.subtract(ResourceSet.from(absorbed));
    w.available = w.available.add(ResourceSet.from(back));
  }

  /**
   * Changes what a live worker advertises: the given names take the given amounts, the others
   * stay. Calls running keep what they hold; lowering below what is in use frees nothing new
   * until they finish.
   * @throws DplError(NOT_FOUND-like) via TypeError when the worker is unknown; TypeError for bad amounts.
   */
  update(id: string, changes: ResourceMap): WorkerRecord {
    const w = this.live.get(id);
    if (w === undefined) throw new TypeError(`no live worker ${JSON.stringify(id)}; see dpl status for the worker ids`);
    const next = ResourceSet.from({ ...w.total.toJSON(), ...changes });
    const total = next.toJSON();
    const old = w.total.toJSON();
    const free = w.available.toJSON();
    const held = w.withheld.toJSON();
    const available: Record<string, number> = {};
    const withheld: Record<string, number> = {};
    for (const k of new Set([...Object.keys(total), ...Object.keys(old)])) {
      // In use now by running calls (what they will give back), counting what is withheld already.
      const used = (old[k] ?? 0) - (free[k] ?? 0) + (held[k] ?? 0);
      const t = total[k] ?? 0;
      available[k] = Math.max(0, t - used);
      withheld[k] = Math.max(0, used - t);
    }
    // Every new value is built (and so checked) before any is assigned.
    const nextAvailable = ResourceSet.from(available);
    const nextWithheld = ResourceSet.from(withheld);
    w.total = next;
    w.available = nextAvailable;
    w.withheld = nextWithheld;
    this.cpus = undefined;
    return w;
  }

  /** Stops (or restarts) new placements on a live worker; its running calls finish. */
  drain(id: string, drain: boolean): WorkerRecord {
    const w = this.live.get(id);
    if (w === undefined) throw new TypeError(`no live worker ${JSON.stringify(id)}; see dpl status for the worker ids`);
    w.state = drain ? 'draining' : 'alive';
    this.cpus = undefined;
    return w;
  }

  /** Removes a worker from the live set; its resources leave the cluster. Idempotent. */
  markDead(id: string, reason: string): WorkerRecord | undefined {
    const rec = this.live.get(id);
    if (rec === undefined) return undefined;
    this.live.delete(id);
    this.liveList = undefined;
    this.cpus = undefined;
    rec.state = 'dead';
    rec.available = ResourceSet.EMPTY;
    rec.deathReason = reason;
    this.dead.push(rec);
    if (this.dead.length > DEAD_WORKERS_KEPT) this.dead.shift();
    return rec;
  }

  /** The live workers silent for longer than `timeoutMs`. */
  silent(timeoutMs: number): WorkerRecord[] {
    const now = this.now();
    return [...this.live.values()].filter((w) => now - w.lastHeartbeatMs > timeoutMs);
  }

  get(id: string): WorkerRecord | undefined {
    return this.live.get(id);
  }

  /** Live workers, in registration order. */
  workers(): readonly WorkerRecord[] {
    // Placement reads this for every call: one array, rebuilt only when membership changes.
    this.liveList ??= [...this.live.values()];
    return this.liveList;
  }

  /** CPUs the alive workers advertise in total (read on every scheduling pass; cached). */
  get liveCpus(): number {
    if (this.cpus === undefined) {
      this.cpus = 0;
      for (const w of this.workers()) if (w.state === 'alive') this.cpus += w.total.get('CPU');
    }
    return this.cpus;
  }

  private liveList: WorkerRecord[] | undefined;
  private cpus: number | undefined;

  /** The live workers' resources added up (for display only: placement never sums workers). */
  totals(): { total: ResourceSet; available: ResourceSet } {
    let total = ResourceSet.EMPTY;
    let available = ResourceSet.EMPTY;
    for (const w of this.live.values()) {
      total = total.add(w.total);
      available = available.add(w.available);
    }
    return { total, available };
  }

  /** Live workers, then the most recently dead ones. */
  status(version: string): ClusterStatus {
    const info = (w: WorkerRecord): WorkerInfo => ({
      id: w.id,
      address: w.address,
      hostname: w.hostname,
      state: w.state,
      resources: { total: w.total.toJSON(), available: w.available.toJSON() },
      lastHeartbeatMs: w.lastHeartbeatMs,
      registeredAtMs: w.registeredAtMs,
      objectStore: { ...w.objectStore },
    });
    return { workers: [...this.live.values(), ...[...this.dead].reverse()].map(info), jobs: [], version, demand: NO_DEMAND };
  }
}
