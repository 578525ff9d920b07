/**
 * Options of the head daemon.
 */
import { describe, silentLogger, type Logger } from '@dpl/core';
import { generateToken, isLoopbackHost, loadTls, tokenProblem, type TlsFiles, type TlsMaterial } from '@dpl/wire';

/** The port `dpl head start` listens on by default. */
export const DEFAULT_HEAD_PORT = 6380;
/** The port `dpl head start` serves its HTTP API (and, later, the dashboard) on by default. */
export const DEFAULT_DASHBOARD_PORT = 8265;
/** @default 1000 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/** @default 5000 */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 5_000;

export interface HeadOptions {
  /** Address to listen on. @default '127.0.0.1' */
  host?: string;
  /** gRPC port; 0 picks a free one. @default 6380 */
  port?: number;
  /**
   * The cluster token every RPC must carry. @default a fresh random token (see `Head.token`),
   * or none with `insecure`
   */
  token?: string;
  /**
   * Run without a token when none is given: anyone who can reach the ports (any local user, on
   * loopback) can run code as this user. @default false
   */
  insecure?: boolean;
  /**
   * TLS for gRPC, the HTTP endpoints and fetches from workers: PEM file paths of this head's
   * certificate and key, and of the CA that signed the workers' certificates. @default none
   */
  tls?: TlsFiles;
  /** How often workers send heartbeats. @default 1000 */
  heartbeatIntervalMs?: number;
  /** A worker silent for this long is dead. @default 5000 */
  heartbeatTimeoutMs?: number;
  /**
   * HTTP port of `/api/status` (JSON, the shape of `cluster.status()`); 0 picks a free one;
   * `null` serves no HTTP. @default null (the CLI's `dpl head start` defaults to 8265)
   */
  dashboardPort?: number | null;
  /**
   * Run each chain of tasks that only feed each other (same resources, retries and timeout, no
   * batch size after the first) as one call in one executor turn, as Ray Data fuses map
   * operators: fewer hops and no Arrow encoding between them. A failure then retries the whole
   * chain. @default true
   */
  fuseTasks?: boolean;
  logger?: Logger;
}

export interface ResolvedHeadOptions {
  host: string;
  port: number;
  token: string | undefined;
  insecure: boolean;
  tls: TlsMaterial | undefined;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  dashboardPort: number | null;
  fuseTasks: boolean;
  logger: Logger;
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return isLoopbackHost(host);
}

/**
 * Fills defaults and checks every option.
 * @throws TypeError listing every problem, including a non-loopback address without a token.
 */
export function resolveHeadOptions(o: HeadOptions = {}): ResolvedHeadOptions {
  const r: ResolvedHeadOptions = {
    host: o.host ?? '127.0.0.1',
    port: o.port ?? DEFAULT_HEAD_PORT,
    token: o.token === '' || o.token === undefined ? (o.insecure === true ? undefined : generateToken()) : o.token,
    insecure: o.insecure ?? false,
    tls: undefined,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
    dashboardPort: o.dashboardPort ?? null,
    fuseTasks: o.fuseTasks ?? true,
    logger: o.logger ?? silentLogger,
  };
  const problems: string[] = [];
  try {
    r.tls = loadTls(o.tls, 'daemon');
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (!Number.isInteger(r.port) || r.port < 0 || r.port > 65535) {
    problems.push(`port must be an integer from 0 to 65535, got ${r.port}`);
  }
  const dp = r.dashboardPort;
  if (dp !== null && (!Number.isInteger(dp) || dp < 0 || dp > 65535)) {
    problems.push(`dashboardPort must be an integer from 0 to 65535 (or null for none), got ${dp}`);
  }
  for (const [name, v] of [['heartbeatIntervalMs', r.heartbeatIntervalMs], ['heartbeatTimeoutMs', r.heartbeatTimeoutMs]] as const) {
    if (!Number.isFinite(v) || v <= 0) problems.push(`${name} must be a number > 0, got ${v}`);
  }
  if (r.heartbeatTimeoutMs <= r.heartbeatIntervalMs) {
    problems.push(
      `heartbeatTimeoutMs (${r.heartbeatTimeoutMs}) must be longer than heartbeatIntervalMs (${r.heartbeatIntervalMs})`,
    );
  }
  if (typeof r.fuseTasks !== 'boolean') problems.push(`fuseTasks must be true or false, got ${describe(r.fuseTasks)}`);
  if (r.token !== undefined) {
    const p = tokenProblem(r.token);
    if (p !== undefined) problems.push(`token: ${p}`);
  }
  if (problems.length > 0) throw new TypeError(problems.join('; '));
  return r;
}
