/**
 * `dpl head start`: the head daemon, in the foreground. `dpl head token`: the token of the head
 * running here.
 */
import { userInfo } from 'node:os';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_DASHBOARD_PORT, DEFAULT_HEAD_PORT, startHead } from '@dpl/head';
import { localHead } from '@dpl/client';
import { createLogger, parseLogLevel } from '../internal/logger';
import { givenToken, runDir, tlsOf, untilSignal, withLogLevel, withTlsOptions, withTokenOptions, type TlsArgs } from '../internal/cluster-options';
import { print, printError } from '../internal/output';
import { recordDaemon } from '../internal/daemons';
import { UsageError, usageCheck } from '../internal/usage-error';
import { userToken } from '../internal/user-token';

interface HeadStartArgs extends TlsArgs {
  host: string;
  port: number;
  dashboardPort: number;
  token?: string;
  tokenFile?: string;
  insecure: boolean;
  logLevel: string;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  fuseTasks: boolean;
}

const headStart: CommandModule<object, HeadStartArgs> = {
  command: 'start',
  describe: 'start the head in the foreground (Ctrl-C stops it)',
  builder: (y: Argv) =>
    withTokenOptions(withTlsOptions(withLogLevel(y, 'info'), 'daemon'))
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on' })
      .option('port', { type: 'number', default: DEFAULT_HEAD_PORT, describe: 'gRPC port (0 picks a free one)' })
      .option('dashboard-port', {
        type: 'number',
        default: DEFAULT_DASHBOARD_PORT,
        describe: 'HTTP port of the web dashboard (/), /api/status (JSON) and /metrics; 0 picks a free one',
      })
      .option('insecure', {
        type: 'boolean',
        default: false,
        describe: 'run without a token when none is given: anyone who reaches the ports (any user of this machine) can run code as you',
      })
      .option('heartbeat-interval-ms', { type: 'number', describe: 'how often workers heartbeat (default 1000)' })
      .option('heartbeat-timeout-ms', { type: 'number', describe: 'a worker silent this long is dead (default 5000)' })
      .option('fuse-tasks', { type: 'boolean', default: true, describe: 'run each chain of tasks that only feed each other (same resources, retries and timeout; no batchSize after the first) as one call; --no-fuse-tasks runs every task as its own call' })
      .check((argv) => usageCheck(() => void parseLogLevel(String(argv['log-level'])))) as unknown as Argv<HeadStartArgs>,
  handler: async (args) => {
    const logger = createLogger(parseLogLevel(args.logLevel));
    const given = givenToken(args);
    const mine = given === undefined && !args.insecure ? userToken() : undefined;
    const head = await startHead({
      host: args.host,
      port: args.port,
      token: given ?? mine?.token,
      insecure: args.insecure,
      tls: tlsOf(args),
      heartbeatIntervalMs: args.heartbeatIntervalMs,
      heartbeatTimeoutMs: args.heartbeatTimeoutMs,
      dashboardPort: args.dashboardPort,
      fuseTasks: args.fuseTasks,
      logger,
    });
    const forget = recordDaemon({ kind: 'head', address: head.address, token: head.token, dashboardAddress: head.dashboardAddress });
    const tls = tlsOf(args) !== undefined;
    const withToken = head.token !== undefined;
    // One write: whoever reads the address (a script, a test) then has the other lines too.
    const lines = [`dpl head listening on ${head.address}`];
    if (head.dashboardAddress !== undefined) {
      const base = `http${tls ? 's' : ''}://${head.dashboardAddress}`;
      lines.push(`  dashboard: ${base}/${withToken ? '?token=… (open it once with the token)' : ''}`, `  status API: ${base}/api/status`, `  metrics: ${base}/metrics`);
    }
    if (!withToken) {
      printError(
        `dpl: WARNING: this head has no token (--insecure): anyone who can reach ${head.address}` +
          `${head.dashboardAddress !== undefined ? ` or ${head.dashboardAddress}` : ''} — on loopback, every user of this machine — ` +
          `can run code as ${safeUserName()}. Leave out --insecure to get a token.`,
      );
    } else if (mine !== undefined) {
      lines.push(
        `  token: yours, in ${mine.file}${mine.created ? ' (made now)' : ''}; your workers and clients on this machine find it by themselves, ` +
          'elsewhere give them a copy of that file with --token-file',
      );
    }
    lines.push(
      `  start workers with: dpl worker start --address ${head.address}${withToken ? ' --token-file …' : ''}` +
        `${tls ? ' --tls-cert … --tls-key … --tls-ca …' : ''}`,
    );
    print(lines.join('\n'));
    await untilSignal();
    await head.stop();
    forget();
  },
};

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

interface HeadTokenArgs {
  address?: string;
}

const headToken: CommandModule<object, HeadTokenArgs> = {
  command: 'token',
  describe: 'print the token of your head running on this machine (to hand to workers elsewhere)',
  builder: (y: Argv) =>
    y.option('address', { type: 'string', describe: "the head's host:port, when several of yours run here" }),
  handler: (args) => {
    const head = localHead(runDir(), args.address);
    if (head === undefined) {
      throw new UsageError(
        args.address === undefined
          ? 'there is not exactly one head of yours running on this machine; name it with --address HOST:PORT (see dpl status)'
          : `no head of yours runs on this machine at ${args.address}`,
      );
    }
    if (head.token === undefined) throw new UsageError(`the head at ${head.address} runs without a token (--insecure)`);
    print(head.token);
  },
};

export const headCommand: CommandModule = {
  command: 'head <command>',
  describe: 'run the head daemon, or print its token',
  builder: (y: Argv) => y.command(headStart).command(headToken).demandCommand(1, 'name a head command: dpl head start, dpl head token'),
  handler: () => undefined,
};
