/**
 * Output batches written as parquet files, named as `dpl run -o` / `dpl submit -o` name them:
 * the one writer the executors' `writeTo`, the head (a detached job's outputs) and `dpl job
 * attach` share.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Table } from 'apache-arrow';
import { parquetFromIpc, writeParquet, type ParquetCompression } from '../data/parquet';
import { ipcOfOutput } from './encoded-output';

/**
 * The file name of an output batch: `<runId>-<n>.parquet`, or `<runId>-<task>-<n>.parquet`
 * when several sinks share a folder. Named after the batch's id (the sink call's number), not
 * the arrival order: a batch delivered after a recovery, or a run written again, maps to the
 * same file.
 */
export function outputFileName(runId: string, batch: { id: string; task: string }, oneSinkPerFolder: boolean): string {
  const seq = batch.id.slice(batch.id.lastIndexOf('#') + 1);
  return oneSinkPerFolder ? `${runId}-${seq}.parquet` : `${runId}-${batch.task}-${seq}.parquet`;
}

/** Writes `bytes` to a hidden file beside `file`, then renames it: readers never see half a file. */
export async function writeFileAtomically(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp`);
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

export interface OutputFilesOptions {
  /** A `task=<name>/` folder per sink (hive style). */
  partition: boolean;
  /** Only one sink writes into each folder: its name is left out of the file names. */
  oneSinkPerFolder: boolean;
  compression?: ParquetCompression;
}

/** Writes a run's output batches under one folder, each file whole or not at all. */
export class OutputFiles {
  private readonly made = new Set<string>();

  constructor(
    readonly dir: string,
    readonly runId: string,
    private readonly options: OutputFilesOptions,
  ) {}

  /** Writes one batch (from the IPC bytes it arrived as, if it did); resolves with its file's path. */
  async write(batch: { id: string; task: string; data: Table }): Promise<string> {
    const dir = this.options.partition ? join(this.dir, `task=${batch.task}`) : this.dir;
    if (!this.made.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.made.add(dir);
    }
    const file = join(dir, outputFileName(this.runId, batch, this.options.oneSinkPerFolder));
    const compression = this.options.compression;
    const ipc = ipcOfOutput(batch);
    await writeFileAtomically(file, ipc !== undefined ? parquetFromIpc(ipc, { compression }) : writeParquet(batch.data, { compression }));
    return file;
  }
}
