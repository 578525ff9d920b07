/**
 * Placement: which worker runs a task call. A pure function of the workers' free resources and
 * of where the call's input bytes live.
 *
 * Rules: only a live worker whose *free* resources fit the whole request qualifies (workers are
 * never summed); among those, the one that already holds the most input bytes wins (no transfer),
 * then the least loaded (the most free CPU after placement, as a fraction of its total) of a
 * bounded sample, then scan order.
 */
import type { ResourceSet } from '@dpl/core';

/** What placement needs to know of a worker. */
export interface PlacementWorker {
  readonly id: string;
  readonly state: 'alive' | 'draining' | 'dead';
  readonly total: ResourceSet;
  readonly available: ResourceSet;
}

/** The outcome for one request. */
export type Placement =
  | { kind: 'placed'; workerId: string }
  /** Some live worker could run it, but none has the resources free now. */
  | { kind: 'wait' }
  /** No live worker could ever run it: its total resources are too small everywhere. */
  | { kind: 'infeasible'; shortfall: string };

/** How many fitting workers the least-loaded choice compares (when no input is local). */
export const PLACEMENT_SAMPLE = 16;

export interface PlaceOptions {
  /** Worker by id (for the workers holding inputs); without it they are found by a scan. */
  byId?: (id: string) => PlacementWorker | undefined;
  /** Where the least-loaded scan starts (callers rotate it, so the sample moves around). */
  start?: number;
}

/**
 * Chooses a worker for a request: among the workers holding the call's inputs, the one with the
 * most bytes that fits now; else the least loaded of the first {@link PLACEMENT_SAMPLE} workers
 * that fit, scanning from `start` (all of them in a smaller cluster). Cost stays bounded in a large
 * cluster with room; only a cluster with no room left is scanned whole.
 * @param localBytes worker id → bytes of the call's inputs that worker already holds.
 */
export function place(
  request: ResourceSet,
  workers: readonly PlacementWorker[],
  localBytes: ReadonlyMap<string, number> = new Map(),
  options: PlaceOptions = {},
): Placement {
  const cpu = request.get('CPU');
  const loadAfter = (w: PlacementWorker): number => {
    const total = w.total.get('CPU');
    return total === 0 ? 0 : 1 - (w.available.get('CPU') - cpu) / total;
  };
  // 1. A worker that holds input bytes and fits now: the most bytes, then the least loaded.
  if (localBytes.size > 0) {
    let best: PlacementWorker | undefined;
    let bestBytes = -1;
    let bestLoad = Infinity;
    for (const [id, bytes] of localBytes) {
      const w = options.byId !== undefined ? options.byId(id) : workers.find((x) => x.id === id);
      if (w === undefined || w.state !== 'alive' || !w.available.fits(request)) continue;
      const load = loadAfter(w);
      if (bytes > bestBytes || (bytes === bestBytes && load < bestLoad)) {
        best = w;
        bestBytes = bytes;
        bestLoad = load;
      }
    }
    if (best !== undefined) return { kind: 'placed', workerId: best.id };
  }
  // 2. The least loaded of a bounded sample of the workers that fit now.
  const n = workers.length;
  const start = n === 0 ? 0 : (((options.start ?? 0) % n) + n) % n;
  let best: PlacementWorker | undefined;
  let bestLoad = Infinity;
  let found = 0;
  let feasible = false;
  for (let k = 0; k < n && found < PLACEMENT_SAMPLE; k++) {
    const w = workers[(start + k) % n]!;
    if (w.state !== 'alive') continue;
    // What is free never exceeds the total: a fit now is a fit ever (the common case, checked first).
    if (!w.available.fits(request)) {
      if (!feasible && w.total.fits(request)) feasible = true;
      continue;
    }
    found++;
    const load = loadAfter(w);
    if (load < bestLoad) {
      best = w;
      bestLoad = load;
    }
  }
  if (best !== undefined) return { kind: 'placed', workerId: best.id };
  if (feasible) return { kind: 'wait' };
  return { kind: 'infeasible', shortfall: describeShortfall(request, workers) };
}

/** `GPU>=2 (largest live worker has 1)` for each resource no live worker has enough of. */
export function describeShortfall(request: ResourceSet, workers: readonly PlacementWorker[]): string {
  const live = workers.filter((w) => w.state === 'alive');
  const parts: string[] = [];
  for (const [name, amount] of Object.entries(request.toJSON())) {
    const most = Math.max(0, ...live.map((w) => w.total.get(name)));
    if (most < amount) parts.push(`${name}>=${amount} (largest live worker has ${most})`);
  }
  if (parts.length === 0) parts.push('no single live worker has all of it at once');
  return parts.join(', ');
}
