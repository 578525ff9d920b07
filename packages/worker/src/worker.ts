/**
 * The worker daemon: registers its resources with the head over one long-lived bidi stream,
 * heartbeats on it, and reconnects (as a new worker) when the session is lost.
 */
import * as grpc from '@grpc/grpc-js';
import { DPL_VERSION, ensureError } from '@dpl/core';
import {
  CHANNEL_OPTIONS,
  loadDplProto,
  resourcesToProto,
  tokenMetadata,
  type ConnectWorkerRequest__Input,
  type ConnectWorkerResponse,
  type HeadServiceClient,
} from '@dpl/wire';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options';

/** A running worker. */
export interface Worker {
  /** The id the head gave this worker's current session (undefined until registered). */
  readonly id: string | undefined;
  readonly options: ResolvedWorkerOptions;
  /** Resolves on the next successful registration (at once when registered). */
  registered(): Promise<string>;
  /** Leaves the cluster and closes the connection. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a worker; it keeps (re)connecting to the head until stopped.
 *
 * ```ts
 * const worker = startWorker({ address: '127.0.0.1:6380', resources: { bigdb: 1 } });
 * console.log(await worker.registered()); // w1-myhost
 * ```
 * @throws TypeError for invalid options.
 */
export function startWorker(options: WorkerOptions): Worker {
  const opts = resolveWorkerOptions(options);
  return new WorkerDaemon(opts);
}

type Session = grpc.ClientDuplexStream<ConnectWorkerRequest__Input, ConnectWorkerResponse>;

class WorkerDaemon implements Worker {
  readonly options: ResolvedWorkerOptions;
  private readonly client: HeadServiceClient;
  private session: Session | undefined;
  private workerId: string | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private delayMs: number;
  private stopped = false;
  private waiters: ((id: string) => void)[] = [];
  private seq = 0;

  constructor(opts: ResolvedWorkerOptions) {
    this.options = opts;
    this.delayMs = opts.reconnectDelayMs;
    const { HeadService } = loadDplProto();
    this.client = new HeadService(opts.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    this.connect();
  }

  get id(): string | undefined {
    return this.workerId;
  }

  registered(): Promise<string> {
    if (this.workerId !== undefined) return Promise.resolve(this.workerId);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private get log() {
    return this.options.logger.child({ component: 'worker', workerId: this.workerId });
  }

  private connect(): void {
    if (this.stopped) return;
    const session = this.client.ConnectWorker(tokenMetadata(this.options.token));
    this.session = session;
    session.on('data', (msg: ConnectWorkerResponse) => this.onMessage(session, msg));
    session.on('error', (e: grpc.ServiceError) => this.lost(session, e));
    session.on('end', () => this.lost(session, undefined));
    session.write({
      register: {
        data_address: '',
        hostname: this.options.hostname,
        pid: process.pid,
        resources: resourcesToProto(this.options.resources.toJSON()),
        version: DPL_VERSION,
      },
    });
  }

  private onMessage(session: Session, msg: ConnectWorkerResponse): void {
    if (session !== this.session) return;
    if (msg.msg === 'registered') {
      const { worker_id: id, heartbeat_interval_ms: intervalMs } = msg.registered!;
      this.workerId = id;
      this.delayMs = this.options.reconnectDelayMs;
      this.log.info({ head: this.options.address, resources: this.options.resources.toJSON() }, 'registered with the head');
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => {
        session.write({ heartbeat: { seq: String(++this.seq), sent_at_ms: String(Date.now()) } });
      }, intervalMs);
      for (const w of this.waiters.splice(0)) w(id);
    }
  }

  /** The session ended: forget the registration and reconnect after a backoff. */
  private lost(session: Session, e: grpc.ServiceError | undefined): void {
    if (session !== this.session) return;
    this.session = undefined;
    clearInterval(this.heartbeat);
    const was = this.workerId;
    this.workerId = undefined;
    if (this.stopped) return;
    const fatal = e?.code === grpc.status.UNAUTHENTICATED || e?.code === grpc.status.INVALID_ARGUMENT;
    const level = was === undefined && !fatal ? 'debug' : 'warn';
    this.options.logger[level](
      { workerId: was, head: this.options.address, err: e ? ensureError(e).message : 'session ended', retryInMs: this.delayMs },
      'lost the head; reconnecting',
    );
    this.reconnect = setTimeout(() => this.connect(), this.delayMs);
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxReconnectDelayMs);
  }

  private stopping: Promise<void> | undefined;

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      clearInterval(this.heartbeat);
      clearTimeout(this.reconnect);
      const session = this.session;
      this.session = undefined;
      if (session !== undefined) {
        await new Promise<void>((resolve) => {
          session.once('error', () => resolve());
          session.once('end', () => resolve());
          session.once('close', () => resolve());
          session.end();
          setTimeout(resolve, 1_000).unref();
        });
      }
      this.client.close();
    })();
    return this.stopping;
  }
}
