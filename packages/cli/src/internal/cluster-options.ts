/**
 * Options shared by the commands that talk to a cluster: the head's address and the token, from
 * flags or the environment (flag > DPL_ADDRESS / DPL_TOKEN).
 */
import type { Argv } from 'yargs';

export interface ClusterArgs {
  address: string;
  token?: string;
}

/** Adds `--address` (required unless DPL_ADDRESS is set) and `--token`. */
export function withClusterOptions<T>(y: Argv<T>): Argv<T & ClusterArgs> {
  return y
    .option('address', {
      type: 'string',
      describe: "the head's host:port (env DPL_ADDRESS)",
      default: process.env.DPL_ADDRESS,
      defaultDescription: 'DPL_ADDRESS',
      demandOption: process.env.DPL_ADDRESS === undefined ? 'give the head with --address HOST:PORT or DPL_ADDRESS' : false,
    })
    .option('token', {
      type: 'string',
      describe: 'the cluster token (env DPL_TOKEN)',
      default: process.env.DPL_TOKEN,
      defaultDescription: 'DPL_TOKEN',
    }) as unknown as Argv<T & ClusterArgs>;
}

/** Adds `-v/--log-level` with the given default. */
export function withLogLevel<T>(y: Argv<T>, level: string): Argv<T & { logLevel: string }> {
  return y.option('log-level', {
    alias: 'v',
    type: 'string',
    default: level,
    describe: 'log level on stderr: trace, debug, info, warn, error or silent',
  }) as unknown as Argv<T & { logLevel: string }>;
}

/** Resolves when the process gets SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
