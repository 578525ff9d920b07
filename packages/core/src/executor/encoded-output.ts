/**
 * An output batch that reached this process as Arrow IPC bytes (from a head): it becomes a
 * Table the first time its `data` is read. A consumer that only counts or stores batches (`dpl
 * run` without `-o` counts rows; `-o` and a detached job's files hand the bytes to the parquet
 * writer) never decodes them.
 */
import type { Table } from 'apache-arrow';
import { DplError, DplErrorCode } from '../errors';
import { decodeIpc } from '../data/ipc';
import type { OutputBatch } from './pipeline-executor';

export class EncodedOutputBatch implements OutputBatch {
  readonly #ipc: Uint8Array;
  #table: Table | undefined;
  declare readonly data: Table;

  /** `rows` as the stream's record batches count them (see `checkIpcStream`). */
  constructor(
    ipc: Uint8Array,
    readonly task: string,
    readonly id: string,
    readonly rows: number,
  ) {
    this.#ipc = ipc;
    // An own, enumerable property as on a batch made in this process: `{ ...batch }` and
    // Object.keys see `data` (and decode it), not the bytes.
    Object.defineProperty(this, 'data', DATA);
  }

  /** The bytes it arrived as. */
  get ipc(): Uint8Array {
    return this.#ipc;
  }

  /** @internal The decoded table (the `data` getter). */
  decoded(): Table {
    if (this.#table === undefined) {
      try {
        this.#table = decodeIpc(this.#ipc);
      } catch (e) {
        throw new DplError(DplErrorCode.INTERNAL, `output batch ${this.id} of task ${JSON.stringify(this.task)} arrived as bytes that are not Arrow IPC (${(e as Error).message})`, { cause: e });
      }
    }
    return this.#table;
  }

  /** What `JSON.stringify` shows: the batch, not its bytes. */
  toJSON(): { task: string; id: string; rows: number } {
    return { task: this.task, id: this.id, rows: this.rows };
  }
}

/** `data`'s descriptor, one for every batch (no closure per batch). */
const DATA: PropertyDescriptor = {
  enumerable: true,
  get(this: EncodedOutputBatch): Table {
    return this.decoded();
  },
};

/** The IPC bytes an output batch arrived as, or undefined for one made in this process. */
export function ipcOfOutput(batch: { data: Table }): Uint8Array | undefined {
  return batch instanceof EncodedOutputBatch ? batch.ipc : undefined;
}
