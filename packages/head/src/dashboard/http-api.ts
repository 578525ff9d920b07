/**
 * The head's HTTP endpoints, on `--dashboard-port`:
 * - `GET /` the dashboard page, `GET /api/dashboard` its data;
 * - `GET /api/status` the cluster status (the shape of `cluster.status()`);
 * - `GET /metrics` Prometheus text.
 *
 * With a token, every endpoint takes it as `Authorization: Bearer <token>`, or from the
 * `dpl_token` cookie a browser gets by opening `/?token=<token>` once (HttpOnly, SameSite=Strict).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { ensureError } from '@dpl/core';
import { ConnectionGuard, isLoopbackHost, tokenMatches, type ClusterStatus } from '@dpl/wire';
import type { ResolvedHeadOptions } from '../head-options';
import type { JobSummary } from '../jobs/job';
import type { HeadMetrics } from '../metrics/metrics';
import { DASHBOARD_HTML, DASHBOARD_LOGIN_HTML } from './page';

/** What `/api/dashboard` answers. */
export interface DashboardData extends Omit<ClusterStatus, 'jobs'> {
  /** The head's clock, for "last heartbeat … ago". */
  now: number;
  jobs: JobSummary[];
  throughput: { t: number; batchesPerSecond: number }[];
}

export interface HttpSources {
  status(): ClusterStatus;
  dashboard(): DashboardData;
  metrics: HeadMetrics;
}

const COOKIE = 'dpl_token';

/** Output batches per second over the last minute, one point per second. */
export class ThroughputMeter {
  private readonly counts: { t: number; n: number }[] = [];
  private current = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly seconds = 60) {
    this.timer = setInterval(() => this.roll(), 1000);
    this.timer.unref();
  }

  add(n: number): void {
    this.current += n;
  }

  series(): { t: number; batchesPerSecond: number }[] {
    return this.counts.map((c) => ({ t: c.t, batchesPerSecond: c.n }));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private roll(): void {
    this.counts.push({ t: Date.now(), n: this.current });
    this.current = 0;
    if (this.counts.length > this.seconds) this.counts.shift();
  }
}

/** The token a browser keeps in its cookie, if any; a malformed cookie counts as none. */
function cookieToken(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k !== COOKIE) continue;
    try {
      return decodeURIComponent(v.join('='));
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** How long the dashboard's data is reused before it is built again (all viewers share it). */
const DASHBOARD_REFRESH_MS = 1_000;
/** The most bytes `/api/dashboard` answers; past it, finished jobs lose their details first. */
export const MAX_DASHBOARD_BYTES = 1024 * 1024;

/** Hashes for the Content-Security-Policy of the inline script and style of a page. */
function inlineHashes(html: string, tag: 'script' | 'style'): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g');
  for (const m of html.matchAll(re)) out.push(`'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`);
  return out;
}

/**
 * The page's policy: its own inline script and style only (by hash), data from this origin, no
 * framing by other sites, nothing else loaded.
 */
const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${inlineHashes(DASHBOARD_HTML, 'script').join(' ')}`,
  `style-src ${[...inlineHashes(DASHBOARD_HTML, 'style'), ...inlineHashes(DASHBOARD_LOGIN_HTML, 'style')].join(' ')}`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every answer: no sniffing, no framing, no caching, no referrer. */
const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** The hosts a browser may name when the head listens on loopback (DNS rebinding protection). */
function loopbackHostAllowed(hostHeader: string | undefined, port: number): boolean {
  if (hostHeader === undefined) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader.trim().toLowerCase());
  if (m === null) return false;
  if (m[2] !== undefined && Number(m[2]) !== port) return false;
  const host = m[1]!;
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Makes the dashboard data fit {@link MAX_DASHBOARD_BYTES}: finished jobs lose their
 * observations, task output and error stacks (oldest first), then the oldest finished jobs go.
 */
export function boundDashboard(data: DashboardData, maxBytes = MAX_DASHBOARD_BYTES): string {
  let json = JSON.stringify(data);
  if (json.length <= maxBytes) return json;
  const jobs = data.jobs.map((j) => ({ ...j }));
  const finished = jobs.filter((j) => j.state !== 'running');
  for (const j of finished) {
    j.observed = {};
    j.params = {};
    j.output = [];
    if (j.error !== undefined) j.error = { ...j.error, stack: '' };
  }
  const out: DashboardData & { truncated?: boolean } = { ...data, jobs, truncated: true };
  json = JSON.stringify(out);
  while (json.length > maxBytes && out.jobs.some((j) => j.state !== 'running')) {
    out.jobs.splice(out.jobs.findIndex((j) => j.state !== 'running'), 1);
    json = JSON.stringify(out);
  }
  return json;
}

/**
 * Serves the HTTP endpoints. No request can take the head down: every handler's error becomes
 * a 400 or 500 answer; connections are bounded and must authenticate within seconds; when the
 * head listens on loopback, only requests naming a loopback host are answered.
 */
export async function startHttpApi(opts: ResolvedHeadOptions, sources: HttpSources): Promise<HttpServer> {
  const log = opts.logger.child({ component: 'http' });
  const guard = new ConnectionGuard();
  const checkHost = isLoopbackHost(opts.host);
  let port = 0;
  let dashboardJson: { at: number; json: string } | undefined;
  const dashboardBody = (): string => {
    const now = Date.now();
    if (dashboardJson === undefined || now - dashboardJson.at >= DASHBOARD_REFRESH_MS) {
      dashboardJson = { at: now, json: boundDashboard(sources.dashboard()) };
    }
    return dashboardJson.json;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { ...COMMON_HEADERS, 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    if (checkHost && !loopbackHostAllowed(req.headers.host, port)) {
      res.shouldKeepAlive = false;
      return send(403, { error: `Host ${JSON.stringify(req.headers.host ?? '')} is not this head; open it as http://127.0.0.1:${port}/ (or localhost)` });
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://head');
    } catch {
      res.shouldKeepAlive = false;
      return send(400, { error: 'malformed request path' });
    }
    const path = url.pathname;
    const cookie = cookieToken(req);
    const authorized = tokenMatches(opts.token, req.headers.authorization) || (cookie !== undefined && tokenMatches(opts.token, `Bearer ${cookie}`));
    if (authorized) guard.authenticatedPeer(`${req.socket.remoteAddress}:${req.socket.remotePort}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.shouldKeepAlive = false;
      return send(405, { error: `${req.method} is not served here; every endpoint is GET` });
    }
    if (path === '/') {
      const offered = url.searchParams.get('token');
      const page = { ...COMMON_HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': PAGE_CSP };
      if (offered !== null) {
        if (!tokenMatches(opts.token, `Bearer ${offered}`)) {
          res.writeHead(401, page);
          res.end(DASHBOARD_LOGIN_HTML);
          return;
        }
        guard.authenticatedPeer(`${req.socket.remoteAddress}:${req.socket.remotePort}`);
        // Keep it in a cookie for this head only, and take it out of the address bar.
        const secure = opts.tls !== undefined ? '; Secure' : '';
        res.writeHead(302, { ...COMMON_HEADERS, location: '/', 'set-cookie': `${COOKIE}=${encodeURIComponent(offered)}; HttpOnly; SameSite=Strict; Path=/${secure}` });
        res.end();
        return;
      }
      res.writeHead(authorized ? 200 : 401, page);
      res.end(authorized ? DASHBOARD_HTML : DASHBOARD_LOGIN_HTML);
      return;
    }
    if (!authorized) {
      res.shouldKeepAlive = false;
      return send(401, { error: 'missing or wrong cluster token; send Authorization: Bearer <token>' });
    }
    if (path === '/api/status') return send(200, sources.status());
    if (path === '/api/dashboard') return send(200, dashboardBody());
    if (path === '/metrics') {
      void sources.metrics.text().then(
        (text) => {
          res.writeHead(200, { ...COMMON_HEADERS, 'content-type': sources.metrics.contentType });
          res.end(text);
        },
        (e: unknown) => send(500, { error: `cannot collect metrics: ${ensureError(e).message}` }),
      );
      return;
    }
    send(404, { error: `no ${req.method} ${path}; try GET / (the dashboard), /api/status or /metrics` });
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      handle(req, res);
    } catch (e) {
      log.error({ err: ensureError(e), url: String(req.url).slice(0, 200) }, 'HTTP request failed');
      if (!res.headersSent) {
        res.writeHead(500, { ...COMMON_HEADERS, 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'internal error; see the head log' }));
      } else res.destroy();
    }
  };
  // Behind TLS like every other endpoint when the head has a certificate.
  const server: HttpServer =
    opts.tls === undefined ? createServer(handler) : createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler);
  // A slow or silent client cannot hold a connection for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => undefined);
    guard.admit(socket);
  });
  // Malformed requests (a bad request line, oversized headers) get a 400 from Node's parser.
  server.on('clientError', (_err: Error, socket: Socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  server.on('tlsClientError', () => undefined);
  server.on('close', () => guard.destroyAll());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const hint = e.code === 'EADDRINUSE' ? ' (is another head running? pick another --dashboard-port, 0 for a free one, or stop it: dpl stop)' : '';
      reject(new Error(`cannot serve the HTTP API on ${opts.host}:${opts.dashboardPort}: ${e.message}${hint}`, { cause: e }));
    });
    server.listen(opts.dashboardPort!, opts.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return server;
}
