/**
 * Module bundles uploaded by clients, by sha256, served to workers.
 *
 * The store holds at most `capacityBytes`: past it, the bundles used longest ago that no running
 * job needs are dropped (a client uploads its bundle again when the head no longer has it).
 */
import { createHash } from 'node:crypto';

/** @default 64 MiB */
export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;
/** @default 128 MiB: two bundles of the largest size, or many ordinary ones (most are kilobytes). */
export const DEFAULT_MODULE_CAPACITY_BYTES = 2 * DEFAULT_MAX_MODULE_BYTES;

export interface ModuleStoreOptions {
  /** The largest bundle accepted. @default DEFAULT_MAX_MODULE_BYTES */
  maxBytes?: number;
  /** Bytes of bundles kept. @default DEFAULT_MODULE_CAPACITY_BYTES */
  capacityBytes?: number;
  /** Whether a running job uses the bundle (it is then never dropped). */
  inUse?: (hash: string) => boolean;
}

export class ModuleStore {
  /** In order of last use, the oldest first. */
  private readonly modules = new Map<string, Uint8Array>();
  private held = 0;
  readonly maxBytes: number;
  private readonly capacity: number;
  private readonly inUse: (hash: string) => boolean;

  constructor(options: ModuleStoreOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_MODULE_BYTES;
    this.capacity = Math.max(options.capacityBytes ?? DEFAULT_MODULE_CAPACITY_BYTES, this.maxBytes);
    this.inUse = options.inUse ?? (() => false);
  }

  /** Whether the head has the bundle; a client asking counts as a use (it is about to run it). */
  has(hash: string): boolean {
    return this.touch(hash) !== undefined;
  }

  get(hash: string): Uint8Array | undefined {
    return this.touch(hash);
  }

  /** Bytes of bundles held now. */
  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.modules.size;
  }

  /**
   * Stores a bundle after checking its size and hash, then drops the bundles used longest ago
   * that no running job needs while the store holds more than its capacity.
   * @throws Error naming the rule that was broken.
   */
  put(hash: string, bytes: Uint8Array): void {
    if (bytes.byteLength > this.maxBytes) {
      throw new Error(`module bundle is ${bytes.byteLength} bytes; the limit is ${this.maxBytes} bytes`);
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== hash) throw new Error(`module bundle hash is ${actual}, not the announced ${hash}`);
    this.drop(hash);
    this.modules.set(hash, bytes);
    this.held += bytes.byteLength;
    for (const [h] of this.modules) {
      if (this.held <= this.capacity) break;
      if (h !== hash && !this.inUse(h)) this.drop(h);
    }
  }

  private touch(hash: string): Uint8Array | undefined {
    const bytes = this.modules.get(hash);
    if (bytes === undefined) return undefined;
    this.modules.delete(hash);
    this.modules.set(hash, bytes);
    return bytes;
  }

  private drop(hash: string): void {
    const bytes = this.modules.get(hash);
    if (bytes === undefined) return;
    this.modules.delete(hash);
    this.held -= bytes.byteLength;
  }
}
