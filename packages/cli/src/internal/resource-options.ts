/**
 * The options that say what resources a machine has: `--num-cpus`, `--num-gpus`, `--resources`
 * (for `dpl worker start`, and for `dpl run`'s local machine).
 */
import type { Argv } from 'yargs';
import { amountProblem, detectGpus, type ResourceMap } from '@dpl/core';
import { parseResourcesFlag } from './resources-flag';

export interface ResourceArgs {
  numCpus?: number;
  numGpus?: number;
  resources?: string;
}

/** Adds the three options; `verb` completes "CPUs to …" in the help. */
export function withResourceOptions<T>(y: Argv<T>, verb: string): Argv<T & ResourceArgs> {
  return y
    .option('num-cpus', { type: 'number', describe: `CPUs to ${verb} (default: all cores)` })
    .option('num-gpus', { type: 'number', describe: `GPUs to ${verb} (default: what nvidia-smi lists)` })
    .option('resources', {
      type: 'string',
      describe: `custom resources to ${verb}, e.g. '{"bigdb":1}' or bigdb=1,ssd=2`,
    });
}

/**
 * Checks the three options.
 * @throws Error naming the flag and the rule.
 */
export function checkResourceArgs(argv: Record<string, unknown>): void {
  for (const flag of ['num-cpus', 'num-gpus'] as const) {
    const v = argv[flag];
    const problem = v === undefined ? undefined : amountProblem(`--${flag}`, v);
    if (problem !== undefined) throw new Error(problem);
  }
  if (typeof argv.resources === 'string') parseResourcesFlag(argv.resources);
}

/** The custom resources given, if any. */
export function resourcesOf(args: ResourceArgs): ResourceMap | undefined {
  return args.resources === undefined ? undefined : parseResourcesFlag(args.resources);
}

/**
 * A warning when `--num-gpus` claims more GPUs than `nvidia-smi` lists here: tasks that ask for
 * a GPU would be placed on this machine and find none. Undefined when there is nothing to say.
 */
export function gpuWarning(args: ResourceArgs): string | undefined {
  const claimed = args.numGpus ?? 0;
  if (claimed === 0) return undefined;
  const listed = detectGpus();
  if (claimed <= listed) return undefined;
  return (
    `dpl: warning: --num-gpus ${claimed}, but nvidia-smi lists ${listed === 0 ? 'no GPU' : `${listed} GPU${listed === 1 ? '' : 's'}`} on this machine; ` +
    'tasks that ask for a GPU will be placed here and find none. Leave --num-gpus out to advertise what nvidia-smi lists'
  );
}
