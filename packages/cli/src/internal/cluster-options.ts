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

export interface TlsArgs {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/**
 * Adds the TLS options: `--tls-ca` for everyone, and `--tls-cert`/`--tls-key` for daemons
 * (env DPL_TLS_CA, DPL_TLS_CERT, DPL_TLS_KEY).
 */
export function withTlsOptions<T>(y: Argv<T>, role: 'daemon' | 'client'): Argv<T & TlsArgs> {
  let out = y.option('tls-ca', {
    type: 'string',
    default: process.env.DPL_TLS_CA,
    defaultDescription: 'DPL_TLS_CA',
    describe: role === 'daemon' ? 'PEM file of the CA that signed the other daemons\' certificates' : 'PEM file of the CA that signed the head\'s certificate (for a head with TLS)',
  });
  if (role === 'daemon') {
    out = out
      .option('tls-cert', {
        type: 'string',
        default: process.env.DPL_TLS_CERT,
        defaultDescription: 'DPL_TLS_CERT',
        describe: 'PEM file of this daemon\'s certificate: turns on TLS (with --tls-key and --tls-ca)',
      })
      .option('tls-key', {
        type: 'string',
        default: process.env.DPL_TLS_KEY,
        defaultDescription: 'DPL_TLS_KEY',
        describe: 'PEM file of that certificate\'s private key',
      });
  }
  return out;
}

/** The TLS files of parsed arguments, or undefined when none is given. */
export function tlsOf(args: TlsArgs): { cert?: string; key?: string; ca?: string } | undefined {
  if (args.tlsCert === undefined && args.tlsKey === undefined && args.tlsCa === undefined) return undefined;
  return { cert: args.tlsCert, key: args.tlsKey, ca: args.tlsCa };
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
