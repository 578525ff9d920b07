/**
 * The dpl daemons running on this machine for this user. `dpl head start` and `dpl worker start`
 * each leave a record while they run (pid, process start time, kind, address; a head also its
 * token) in a private folder, `~/.dpl/run` by default (`DPL_RUN_DIR` in the CLI). Clients of the
 * same user read them: `connect()` finds a local head's token there, `dpl status` the only local
 * head, `dpl stop` the daemons to stop.
 *
 * A record is trusted only as far as it can be checked: the folder must be private to this
 * user, and a recorded process must still be the one that wrote it (same PID, same start time in
 * `/proc/PID/stat`, owned by this user). Anything else is stale and removed, so a planted or
 * outdated record never sends a signal to an unrelated process.
 */
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { defaultRunDir, dplHomeDir, ensurePrivateDir, privateDir, readPrivateFile, writePrivateFile } from '@dpl/core';
import { isLoopbackHost } from '@dpl/wire';

/** One running daemon, as its record says. */
export interface DaemonRecord {
  pid: number;
  /** The process's start time in clock ticks since boot (`/proc/PID/stat` field 22). */
  startTime: string;
  kind: 'head' | 'worker';
  /** gRPC `host:port` of a head; data-server `host:port` of a worker. */
  address: string;
  /** A worker's head. */
  head?: string;
  /** A head's token (the record file is mode 0600 in a 0700 folder). */
  token?: string;
  /** A head's dashboard `host:port`. */
  dashboardAddress?: string;
  startedAt: string;
}

/**
 * The start time of a running process (clock ticks since boot), or undefined when there is no
 * such process (or it has exited and waits to be reaped).
 */
export function processStartTime(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Makes the run folder private (and `~/.dpl` with it, for the default one). */
function ensureRunDir(runDir: string): string {
  // ~/.dpl/run: ~/.dpl is made private too. Elsewhere (DPL_RUN_DIR) only the folder itself.
  return runDir === join(dplHomeDir(), 'run') ? privateDir('run') : ensurePrivateDir(runDir);
}

/**
 * Records this process as a running daemon in `runDir`; returns a function that removes the
 * record (also done at exit).
 * @throws DplError(INSECURE) when the folder is not private to this user.
 */
export function recordDaemon(runDir: string, record: Omit<DaemonRecord, 'pid' | 'startTime' | 'startedAt'>): () => void {
  const dir = ensureRunDir(runDir);
  const full: DaemonRecord = {
    ...record,
    pid: process.pid,
    startTime: processStartTime('self') ?? '',
    startedAt: new Date().toISOString(),
  };
  const file = join(dir, `${record.kind}-${process.pid}.json`);
  writePrivateFile(file, JSON.stringify(full));
  const remove = (): void => rmSync(file, { force: true });
  process.once('exit', remove);
  return remove;
}

/** Whether `pid` is still the process that wrote a record: same start time, owned by this user. */
function isRecordedProcess(rec: DaemonRecord): boolean {
  if (!Number.isInteger(rec.pid) || rec.pid <= 0) return false;
  const started = processStartTime(rec.pid);
  if (started === undefined || started !== rec.startTime) return false;
  try {
    const uid = process.getuid?.();
    return uid === undefined || statSync(`/proc/${rec.pid}`).uid === uid;
  } catch {
    return false;
  }
}

function isRecord(v: unknown): v is DaemonRecord {
  const r = v as Partial<DaemonRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.pid === 'number' &&
    typeof r.startTime === 'string' &&
    (r.kind === 'head' || r.kind === 'worker') &&
    typeof r.address === 'string' &&
    (r.token === undefined || typeof r.token === 'string')
  );
}

/**
 * The daemons of this user recorded in `runDir` that are still running, oldest first. Stale,
 * malformed or unverifiable records are removed. A folder that does not exist means none; one
 * that is not private is refused.
 * @throws DplError(INSECURE) when the folder exists but is not private to this user.
 */
export function listDaemons(runDir: string = defaultRunDir()): DaemonRecord[] {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return [];
  }
  ensureRunDir(runDir); // refuses a folder someone else owns or can write
  const out: DaemonRecord[] = [];
  for (const n of names.filter((x) => x.endsWith('.json'))) {
    const file = join(runDir, n);
    let rec: unknown;
    try {
      rec = JSON.parse(readPrivateFile(file).toString('utf8'));
    } catch {
      rmSync(file, { force: true });
      continue;
    }
    if (isRecord(rec) && isRecordedProcess(rec)) out.push(rec);
    else rmSync(file, { force: true });
  }
  return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}

/** Splits `host:port` (IPv6 in brackets). */
function splitHostPort(address: string): { host: string; port: string } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, '').toLowerCase(), port: address.slice(i + 1) };
}

/**
 * Whether a client connecting to `wanted` reaches the head recorded at `recorded` on this
 * machine: the same port, and the same host, or both loopback, or the head on every address.
 */
function sameLocalAddress(recorded: string, wanted: string): boolean {
  const r = splitHostPort(recorded);
  const w = splitHostPort(wanted);
  if (r.port !== w.port) return false;
  if (r.host === w.host) return true;
  if (r.host === '0.0.0.0' || r.host === '::') return isLoopbackHost(w.host) || w.host === '0.0.0.0';
  return isLoopbackHost(r.host) && isLoopbackHost(w.host);
}

/**
 * The head of this user running on this machine: the one at `address` when given, else the only
 * one recorded (undefined when there is none, or several and no address).
 * @throws DplError(INSECURE) when the run folder is not private to this user.
 */
export function localHead(runDir: string = defaultRunDir(), address?: string): DaemonRecord | undefined {
  const heads = listDaemons(runDir).filter((d) => d.kind === 'head');
  if (address === undefined) return heads.length === 1 ? heads[0] : undefined;
  return heads.reverse().find((h) => sameLocalAddress(h.address, address));
}

/**
 * The token to present to the head at `address`: `token` when given, else the one the head of
 * this user on this machine recorded (none when there is no such head, or its record cannot be
 * read safely).
 */
export function tokenFor(address: string, token: string | undefined, runDir?: string): string | undefined {
  if (token !== undefined) return token;
  try {
    return localHead(runDir, address)?.token;
  } catch {
    return undefined;
  }
}
