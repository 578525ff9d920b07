/**
 * Options shared by the commands that talk to a cluster: the head's address and the token, from
 * flags, the environment or the records of the daemons of this user on this machine
 * (flag > DPL_ADDRESS / DPL_TOKEN / DPL_TOKEN_FILE > the local head's record).
 */
import { readFileSync, statSync } from 'node:fs';
import type { Argv } from 'yargs';
import { defaultRunDir } from '@dpl/core';
import { localHead } from '@dpl/client';
import { tokenProblem } from '@dpl/wire';
import { hideTokenFromProc } from './hide-token';
import { printError } from './output';
import { UsageError } from './usage-error';

export interface ClusterArgs {
  address?: string;
  token?: string;
  tokenFile?: string;
}

/** Adds `--address`, `--token` and `--token-file` (each also from the environment). */
export function withClusterOptions<T>(y: Argv<T>): Argv<T & ClusterArgs> {
  return withTokenOptions(
    y.option('address', {
      type: 'string',
      describe: "the head's host:port (env DPL_ADDRESS; default: the one head of yours running on this machine)",
    }),
  );
}

/** Adds `--token` and `--token-file`. */
export function withTokenOptions<T>(y: Argv<T>): Argv<T & { token?: string; tokenFile?: string }> {
  return y
    .option('token', {
      type: 'string',
      describe: 'the cluster token (env DPL_TOKEN); on a command line every local user can read it in ps: prefer --token-file',
    })
    .option('token-file', {
      type: 'string',
      describe: 'a file holding the cluster token (env DPL_TOKEN_FILE)',
    });
}

/** Where the daemons of this user on this machine keep their records: DPL_RUN_DIR, else ~/.dpl/run. */
export function runDir(): string {
  return defaultRunDir();
}

/**
 * Reads a token file: its first line, trimmed.
 * @throws Error naming the file when it cannot be read or holds no valid token.
 */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    // Not necessarily this user's own: a mounted secret (Kubernetes) belongs to root and is a link.
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read the token file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const token = text.split('\n')[0]!.trim();
  const problem = token === '' ? 'it is empty' : tokenProblem(token);
  if (problem !== undefined) throw new Error(`the token file ${path} holds no valid token: ${problem}`);
  try {
    if ((statSync(path).mode & 0o004) !== 0) {
      printError(`dpl: warning: the token file ${path} is readable by every user of this machine; chmod 600 it`);
    }
  } catch {
    // read a moment ago; nothing to add
  }
  return token;
}

/**
 * The token given to this command: `--token` (with a warning: the command line is public),
 * `--token-file`, DPL_TOKEN or DPL_TOKEN_FILE, in that order. Once read, it is hidden from
 * `/proc/self/{cmdline,environ}` and from the environment of child processes.
 * @throws UsageError for both flags at once; Error for an unreadable or invalid token.
 */
export function givenToken(args: { token?: string; tokenFile?: string }): string | undefined {
  if (args.token !== undefined && args.tokenFile !== undefined) {
    throw new UsageError('give the token once: --token or --token-file, not both');
  }
  let token: string | undefined;
  if (args.token !== undefined) {
    printError('dpl: warning: --token on the command line is visible to every user of this machine (ps); use --token-file FILE or DPL_TOKEN_FILE');
    token = args.token;
  } else if (args.tokenFile !== undefined) token = readTokenFile(args.tokenFile);
  else if (process.env.DPL_TOKEN !== undefined && process.env.DPL_TOKEN !== '') token = process.env.DPL_TOKEN;
  else if (process.env.DPL_TOKEN_FILE !== undefined && process.env.DPL_TOKEN_FILE !== '') token = readTokenFile(process.env.DPL_TOKEN_FILE);
  if (token !== undefined) {
    const problem = tokenProblem(token);
    if (problem !== undefined) throw new UsageError(`invalid token: ${problem}`);
  }
  hideTokenFromProc();
  return token;
}

/**
 * The head to talk to and the token for it: as given, else the head of this user running on
 * this machine (its address when it is the only one, its token when it is the one at the
 * address).
 * @throws UsageError when no address is given and there is not exactly one local head.
 */
export function clusterTarget(args: ClusterArgs): { address: string; token: string | undefined } {
  const token = givenToken(args);
  const given = args.address ?? (process.env.DPL_ADDRESS || undefined);
  // Read the records only when something is missing, and once.
  const local = given !== undefined && token !== undefined ? undefined : localHead(runDir(), given);
  const address = given ?? local?.address;
  if (address === undefined) {
    throw new UsageError(
      'give the head with --address HOST:PORT or DPL_ADDRESS (there is not exactly one head of yours running on this machine to pick)',
    );
  }
  return { address, token: token ?? local?.token };
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
