/**
 * Which of a worker's GPUs a call uses. Each GPU has capacity 1; a request of g GPUs takes
 * floor(g) whole GPUs plus a share of one more; fractional requests pack onto the fullest GPU
 * that still has room.
 */
export class GpuAllocator {
  private readonly free: number[];

  constructor(count: number) {
    this.free = Array.from({ length: Math.floor(count) }, () => 1);
  }

  /** The ids for a request, or undefined when they are not free (the head should prevent that). */
  allocate(amount: number): number[] | undefined {
    if (amount <= 0) return [];
    const ids: number[] = [];
    let whole = Math.floor(amount + 1e-9);
    const part = Math.round((amount - whole) * 10_000) / 10_000;
    for (let i = 0; i < this.free.length && whole > 0; i++) {
      if (this.free[i] === 1) {
        ids.push(i);
        whole--;
      }
    }
    if (whole > 0) return undefined;
    if (part > 0) {
      const candidates = this.free
        .map((f, i) => ({ f, i }))
        .filter(({ f, i }) => f + 1e-9 >= part && !ids.includes(i))
        .sort((a, b) => a.f - b.f);
      if (candidates.length === 0) return undefined;
      ids.push(candidates[0]!.i);
      this.free[candidates[0]!.i] = Math.round((candidates[0]!.f - part) * 10_000) / 10_000;
    }
    for (const i of ids.slice(0, ids.length - (part > 0 ? 1 : 0))) this.free[i] = 0;
    return ids;
  }

  release(ids: number[], amount: number): void {
    let whole = Math.floor(amount + 1e-9);
    const part = Math.round((amount - whole) * 10_000) / 10_000;
    for (const i of ids) {
      if (whole > 0) {
        this.free[i] = 1;
        whole--;
      } else if (part > 0) {
        this.free[i] = Math.min(1, Math.round((this.free[i]! + part) * 10_000) / 10_000);
      }
    }
  }
}
