/**
 * The worker daemon: registers its resources with the head over one long-lived bidi stream,
 * heartbeats on it, runs the task calls the head assigns in executor processes, keeps their
 * outputs in its object store, serves them to peers, and reconnects (as a new worker) when the
 * session is lost.
 */
import * as grpc from '@grpc/grpc-js';
import { DPL_VERSION, ResourceSet, ensureError, privateDir, writeBundle, type Observation } from '@dpl/core';
import {
  CHANNEL_OPTIONS,
  ChunkAssembler,
  channelCredentials,
  objectStoreToProto,
  errorToProto,
  loadDplProto,
  ObjectFetcher,
  resourcesToProto,
  resourcesFromProto,
  tokenMetadata,
  type AssignTask,
  type ConnectWorkerRequest__Input,
  type ConnectWorkerResponse,
  type FetchModuleResponse,
  type HeadServiceClient,
  type PullSource,
} from '@dpl/wire';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options';
import { ObjectStore } from './store/object-store';
import { startDataServer, type DataServer } from './data/data-server';
import { ExecutorPool } from './executor/executor-pool';
import { GpuAllocator } from './executor/gpu-allocator';

/** A running worker. */
export interface Worker {
  /** The id the head gave this worker's current session (undefined until registered). */
  readonly id: string | undefined;
  readonly options: ResolvedWorkerOptions;
  /** `host:port` of this worker's data server. */
  readonly dataAddress: string;
  readonly store: ObjectStore;
  /** Bytes this worker fetched from peers, and served to them. */
  readonly bytesFetched: number;
  readonly bytesServed: number;
  /** Resolves on the next successful registration (at once when registered). */
  registered(): Promise<string>;
  /** Leaves the cluster and closes everything. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a worker; it keeps (re)connecting to the head until stopped.
 *
 * ```ts
 * const worker = await startWorker({ address: '127.0.0.1:6380', resources: { bigdb: 1 } });
 * console.log(await worker.registered()); // w1-myhost-3fa2
 * ```
 * @throws TypeError for invalid options.
 */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const opts = resolveWorkerOptions(options);
  // Bundles are imported from here: a private folder, checked before anything starts.
  const moduleDir = privateDir('worker-modules');
  const store = new ObjectStore({ memoryBytes: opts.objectStoreMemoryMb * 1024 * 1024, spillDir: opts.spillDir });
  const data = await startDataServer(store, opts.host, opts.token, opts.tls, opts.dataPort);
  return new WorkerDaemon(opts, store, data, moduleDir);
}

type Session = grpc.ClientDuplexStream<ConnectWorkerRequest__Input, ConnectWorkerResponse>;

class WorkerDaemon implements Worker {
  readonly dataAddress: string;
  private readonly client: HeadServiceClient;
  private readonly fetcher: ObjectFetcher;
  private readonly pool: ExecutorPool;
  private readonly gpus: GpuAllocator;
  private readonly modules = new Map<string, Promise<string>>();
  private session: Session | undefined;
  private workerId: string | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private delayMs: number;
  private stopped = false;
  private waiters: ((id: string) => void)[] = [];
  private seq = 0;
  private stopping: Promise<void> | undefined;
  /** What it registers with: its options, as changed since by `dpl worker update`. */
  private advertised: ResourceSet;

  constructor(
    readonly options: ResolvedWorkerOptions,
    readonly store: ObjectStore,
    private readonly data: DataServer,
    private readonly moduleDir: string,
  ) {
    this.delayMs = options.reconnectDelayMs;
    this.advertised = options.resources;
    this.dataAddress = `${options.host}:${data.port}`;
    const { HeadService } = loadDplProto();
    this.client = new HeadService(options.address, channelCredentials(options.tls), CHANNEL_OPTIONS);
    this.fetcher = new ObjectFetcher(options.token, options.tls);
    this.pool = new ExecutorPool(options.logger.child({ component: 'executors' }), options.maxIdleExecutors, options.executorMemoryMb);
    this.gpus = new GpuAllocator(options.resources.get('GPU'));
    this.connect();
  }

  get id(): string | undefined {
    return this.workerId;
  }

  get bytesFetched(): number {
    return this.fetcher.bytesFetched;
  }

  get bytesServed(): number {
    return this.data.bytesServed;
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
        data_address: this.dataAddress,
        hostname: this.options.hostname,
        pid: process.pid,
        resources: resourcesToProto(this.advertised.toJSON()),
        version: DPL_VERSION,
      },
    });
  }

  private onMessage(session: Session, msg: ConnectWorkerResponse): void {
    if (session !== this.session) return;
    switch (msg.msg) {
      case 'registered': {
        const { worker_id: id, heartbeat_interval_ms: intervalMs } = msg.registered!;
        this.workerId = id;
        this.delayMs = this.options.reconnectDelayMs;
        this.log.info({ head: this.options.address, data: this.dataAddress, resources: this.options.resources.toJSON() }, 'registered with the head');
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => {
          const budget = this.options.objectStoreMemoryMb * 1024 * 1024;
          const object_store = objectStoreToProto({ ...this.store.stats(), budgetBytes: Number.isFinite(budget) ? budget : -1 });
          session.write({
            heartbeat: {
              seq: String(++this.seq),
              sent_at_ms: String(Date.now()),
              object_store,
              bytes_fetched: String(this.fetcher.bytesFetched),
              bytes_served: String(this.data.bytesServed),
            },
          });
        }, intervalMs);
        for (const w of this.waiters.splice(0)) w(id);
        return;
      }
      case 'assign':
        void this.runTask(session, msg.assign!); // reports its own outcome to the head
        return;
      case 'release':
        for (const id of msg.release!.object_ids) this.store.delete(id);
        return;
      case 'pull_source':
        void this.pullSource(session, msg.pull_source!); // reports its own outcome
        return;
      case 'resources_changed':
        this.advertised = ResourceSet.from(resourcesFromProto(msg.resources_changed));
        this.log.info({ resources: this.advertised.toJSON() }, 'now advertising');
        return;
      case 'cancel_job': {
        const jobId = msg.cancel_job!.job_id;
        this.pool.closeSource(jobId);
        this.store.deletePrefix(`${jobId}/`);
        return;
      }
      case 'heartbeat_ack':
      case undefined:
        return;
    }
  }

  private async runTask(session: Session, a: AssignTask): Promise<void> {
    const attempt = a.attempt;
    const gpuIds = this.gpus.allocate(a.num_gpus) ?? [];
    try {
      const bundlePath = await this.module(a.module_hash);
      const inputs = await Promise.all(
        a.inputs.map(async (s) => ({
          ipc: await this.input(s.object_id, s.owner_address, s.inline_ipc),
          offset: Number(s.offset),
          rows: Number(s.rows),
        })),
      );
      const out = await this.pool.run(
        {
          kind: 'run',
          callId: a.call_id,
          bundlePath,
          label: a.module_hash.slice(0, 12),
          task: a.task,
          kwargs: a.kwargs,
          inputs,
          inputIds: a.input_ids,
          maxAttempts: a.max_attempts,
        },
        attempt,
        gpuIds.join(','),
        a.timeout_ms,
      );
      const inline = out.ipc.byteLength <= a.inline_output_max_bytes;
      if (!inline) this.store.put(a.output_id, out.ipc);
      session.write({
        task_done: {
          call_id: a.call_id,
          job_id: a.job_id,
          output_id: inline ? '' : a.output_id,
          rows: String(out.rows),
          bytes: String(out.ipc.byteLength),
          inline_ipc: inline ? out.ipc : new Uint8Array(0),
          assignment: a.assignment,
          observations: observationsToProto(out.observations),
        },
      });
    } catch (e) {
      const recorded = (e as { details?: { observations?: Observation[] } }).details?.observations;
      session.write({
        task_failed: { call_id: a.call_id, job_id: a.job_id, error: errorToProto(e), assignment: a.assignment, observations: observationsToProto(recorded) },
      });
    } finally {
      this.gpus.release(gpuIds, a.num_gpus);
    }
  }

  /** Pulls the next batch of a job's generator into the store and tells the head. */
  private async pullSource(session: Session, p: PullSource): Promise<void> {
    const base = { job_id: p.job_id, seq: p.seq };
    try {
      const bundlePath = await this.module(p.module_hash);
      const r = await this.pool.nextSource(p.job_id, bundlePath, p.module_hash.slice(0, 12));
      if (r === undefined) {
        this.pool.closeSource(p.job_id);
        session.write({ source_batch: { ...base, done: true } });
        return;
      }
      const id = `${p.job_id}/s${p.seq}`;
      this.store.put(id, r.ipc);
      session.write({ source_batch: { ...base, object_id: id, rows: String(r.rows), bytes: String(r.ipc.byteLength) } });
    } catch (e) {
      this.pool.closeSource(p.job_id);
      session.write({ source_batch: { ...base, error: errorToProto(e) } });
    }
  }

  /** An input's bytes: inline, from this worker's store, or fetched from its owner. */
  private async input(objectId: string, owner: string, inline: Uint8Array): Promise<Uint8Array> {
    if (objectId === '') return aligned(inline);
    const local = await this.store.read(objectId);
    if (local !== undefined) return local;
    return this.fetcher.fetch(owner, objectId);
  }

  /** The path of a module bundle, fetched from the head once per hash. */
  private module(hash: string): Promise<string> {
    let p = this.modules.get(hash);
    if (p === undefined) {
      p = new Promise<Uint8Array>((resolve, reject) => {
        const assembler = new ChunkAssembler();
        const call = this.client.FetchModule({ hash }, tokenMetadata(this.options.token));
        call.on('data', (m: FetchModuleResponse) => assembler.add(m.chunk));
        call.on('error', (e: grpc.ServiceError) => reject(new Error(`cannot fetch module ${hash} from the head: ${e.details}`)));
        call.on('end', () => resolve(assembler.finish()));
      }).then((code) => writeBundle(this.moduleDir, hash, code));
      p.catch(() => this.modules.delete(hash)); // a failed fetch is retried by the next call
      this.modules.set(hash, p);
    }
    return p;
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
      this.pool.stop();
      this.fetcher.close();
      this.client.close();
      await this.data.stop();
      this.store.close();
    })();
    return this.stopping;
  }
}

function aligned(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset % 8 === 0) return bytes;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/** Observations as their proto messages. */
function observationsToProto(list: Observation[] | undefined): { kind: string; name: string; value: number; text: string }[] {
  return (list ?? []).map((o) =>
    o.kind === 'param' ? { kind: o.kind, name: o.name, value: 0, text: o.value } : { kind: o.kind, name: o.name, value: o.value, text: '' },
  );
}
