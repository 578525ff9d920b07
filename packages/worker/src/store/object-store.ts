/**
 * A worker's store of task outputs, as Arrow IPC bytes, keyed by object id. Outputs stay here
 * until the head releases them; other workers fetch them through the data server.
 *
 * Memory has a budget: past it, the oldest objects are written to a spill directory and dropped
 * from memory (they are read back, or streamed from the file, when asked for), and a spilled
 * object's file is removed when the object is released.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ObjectStoreOptions {
  /** Bytes kept in memory before the oldest objects spill to disk. @default Infinity */
  memoryBytes?: number;
  /**
   * The folder under which spilled objects go: the store makes a private folder of its own in
   * it (`dpl-spill-XXXXXX`, mode 0700, removed by `close()`). @default the OS temporary directory
   */
  spillDir?: string;
}

/** Where one object is. */
type Entry =
  | { where: 'memory'; bytes: Uint8Array }
  | { where: 'spilling'; bytes: Uint8Array; path: string; deleted: boolean }
  | { where: 'disk'; path: string; size: number };

/** An object to serve: its bytes, or the file that holds them. */
export type StoredObject = { bytes: Uint8Array } | { path: string; size: number };

export interface ObjectStoreStats {
  /** Bytes in memory now (including objects being written out). */
  memoryBytes: number;
  /** The most bytes memory held at once. */
  peakMemoryBytes: number;
  /** Bytes in spill files now. */
  diskBytes: number;
  /** Objects written to disk so far. */
  spills: number;
  objects: number;
}

export class ObjectStore {
  private readonly objects = new Map<string, Entry>();
  private readonly budget: number;
  /** This store's own spill folder (made at once when there is a budget to spill past). */
  private readonly spillDir: string | undefined;
  private used = 0;
  /** Bytes of `used` being written out now (they leave memory when their write ends). */
  private spilling = 0;
  private peak = 0;
  private onDisk = 0;
  private spillCount = 0;
  private fileSeq = 0;

  constructor(options: ObjectStoreOptions = {}) {
    this.budget = options.memoryBytes ?? Infinity;
    this.spillDir = Number.isFinite(this.budget) ? makeSpillDir(options.spillDir ?? tmpdir()) : undefined;
  }

  put(id: string, bytes: Uint8Array): void {
    this.delete(id);
    this.objects.set(id, { where: 'memory', bytes });
    this.used += bytes.byteLength;
    this.peak = Math.max(this.peak, this.used);
    if (this.used > this.budget) this.spill();
  }

  /** The object's bytes, read back from disk if it was spilled; undefined when not here. */
  async read(id: string): Promise<Uint8Array | undefined> {
    const e = this.objects.get(id);
    if (e === undefined) return undefined;
    if (e.where !== 'disk') return e.bytes;
    try {
      const buf = await readFile(e.path);
      // 8-byte aligned for Arrow: a buffer of its own.
      return buf.byteOffset % 8 === 0 ? buf : new Uint8Array(buf);
    } catch {
      return undefined; // released while being read
    }
  }

  /** The object's bytes in memory, or the file that holds them; undefined when not here. */
  open(id: string): StoredObject | undefined {
    const e = this.objects.get(id);
    if (e === undefined) return undefined;
    return e.where === 'disk' ? { path: e.path, size: e.size } : { bytes: e.bytes };
  }

  has(id: string): boolean {
    return this.objects.has(id);
  }

  delete(id: string): void {
    const e = this.objects.get(id);
    if (e === undefined) return;
    this.objects.delete(id);
    if (e.where === 'memory') this.used -= e.bytes.byteLength;
    else if (e.where === 'spilling') e.deleted = true; // its write finishes, then the file goes
    else {
      this.onDisk -= e.size;
      void unlink(e.path).catch(() => undefined);
    }
  }

  /** Drops every object whose id starts with `prefix` (a finished or cancelled job's). */
  deletePrefix(prefix: string): void {
    for (const id of [...this.objects.keys()]) if (id.startsWith(prefix)) this.delete(id);
  }

  /** Drops every object and removes the store's spill folder. */
  close(): void {
    this.objects.clear();
    if (this.spillDir !== undefined) rmSync(this.spillDir, { recursive: true, force: true });
  }

  /** Bytes held in memory. */
  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.objects.size;
  }

  stats(): ObjectStoreStats {
    return { memoryBytes: this.used, peakMemoryBytes: this.peak, diskBytes: this.onDisk, spills: this.spillCount, objects: this.objects.size };
  }

  /** Writes the oldest in-memory objects out until what stays in memory fits the budget. */
  private spill(): void {
    // Bytes already being written out leave memory soon: they count as gone.
    let over = this.used - this.spilling - this.budget;
    for (const [id, e] of this.objects) {
      if (over <= 0) break;
      if (e.where !== 'memory') continue;
      over -= e.bytes.byteLength;
      void this.spillOne(id, e.bytes);
    }
  }

  private async spillOne(id: string, bytes: Uint8Array): Promise<void> {
    if (this.spillDir === undefined) return; // no budget, nothing to spill past
    const path = join(this.spillDir, `${++this.fileSeq}.arrow`);
    const entry: Entry & { where: 'spilling' } = { where: 'spilling', bytes, path, deleted: false };
    this.objects.set(id, entry);
    this.spilling += bytes.byteLength;
    try {
      await writeFile(path, bytes);
    } catch {
      this.spilling -= bytes.byteLength;
      void unlink(path).catch(() => undefined); // a partial file of a full disk
      // Disk full or gone: the object stays in memory, over the budget, rather than be lost.
      if (!entry.deleted) this.objects.set(id, { where: 'memory', bytes });
      else this.used -= bytes.byteLength;
      return;
    }
    this.spilling -= bytes.byteLength;
    this.used -= bytes.byteLength;
    if (entry.deleted || this.objects.get(id) !== entry) {
      void unlink(path).catch(() => undefined);
      return;
    }
    this.objects.set(id, { where: 'disk', path, size: bytes.byteLength });
    this.onDisk += bytes.byteLength;
    this.spillCount++;
  }
}

/**
 * Makes a store's private spill folder under `parent` (created when missing).
 * @throws Error naming the folder when it cannot be made (say, `parent` is a file).
 */
function makeSpillDir(parent: string): string {
  try {
    mkdirSync(parent, { recursive: true });
    return mkdtempSync(join(parent, 'dpl-spill-'));
  } catch (e) {
    throw new Error(`cannot make a spill folder under ${parent}: ${(e as Error).message}; give --spill-dir a folder this user can write`, {
      cause: e,
    });
  }
}
