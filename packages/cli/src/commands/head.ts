/**
 * `dpl head start`: the head daemon, in the foreground.
 */
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_DASHBOARD_PORT, DEFAULT_HEAD_PORT, startHead } from '@dpl/head';
import { createLogger, parseLogLevel } from '../internal/logger';
import { tlsOf, untilSignal, withLogLevel, withTlsOptions, type TlsArgs } from '../internal/cluster-options';
import { print } from '../internal/output';
import { recordDaemon } from '../internal/daemons';
import { usageCheck } from '../internal/usage-error';

interface HeadStartArgs extends TlsArgs {
  host: string;
  port: number;
  dashboardPort: number;
  token?: string;
  insecure: boolean;
  logLevel: string;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
}

const headStart: CommandModule<object, HeadStartArgs> = {
  command: 'start',
  describe: 'start the head in the foreground (Ctrl-C stops it)',
  builder: (y: Argv) =>
    withTlsOptions(withLogLevel(y, 'info'), 'daemon')
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on' })
      .option('port', { type: 'number', default: DEFAULT_HEAD_PORT, describe: 'gRPC port (0 picks a free one)' })
      .option('dashboard-port', {
        type: 'number',
        default: DEFAULT_DASHBOARD_PORT,
        describe: 'HTTP port of GET /api/status (JSON); 0 picks a free one',
      })
      .option('token', {
        type: 'string',
        default: process.env.DPL_TOKEN,
        defaultDescription: 'DPL_TOKEN',
        describe: 'the token every worker and client must present',
      })
      .option('insecure', {
        type: 'boolean',
        default: false,
        describe: 'allow a non-loopback --host without a token',
      })
      .option('heartbeat-interval-ms', { type: 'number', describe: 'how often workers heartbeat (default 1000)' })
      .option('heartbeat-timeout-ms', { type: 'number', describe: 'a worker silent this long is dead (default 5000)' })
      .check((argv) => usageCheck(() => void parseLogLevel(String(argv['log-level'])))) as unknown as Argv<HeadStartArgs>,
  handler: async (args) => {
    const logger = createLogger(parseLogLevel(args.logLevel));
    const head = await startHead({
      host: args.host,
      port: args.port,
      token: args.token,
      insecure: args.insecure,
      tls: tlsOf(args),
      heartbeatIntervalMs: args.heartbeatIntervalMs,
      heartbeatTimeoutMs: args.heartbeatTimeoutMs,
      dashboardPort: args.dashboardPort,
      logger,
    });
    const forget = recordDaemon('head', head.address);
    print(`dpl head listening on ${head.address}`);
    const tls = tlsOf(args) !== undefined;
    if (head.dashboardAddress !== undefined) {
      const base = `http${tls ? 's' : ''}://${head.dashboardAddress}`;
      print(`  dashboard: ${base}/${args.token ? '?token=…' : ''}`);
      print(`  status API: ${base}/api/status`);
      print(`  metrics: ${base}/metrics`);
    }
    print(
      `  start workers with: dpl worker start --address ${head.address}${args.token ? ' --token …' : ''}` +
        `${tls ? ' --tls-cert … --tls-key … --tls-ca …' : ''}`,
    );
    await untilSignal();
    await head.stop();
    forget();
  },
};

export const headCommand: CommandModule = {
  command: 'head <command>',
  describe: 'run the head daemon',
  builder: (y: Argv) => y.command(headStart).demandCommand(1, 'name a head command: dpl head start'),
  handler: () => undefined,
};
