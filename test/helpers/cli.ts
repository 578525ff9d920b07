/**
 * Helpers for end-to-end tests that run the built `dpl` command as a child process: run it to
 * completion (`runDpl`), start it and talk to it (`startDpl`), kill what is left
 * (`killDplProcesses`, for `afterEach`), make temp dirs that are removed after each test
 * (`useTempDirs`), wait for a condition (`waitFor`), and read its parquet output with DuckDB
 * (`queryDuckDb`).
 *
 * The CLI must be built first (`npm run build`); `npm test` does that in `pretest`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

/** The repository root: the cwd of every `dpl` process. */
export const REPO_ROOT = resolve(__dirname, '..', '..');
/** The built entry point of the `dpl` command. */
export const DPL_MAIN = join(REPO_ROOT, 'packages', 'cli', 'dist', 'dpl.js');
/** Where the test pipeline modules and YAML files live. */
export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

/** A UUID as `randomUUID()` makes them (the run id). */
export const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

/** How a `dpl` process ended and what it printed. */
export interface DplResult {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link runDpl} and {@link startDpl}. */
export interface RunDplOptions {
  /** Kill the process (SIGKILL) after this long. @default 30_000 */
  timeoutMs?: number;
  /** Variables added to (or, when undefined, removed from) the inherited environment. */
  env?: Record<string, string | undefined>;
  /** A command that runs node for it, e.g. `['prlimit', '--nofile=256']`. */
  prefix?: string[];
  /** Where it runs. @default the repository root */
  cwd?: string;
  /** What runs instead of `node packages/cli/dist/dpl.js` (args follow it), e.g. an installed `dpl`. */
  command?: string[];
}

/** A `dpl` process that was started and may still be running. */
export interface DplProcess {
  child: ChildProcess;
  /** What it printed so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when it has exited and its output is closed. */
  exited: Promise<DplResult>;
}

const live = new Set<ChildProcess>();

/** The path of a file under test/fixtures. */
export function fixture(name: string): string {
  return join(FIXTURES, name);
}

/**
 * Starts `node packages/cli/dist/dpl.js ...args` (the built `dpl`, as bin/dpl.js runs it) in
 * the repository root (no shell). The process is killed with SIGKILL after `timeoutMs`, and by
 * {@link killDplProcesses}.
 */
export function startDpl(args: string[], opts: RunDplOptions = {}): DplProcess {
  if (opts.command === undefined && !existsSync(DPL_MAIN)) {
    throw new Error(`${DPL_MAIN} does not exist; run \`npm run build\` before the e2e tests`);
  }
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined };
  for (const [k, v] of Object.entries(opts.env ?? {})) env[k] = v;
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const [command, ...rest] = [...(opts.prefix ?? []), ...(opts.command ?? [process.execPath, DPL_MAIN]), ...args] as [string, ...string[]];
  const child = spawn(command, rest, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: env as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const exited = new Promise<DplResult>((resolvePromise, reject) => {
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    // 'close', not 'exit': the output streams are drained by then.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
  };
}

/** Runs `dpl ...args` to the end and returns its exit code and output. */
export function runDpl(args: string[], opts: RunDplOptions = {}): Promise<DplResult> {
  return startDpl(args, opts).exited;
}

/** Kills (SIGKILL) every `dpl` process a test started that is still running. For `afterEach`. */
export async function killDplProcesses(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const child of live) {
    waits.push(new Promise((r) => child.once('close', r)));
    child.kill('SIGKILL');
  }
  await Promise.all(waits);
}

/**
 * Registers an `afterEach` that removes the temp dirs made during the test, and returns the
 * function that makes one.
 */
export function useTempDirs(prefix = 'dpl-e2e-'): () => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** Polls `pred` every `intervalMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Runs `sql` in a fresh in-memory DuckDB and returns the rows as objects (BIGINT as bigint). */
export async function queryDuckDb(sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    return (await conn.runAndReadAll(sql)).getRowObjects() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** A path quoted as a DuckDB string literal. */
export function sqlString(path: string): string {
  return `'${path.replace(/'/g, "''")}'`;
}

/** The lines of a text, without a trailing empty one. */
export function lines(text: string): string[] {
  const out = text.split('\n');
  if (out[out.length - 1] === '') out.pop();
  return out;
}
