/**
 * The head's HTTP endpoints, on `--dashboard-port`:
 * - `GET /` the dashboard page, `GET /api/dashboard` its data;
 * - `GET /api/status` the cluster status (the shape of `cluster.status()`);
 * - `GET /metrics` Prometheus text.
 *
 * With a token, every endpoint takes it as `Authorization: Bearer <token>`, or from the
 * `dpl_token` cookie a browser gets by opening `/?token=<token>` once (HttpOnly, SameSite=Strict).
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { ensureError } from '@dpl/core';
import { tokenMatches, type ClusterStatus } from '@dpl/wire';
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

function cookieToken(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

export async function startHttpApi(opts: ResolvedHeadOptions, sources: HttpSources): Promise<HttpServer> {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://head');
    const path = url.pathname;
    const bearer = req.headers.authorization;
    const cookie = cookieToken(req);
    const authorized = tokenMatches(opts.token, bearer) || (cookie !== undefined && tokenMatches(opts.token, `Bearer ${cookie}`));
    if (req.method === 'GET' && path === '/') {
      const offered = url.searchParams.get('token');
      if (offered !== null) {
        if (!tokenMatches(opts.token, `Bearer ${offered}`)) {
          res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
          res.end(DASHBOARD_LOGIN_HTML);
          return;
        }
        // Keep it in a cookie for this head only, and take it out of the address bar.
        const secure = opts.tls !== undefined ? '; Secure' : '';
        res.writeHead(302, { location: '/', 'set-cookie': `${COOKIE}=${encodeURIComponent(offered)}; HttpOnly; SameSite=Strict; Path=/${secure}` });
        res.end();
        return;
      }
      res.writeHead(authorized ? 200 : 401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(authorized ? DASHBOARD_HTML : DASHBOARD_LOGIN_HTML);
      return;
    }
    if (!authorized) return send(401, { error: 'missing or wrong cluster token; send Authorization: Bearer <token>' });
    if (req.method === 'GET' && path === '/api/status') return send(200, sources.status());
    if (req.method === 'GET' && path === '/api/dashboard') return send(200, sources.dashboard());
    if (req.method === 'GET' && path === '/metrics') {
      void sources.metrics.text().then(
        (text) => {
          res.writeHead(200, { 'content-type': sources.metrics.contentType });
          res.end(text);
        },
        (e: unknown) => send(500, { error: `cannot collect metrics: ${ensureError(e).message}` }),
      );
      return;
    }
    send(404, { error: `no ${req.method} ${path}; try GET / (the dashboard), /api/status or /metrics` });
  };
  // Behind TLS like every other endpoint when the head has a certificate.
  const server: HttpServer =
    opts.tls === undefined ? createServer(handler) : createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`cannot serve the HTTP API on ${opts.host}:${opts.dashboardPort}: ${e.message}`, { cause: e })));
    server.listen(opts.dashboardPort!, opts.host, () => resolve());
  });
  return server;
}
