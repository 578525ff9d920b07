/**
 * Module bundles uploaded by clients, by sha256, served to workers.
 */
import { createHash } from 'node:crypto';

/** @default 64 MiB */
export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;

export class ModuleStore {
  private readonly modules = new Map<string, Uint8Array>();

  constructor(readonly maxBytes = DEFAULT_MAX_MODULE_BYTES) {}

  has(hash: string): boolean {
    return this.modules.has(hash);
  }

  get(hash: string): Uint8Array | undefined {
    return this.modules.get(hash);
  }

  /**
   * Stores a bundle after checking its size and hash.
   * @throws Error naming the rule that was broken.
   */
  put(hash: string, bytes: Uint8Array): void {
    if (bytes.byteLength > this.maxBytes) {
      throw new Error(`module bundle is ${bytes.byteLength} bytes; the limit is ${this.maxBytes} bytes`);
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== hash) throw new Error(`module bundle hash is ${actual}, not the announced ${hash}`);
    this.modules.set(hash, bytes);
  }
}
