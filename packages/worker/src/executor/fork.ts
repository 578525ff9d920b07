/**
 * Starting executor processes. This file loads only Node's own modules, so that `dpl run` can
 * start its executors before it loads anything else (`@dpl/worker/fork`): an executor takes a
 * fork and loading arrow (~0.1 s), which the first calls would otherwise wait for.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Socket } from 'node:net';

/**
 * The executor's entry point: executor-main and what it loads as one file (scripts/bundle.js;
 * ~35 ms sooner ready than the ~300 modules it is made of). From the build it sits next to this
 * file; when this file runs from its TypeScript source (the test suite), the built one is used.
 */
const EXECUTOR_MAIN = __filename.endsWith('.ts')
  ? join(__dirname, '..', '..', 'dist', 'executor', 'executor-bundle.js')
  : join(__dirname, 'executor-bundle.js');

/** Executors a worker starts ahead of its first calls: one per CPU, up to this many. */
export const PRESTARTED_EXECUTORS = 8;

/** How a worker's executors are started: the same for those started ahead and later. */
export interface ExecutorLaunch {
  /** Heap limit of each executor in MiB, or undefined for Node's own. */
  memoryMb: number | undefined;
  /** Node flags for every executor's command line. */
  nodeFlags: readonly string[];
  /** How the kernel schedules executors: see {@link ExecutorScheduling}. */
  scheduling: ExecutorScheduling;
}

/**
 * `batch`: executors run under Linux's SCHED_BATCH policy (started through util-linux's `chrt`),
 * CPU-bound work that the kernel does not let preempt a process it wakes up (the same CPU share
 * as before, so they lose nothing against other processes). On a machine whose cores the
 * executors fill, the daemon that feeds them (the worker, and in `dpl run` the head and client
 * too) then runs when an answer arrives instead of queueing behind the executor its write just
 * woke. `normal`: the default policy. Where `chrt` is missing or may not set the policy (not
 * Linux, a container that forbids it), `batch` starts them as `normal`.
 */
export type ExecutorScheduling = 'batch' | 'normal';

/** The scheduling policy `DPL_EXECUTOR_SCHED` asks for (`batch` when unset); throws on another word. */
export function executorSchedulingFrom(env: NodeJS.ProcessEnv = process.env): ExecutorScheduling {
  const v = env.DPL_EXECUTOR_SCHED;
  if (v === undefined || v === '' || v === 'batch') return 'batch';
  if (v === 'normal') return 'normal';
  throw new TypeError(`DPL_EXECUTOR_SCHED must be "batch" or "normal", got ${JSON.stringify(v)}; unset it for the default (batch)`);
}

/** `chrt`'s path where it can start a process under SCHED_BATCH here; looked up once. */
let batchLauncher: string | null | undefined;

/**
 * The `chrt` that can start executors under SCHED_BATCH, or undefined: not Linux, no `chrt` on
 * the PATH, or one that fails to set the policy (tried once, on `chrt` itself: ~5 ms).
 */
export function schedBatchLauncher(): string | undefined {
  if (batchLauncher !== undefined) return batchLauncher ?? undefined;
  batchLauncher = null;
  if (process.platform !== 'linux') return undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const chrt = join(dir, 'chrt');
    try {
      accessSync(chrt, constants.X_OK);
    } catch {
      continue;
    }
    const probe = spawnSync(chrt, ['--batch', '0', chrt, '--version'], { stdio: 'ignore', timeout: 5000 });
    if (probe.status === 0) batchLauncher = chrt;
    break;
  }
  return batchLauncher ?? undefined;
}

/**
 * The launch of a worker with `cpus` CPUs and the user's `extraFlags`. Executors that can fill
 * every core collect garbage on their own thread only: V8's helper threads for one executor's
 * collections would only compete with the other executors (on 2 cores, rows.ts ran ~10 %
 * faster this way; issue 11).
 */
export function executorLaunch(cpus: number, memoryMb: number | undefined, extraFlags: readonly string[], scheduling: ExecutorScheduling = 'batch'): ExecutorLaunch {
  const fillsMachine = Math.ceil(cpus) >= availableParallelism();
  return { memoryMb, nodeFlags: [...(fillsMachine ? ['--single-threaded-gc'] : []), ...extraFlags], scheduling };
}

/** Starts an executor process with the given GPUs visible; the cluster token is not passed on. */
export function forkExecutor(gpus: string, launch: ExecutorLaunch): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, CUDA_VISIBLE_DEVICES: gpus };
  delete env.DPL_TOKEN;
  delete env.DPL_TOKEN_FILE;
  const heap = launch.memoryMb === undefined ? [] : [`--max-old-space-size=${launch.memoryMb}`];
  const args = [...heap, ...launch.nodeFlags, EXECUTOR_MAIN];
  // chrt sets the policy and execs Node in the same process (the pid is the executor's).
  const chrt = launch.scheduling === 'batch' ? schedBatchLauncher() : undefined;
  const child = spawn(chrt ?? process.execPath, chrt === undefined ? args : ['--batch', '0', process.execPath, ...args], {
    env,
    // fd 1, 2: what reaches them without the process's console (see forwardOutput); fd 3: the
    // FrameChannel's socket pair.
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  // A write to an executor that just died is that call's failure, reported by its 'exit'.
  (child.stdio[3] as Socket).on('error', () => undefined);
  return child;
}

/**
 * Executors started before their worker exists (`dpl run` starts them first thing). A worker
 * given these takes the ones started the way it starts its own; `stop()` ends the others.
 */
export class EarlyExecutors {
  private children: ChildProcess[];
  private readonly key: string;

  constructor(count: number, launch: ExecutorLaunch) {
    this.key = launchKey(launch);
    this.children = Array.from({ length: count }, () => {
      const child = forkExecutor('', launch);
      child.on('error', () => undefined); // one that could not start is not taken
      // Until a worker takes them they do not keep this process alive (a run that ends before
      // its worker starts); they exit when it does, as their socket closes.
      setRef(child, false);
      return child;
    });
  }

  /** The process ids of those not taken yet. */
  get pids(): number[] {
    return this.children.flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }

  /** Up to `max` of them, when they were started as `launch` says, and still running. */
  take(launch: ExecutorLaunch, max: number): ChildProcess[] {
    if (launchKey(launch) !== this.key) return [];
    const alive = this.children.filter((c) => c.pid !== undefined && c.exitCode === null && c.signalCode === null);
    const taken = alive.slice(0, max);
    this.children = this.children.filter((c) => !taken.includes(c));
    for (const c of taken) setRef(c, true);
    return taken;
  }

  /** Ends those not taken. */
  stop(): void {
    for (const c of this.children) c.kill('SIGKILL');
    this.children = [];
  }
}

function setRef(child: ChildProcess, ref: boolean): void {
  const handles: { ref(): unknown; unref(): unknown }[] = [child, ...child.stdio.filter((s): s is Socket => s !== null && s !== undefined)];
  for (const h of handles) {
    if (ref) h.ref();
    else h.unref();
  }
}

function launchKey(launch: ExecutorLaunch): string {
  return JSON.stringify([launch.memoryMb ?? null, launch.nodeFlags, launch.scheduling]);
}
