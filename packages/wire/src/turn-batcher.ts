/**
 * Gathers messages over one turn of the event loop and hands them on together, so that a busy
 * process sends one message per peer per turn instead of one per call (Dask's `BatchedSend`).
 *
 * Items pushed in the same turn are flushed once, in the loop's check phase (`setImmediate`):
 * after the poll phase has run every I/O callback that was ready, so answers that arrived on
 * several sockets at once leave in one message. A batch is flushed early when it reaches
 * `maxItems` or `maxBytes` (gRPC's 4 MiB message limit must hold), and items keep their order.
 * @internal
 */

/** Options of {@link TurnBatcher}. */
export interface TurnBatcherOptions {
  /** Items per batch at most. @default 4096 */
  maxItems?: number;
  /** Bytes per batch at most (as `push` counts them); a single larger item goes alone. @default 3 MiB */
  maxBytes?: number;
}

/** The most bytes a batch carries by default: under gRPC's 4 MiB message limit with room for headers. */
export const DEFAULT_BATCH_MAX_BYTES = 3 * 1024 * 1024;
const DEFAULT_BATCH_MAX_ITEMS = 4096;

export class TurnBatcher<T> {
  private items: T[] = [];
  private bytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private readonly maxItems: number;
  private readonly maxBytes: number;

  constructor(
    private readonly send: (items: T[]) => void,
    options: TurnBatcherOptions = {},
  ) {
    this.maxItems = options.maxItems ?? DEFAULT_BATCH_MAX_ITEMS;
    this.maxBytes = options.maxBytes ?? DEFAULT_BATCH_MAX_BYTES;
  }

  /** Items waiting for the flush. */
  get size(): number {
    return this.items.length;
  }

  /** Adds an item of about `bytes` bytes; it leaves at the end of this turn at the latest. */
  push(item: T, bytes = 0): void {
    if (this.items.length > 0 && this.bytes + bytes > this.maxBytes) this.flush();
    this.items.push(item);
    this.bytes += bytes;
    if (this.items.length >= this.maxItems || this.bytes >= this.maxBytes) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Sends what is waiting now (before a message that must follow it). */
  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    this.send(items);
  }

  /** Drops what is waiting (the peer is gone). */
  clear(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.items = [];
    this.bytes = 0;
  }
}
