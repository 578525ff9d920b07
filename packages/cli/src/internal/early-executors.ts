/**
 * `dpl run` starts its worker's executor processes first thing, before the CLI loads the rest of
 * itself (~0.15 s of modules) and starts the head: each executor takes a fork and loading arrow,
 * which the run's first calls would otherwise wait for (Ray's workers are prestarted too).
 * This file loads only Node's own modules and @dpl/worker's launcher.
 */
import { availableParallelism } from 'node:os';
import { EarlyExecutors, PRESTARTED_EXECUTORS, executorLaunch, executorSchedulingFrom, type ExecutorScheduling } from '@dpl/worker/fork';

let early: EarlyExecutors | undefined;

/**
 * Starts the executors of an embedded `dpl run` when `argv` (without node and the script) is
 * one (see embeddedRunCpus), the way its worker will start its own.
 */
export function startEarlyExecutors(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  const cpus = embeddedRunCpus(argv);
  if (cpus === undefined) return;
  const flags = (env.DPL_EXECUTOR_NODE_OPTIONS ?? '').split(/\s+/).filter((f) => f !== '');
  let scheduling: ExecutorScheduling;
  try {
    scheduling = executorSchedulingFrom(env);
  } catch {
    return; // the worker's options refuse it, naming the variable
  }
  early = new EarlyExecutors(Math.min(PRESTARTED_EXECUTORS, Math.ceil(cpus)), executorLaunch(cpus, undefined, flags, scheduling));
}

/**
 * The CPUs of the worker that `argv` will start, when it is an embedded `dpl run` (not
 * --in-process, not -i or --help): --num-cpus when given, else this machine's. Undefined for
 * anything else, and for a --num-cpus that is not a number > 0 (the CLI refuses it, or it
 * starts no executor).
 */
export function embeddedRunCpus(argv: readonly string[]): number | undefined {
  if (argv[0] !== 'run' || argv.some((a) => SKIP.has(a) || a.startsWith('--in-process=') || a.startsWith('--info='))) return undefined;
  const at = argv.findIndex((a) => a === '--num-cpus' || a.startsWith('--num-cpus='));
  if (at < 0) return availableParallelism();
  const flag = argv[at]!;
  const value = Number(flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : argv[at + 1]);
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

const SKIP = new Set(['--in-process', '-i', '--info', '--help', '-h', '--version']);

/** The executors started by startEarlyExecutors, once (the caller stops those its worker did not take). */
export function takeEarlyExecutors(): EarlyExecutors | undefined {
  const e = early;
  early = undefined;
  return e;
}
