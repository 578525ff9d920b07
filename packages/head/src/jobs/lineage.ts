/**
 * A job's lineage: for every batch that is still needed, or that something still needed was
 * computed from, which task made it from which input slices, and where its bytes are now. When a
 * worker dies, the batches only it held are recomputed from this record, walking up to inputs
 * that still exist (or to the source) — as Ray does for lost objects, but for every batch.
 *
 * Memory stays flat for an endless stream: a node is dropped as soon as nothing needs its bytes
 * (`live` false: consumed, or delivered to the client) and no retained node was computed from it.
 * Bytes are freed on the workers as soon as they are consumed, except a generator's batches:
 * a generator cannot be replayed, so its batches are kept while anything computed from them is.
 */
import type { ObjectRef } from './engine';

/** ready: the bytes exist; released: freed on purpose; lost: their worker died. */
export type NodeState = 'ready' | 'released' | 'lost' | 'recomputing';

export interface LineageInput {
  readonly node: LineageNode;
  readonly offset: number;
  readonly rows: number;
}

export interface LineageNode {
  /** The batch id: `s<n>` for a source batch, else the id of the call that made it. */
  readonly id: string;
  /** Where the bytes are; a recompute moves them (the scheduler holds this same object). */
  readonly ref: ObjectRef;
  readonly rows: number;
  /** The task that made it; undefined for a source batch. */
  readonly task: string | undefined;
  readonly inputs: readonly LineageInput[];
  /** A batch of the module's generator: it cannot be made again. */
  readonly generated: boolean;
  /** The scheduler or the delivery queue still needs the bytes. */
  live: boolean;
  /** Retained nodes made from this one. */
  children: number;
  state: NodeState;
  /** Recomputes started for it (a task that keeps failing ends the job). */
  recomputes: number;
}

export class Lineage {
  private readonly nodes = new Map<string, LineageNode>();

  /** `free` drops bytes from the worker that holds them. */
  constructor(private readonly free: (ref: ObjectRef) => void) {}

  /** Nodes retained now (for tests and metrics). */
  get size(): number {
    return this.nodes.size;
  }

  get(id: string): LineageNode | undefined {
    return this.nodes.get(id);
  }

  /** Whether the batch's bytes can be read now (untracked batches count as readable). */
  isReady(id: string): boolean {
    const n = this.nodes.get(id);
    return n === undefined || n.state === 'ready';
  }

  addSource(id: string, ref: ObjectRef, rows: number, generated: boolean): LineageNode {
    return this.add({ id, ref, rows, task: undefined, inputs: [], generated });
  }

  /** A call's output, made by `task` from `inputs` (batch ids with the rows it read). */
  addOutput(id: string, ref: ObjectRef, rows: number, task: string, inputs: readonly { id: string; offset: number; rows: number }[]): LineageNode {
    const resolved: LineageInput[] = [];
    for (const i of inputs) {
      const node = this.nodes.get(i.id);
      // Inputs are live while the call runs, so they are always here.
      if (node === undefined) continue;
      node.children++;
      resolved.push({ node, offset: i.offset, rows: i.rows });
    }
    return this.add({ id, ref, rows, task, inputs: resolved, generated: false });
  }

  /**
   * Nothing needs this batch's bytes any more. Returns false when `ref` is not the tracked
   * node's (a duplicate output): then the caller frees it itself.
   */
  unneeded(id: string, ref: ObjectRef): boolean {
    const node = this.nodes.get(id);
    if (node === undefined || node.ref !== ref) return false;
    node.live = false;
    if (!node.generated) this.freeBytes(node);
    this.maybeDrop(node);
    return true;
  }

  /**
   * A worker died: every node whose bytes only it held is lost. Returns the live ones (someone
   * waits for them: recompute them).
   */
  lostWorker(workerId: string): LineageNode[] {
    const needed: LineageNode[] = [];
    for (const node of this.nodes.values()) {
      if (node.ref.ownerId !== workerId || node.ref.objectId === '') continue;
      if (node.state === 'ready') node.state = 'lost';
      node.ref.objectId = '';
      node.ref.ownerId = '';
      node.ref.ownerAddress = '';
      if (node.live) needed.push(node);
    }
    return needed;
  }

  /**
   * The nodes whose bytes only `workerId` holds and that are needed: live ones, and generated
   * ones (a generator's batch cannot be made again). For a worker leaving gracefully.
   */
  heldBy(workerId: string): LineageNode[] {
    const held: LineageNode[] = [];
    for (const node of this.nodes.values()) {
      if (node.ref.ownerId === workerId && node.ref.objectId !== '' && node.state === 'ready' && (node.live || node.generated)) held.push(node);
    }
    return held;
  }

  /** A recompute stored the node's bytes anew. Inputs read only for it are freed again. */
  recomputed(node: LineageNode, at: { objectId: string; ownerId: string; ownerAddress: string; inline: Uint8Array | undefined; bytes: number }): void {
    Object.assign(node.ref, at);
    node.state = 'ready';
    for (const i of node.inputs) {
      if (!i.node.live && !i.node.generated) this.freeBytes(i.node);
    }
  }

  /** Every node, for tests. */
  all(): IterableIterator<LineageNode> {
    return this.nodes.values();
  }

  private add(n: Pick<LineageNode, 'id' | 'ref' | 'rows' | 'task' | 'inputs' | 'generated'>): LineageNode {
    // One shape for every node (no spread): this runs for every batch.
    const node: LineageNode = {
      id: n.id,
      ref: n.ref,
      rows: n.rows,
      task: n.task,
      inputs: n.inputs,
      generated: n.generated,
      live: true,
      children: 0,
      state: 'ready',
      recomputes: 0,
    };
    this.nodes.set(node.id, node);
    return node;
  }

  private freeBytes(node: LineageNode): void {
    if (node.state !== 'ready') return;
    if (node.ref.objectId === '') {
      // Inline bytes (the default source, small sink outputs) live on the head: keep them
      // while the node is retained; they are cheap to keep and free to recompute from.
      return;
    }
    this.free(node.ref);
    node.state = 'released';
  }

  private maybeDrop(node: LineageNode): void {
    const stack = [node];
    for (let n = stack.pop(); n !== undefined; n = stack.pop()) {
      if (n.live || n.children > 0 || this.nodes.get(n.id) !== n) continue;
      this.nodes.delete(n.id);
      if (n.generated) this.freeBytes(n);
      for (const i of n.inputs) {
        i.node.children--;
        stack.push(i.node);
      }
    }
  }
}
