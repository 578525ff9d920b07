/**
 * Placement: which worker runs a task call. A pure function of the workers' free resources and
 * of where the call's input bytes live.
 *
 * Rules: only a live worker whose *free* resources fit the whole request qualifies (workers are
 * never summed); among those, the one that already holds the most input bytes wins (no transfer),
 * then the least loaded (the most free CPU after placement, as a fraction of its total), then
 * registration order.
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

/**
 * Chooses a worker for a request.
 * @param localBytes worker id → bytes of the call's inputs that worker already holds.
 */
export function place(
  request: ResourceSet,
  workers: readonly PlacementWorker[],
  localBytes: ReadonlyMap<string, number> = new Map(),
): Placement {
  let best: PlacementWorker | undefined;
  let bestBytes = -1;
  let bestLoad = Infinity;
  let feasible = false;
  for (const w of workers) {
    if (w.state !== 'alive') continue;
    if (!w.total.fits(request)) continue;
    feasible = true;
    if (!w.available.fits(request)) continue;
    const bytes = localBytes.get(w.id) ?? 0;
    const load = loadAfter(w, request);
    if (bytes > bestBytes || (bytes === bestBytes && load < bestLoad)) {
      best = w;
      bestBytes = bytes;
      bestLoad = load;
    }
  }
  if (best !== undefined) return { kind: 'placed', workerId: best.id };
  if (feasible) return { kind: 'wait' };
  return { kind: 'infeasible', shortfall: describeShortfall(request, workers) };
}

/** The share of a worker's CPUs in use once the request is placed (0 = idle, 1 = full). */
function loadAfter(w: PlacementWorker, request: ResourceSet): number {
  const total = w.total.get('CPU');
  if (total === 0) return 0;
  return 1 - (w.available.get('CPU') - request.get('CPU')) / total;
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
