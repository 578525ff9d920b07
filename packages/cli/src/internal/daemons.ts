/**
 * The daemons started on this machine by this user: `dpl head start` and `dpl worker start`
 * each leave a record while they run (see `recordDaemon` in @dpl/client), which `dpl stop`,
 * `dpl status` and the other client commands read. The folder is `$DPL_RUN_DIR`, else
 * `~/.dpl/run` (private to the user).
 */
import { recordDaemon as writeRecord, type DaemonRecord } from '@dpl/client';
import { runDir } from './cluster-options';
import { printError } from './output';

export type { DaemonRecord };

/**
 * Records this process as a running daemon; returns a function that removes the record. A
 * record that cannot be written is a warning: the daemon runs, but `dpl stop` and the local
 * clients will not find it.
 */
export function recordDaemon(record: Omit<DaemonRecord, 'pid' | 'startTime' | 'startedAt'>): () => void {
  try {
    return writeRecord(runDir(), record);
  } catch (e) {
    printError(`dpl: warning: cannot record this ${record.kind} in ${runDir()} (${(e as Error).message}); dpl stop and local clients will not find it`);
    return () => undefined;
  }
}
