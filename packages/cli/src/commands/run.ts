/**
 * `dpl run MODULE`: runs a pipeline module on this machine, with no setup.
 */
import type { Argv, CommandModule } from 'yargs';
import { LocalExecutor } from '@dpl/core';
import { loadPipelineModule } from '@dpl/client';
import { configureExecutor, withPipelineOptions, type PipelineArgs } from '../internal/pipeline-options';
import { createLogger, parseLogLevel } from '../internal/logger';
import { checkResourceArgs, resourcesOf, withResourceOptions, type ResourceArgs } from '../internal/resource-options';
import { executePipeline } from '../internal/execute-pipeline';
import { usageCheck } from '../internal/usage-error';

/** Parsed `dpl run` arguments. */
export interface RunArgs extends PipelineArgs, ResourceArgs {
  logLevel: string;
}


export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <module>',
  describe: 'run a pipeline module on this machine (no setup needed)',
  builder: (y: Argv) =>
    withResourceOptions(withPipelineOptions(y), 'schedule against')
      .option('log-level', {
        alias: 'v',
        type: 'string',
        default: 'warn',
        describe: 'log level on stderr: trace, debug, info, warn, error or silent',
      })
      .check((argv) =>
        usageCheck(() => {
          parseLogLevel(String(argv['log-level']));
          checkResourceArgs(argv);
        }),
      ) as unknown as Argv<RunArgs>,
  handler: async (args) => {
    process.exitCode = await runPipeline(args);
  },
};

/** Runs `dpl run` and returns the exit code. */
export async function runPipeline(args: RunArgs): Promise<number> {
  const logger = createLogger(parseLogLevel(args.logLevel));
  const mod = await loadPipelineModule(args.module);
  const resources = resourcesOf(args);
  const executor = new LocalExecutor(mod.graph, {
    generator: mod.generator,
    maxBatches: args.maxBatches ?? mod.maxBatches,
    numCpus: args.numCpus,
    numGpus: args.numGpus,
    resources,
    logger,
  });
  configureExecutor(executor, args);

  return executePipeline(executor, args);
}
