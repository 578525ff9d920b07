/**
 * The daemons started on this machine: `dpl head start` and `dpl worker start` each leave a
 * small file (pid, kind, address) in a per-user folder while they run, which `dpl stop` reads.
 * The folder is `$DPL_RUN_DIR`, else `<tmp>/dpl-<uid>/daemons`.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface DaemonRecord {
  pid: number;
  kind: 'head' | 'worker';
  address: string;
  startedAt: string;
}

export function daemonsDir(): string {
  return process.env.DPL_RUN_DIR ?? join(tmpdir(), `dpl-${process.getuid?.() ?? 'user'}`, 'daemons');
}

/** Records this process as a running daemon; returns a function that removes the record. */
export function recordDaemon(kind: DaemonRecord['kind'], address: string): () => void {
  const dir = daemonsDir();
  const file = join(dir, `${process.pid}.json`);
  try {
    mkdirSync(dir, { recursive: true });
    const rec: DaemonRecord = { pid: process.pid, kind, address, startedAt: new Date().toISOString() };
    writeFileSync(file, JSON.stringify(rec));
  } catch {
    return () => undefined; // dpl stop will not see it; the daemon runs all the same
  }
  const remove = (): void => rmSync(file, { force: true });
  process.once('exit', remove);
  return remove;
}

/** Whether a process exists and is a dpl daemon (its command line names dpl). */
function isDplProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return /dpl|main\.js/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return true; // no /proc: trust the record
  }
}

/** The recorded daemons still running; stale records are removed. */
export function runningDaemons(): DaemonRecord[] {
  const dir = daemonsDir();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: DaemonRecord[] = [];
  for (const n of names) {
    try {
      const rec = JSON.parse(readFileSync(join(dir, n), 'utf8')) as DaemonRecord;
      if (isDplProcess(rec.pid)) out.push(rec);
      else rmSync(join(dir, n), { force: true });
    } catch {
      rmSync(join(dir, n), { force: true });
    }
  }
  return out;
}

/** Whether the process has exited. */
export function exited(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}
