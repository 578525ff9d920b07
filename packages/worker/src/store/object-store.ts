/**
 * A worker's store of task outputs, as Arrow IPC bytes, keyed by object id. Outputs stay here
 * until the head releases them; other workers fetch them through the data server.
 */
export class ObjectStore {
  private readonly objects = new Map<string, Uint8Array>();
  private used = 0;

  put(id: string, bytes: Uint8Array): void {
    const old = this.objects.get(id);
    if (old !== undefined) this.used -= old.byteLength;
    this.objects.set(id, bytes);
    this.used += bytes.byteLength;
  }

  get(id: string): Uint8Array | undefined {
    return this.objects.get(id);
  }

  has(id: string): boolean {
    return this.objects.has(id);
  }

  delete(id: string): void {
    const old = this.objects.get(id);
    if (old === undefined) return;
    this.used -= old.byteLength;
    this.objects.delete(id);
  }

  /** Drops every object whose id starts with `prefix` (a finished or cancelled job's). */
  deletePrefix(prefix: string): void {
    for (const id of [...this.objects.keys()]) if (id.startsWith(prefix)) this.delete(id);
  }

  /** Bytes held. */
  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.objects.size;
  }
}
