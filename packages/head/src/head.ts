/**
 * The head daemon: a gRPC server that keeps the registry of workers (registration, heartbeats,
 * death by silence or disconnection) and answers status queries.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, mkdirSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import net, { type AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { DPL_VERSION, DplError, DplErrorCode, OutputFiles, describe, ensureError, type Logger } from '@dpl/core';
import {
  ChunkAssembler,
  ConnectionGuard,
  ObjectFetcher,
  SERVER_OPTIONS,
  chunksOf,
  shutdownServer,
  errorToProto,
  loadDplProto,
  presentedToken,
  statusToProto,
  tokenMatches,
  unauthenticated,
  resourcesFromProto,
  type ClusterStatus,
  type ClusterDemand,
  type JobInfo,
  NO_DEMAND,
  type ConnectWorkerRequest,
  type ConnectWorkerResponse__Input,
  type HeadServiceClient,
  type HeadServiceHandlers,
  inProcessClient,
  type RunJobRequest,
  type AttachJobRequest,
  type UploadModuleRequest,
  serverCredentials,
  objectStoreFromProto,
  resourcesToProto,
} from '@dpl/wire';
import { Dispatcher } from './jobs/dispatcher';
import { WorkerLink, type WorkerSink } from './jobs/worker-link';
import { HeadMetrics } from './metrics/metrics';
import { startHttpApi, ThroughputMeter } from './dashboard/http-api';
import { graphOfSpec, type JobCall, type JobSummary } from './jobs/job';
import { ModuleStore } from './modules/module-store';
import { resolveHeadOptions, type HeadOptions, type ResolvedHeadOptions } from './head-options';
import { WorkerRegistry, type WorkerRecord } from './registry/worker-registry';

/** A running head. */
export interface Head {
  /** `host:port` that workers and clients connect to. */
  readonly address: string;
  readonly port: number;
  /** The token every RPC must carry (generated when none was given); undefined only with `insecure`. */
  readonly token: string | undefined;
  readonly registry: WorkerRegistry;
  /** Bytes the head fetched from workers: only sink outputs, on their way to clients. */
  readonly bytesFetched: number;
  /** `host:port` of the HTTP API, when it serves one. */
  readonly dashboardAddress: string | undefined;
  status(): ClusterStatus;
  /**
   * A client of this head that runs its handlers in this process: no socket, the same messages
   * (the embedded `dpl run` links its worker and client to its head with it). Calls still carry
   * the token.
   * @internal
   */
  inProcessClient(): HeadServiceClient;
  /** Closes every worker session and the server. Idempotent. */
  stop(): Promise<void>;
}

type WorkerCall = grpc.ServerDuplexStream<ConnectWorkerRequest, ConnectWorkerResponse__Input>;

/**
 * Starts a head and resolves once it listens.
 *
 * ```ts
 * const head = await startHead({ port: 0 });
 * console.log(head.address); // 127.0.0.1:41873
 * await head.stop();
 * ```
 * @throws TypeError for invalid options; an Error naming the address when it cannot bind.
 */
export async function startHead(options: HeadOptions = {}): Promise<Head> {
  const opts = resolveHeadOptions(options);
  const log = opts.logger.child({ component: 'head' });
  const registry = new WorkerRegistry();
  /** Each live worker's session, behind the link the dispatcher sends through (batched per pass). */
  const links = new Map<string, WorkerLink<WorkerCall>>();
  const server = new grpc.Server(SERVER_OPTIONS);
  const fetcher = new ObjectFetcher(opts.token, opts.tls);
  const metrics: HeadMetrics = new HeadMetrics({
    registry,
    // Read at scrape time, once the dispatcher exists.
    jobs: () => dispatcher.jobList.map((j) => ({ id: j.id, tasks: j.stats().tasks })),
    demand: () => demandOf(state),
  });
  const throughput = new ThroughputMeter();
  const jobHistory: JobSummary[] = [];
  const dispatcher: Dispatcher = new Dispatcher(registry, links, fetcher, log.child({ component: 'dispatcher' }), metrics, {
    delivered: () => throughput.add(1),
    ended: (summary) => {
      jobHistory.push(summary);
      if (jobHistory.length > JOB_HISTORY) jobHistory.shift();
    },
  });
  // Connections come through a listener of our own, which bounds how many are open (grpc-js has
  // no such limit) and closes those that do not speak HTTP/2 within seconds.
  const guard = new ConnectionGuard({ onRefused: (reason, peer) => log.debug({ reason, peer }, 'gRPC connection refused') });
  // A bundle a running job uses stays: a worker that joins mid-job fetches it.
  const modules = new ModuleStore({ inUse: (hash) => dispatcher.jobList.some((j) => j.spec.module_hash === hash) });
  const state: HeadState = { opts, registry, links, log, dispatcher, metrics, throughput, modules, jobHistory };
  const handlers = headHandlers(state);
  server.addService(loadDplProto().HeadService.service, handlers);
  const injector = server.createConnectionInjector(serverCredentials(opts.tls));
  const listener = net.createServer((socket) => {
    socket.on('error', () => undefined);
    if (!guard.admit(socket)) return;
    // Handed to grpc-js only once the client has spoken (the whole HTTP/2 preface in clear, the
    // first TLS bytes with TLS): until then the guard can still close it. From then on its HTTP/2
    // session owns the socket, and grpc-js closes it when it stays idle (SERVER_OPTIONS).
    let first: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      first = first.byteLength === 0 ? chunk : Buffer.concat([first, chunk]);
      if (opts.tls === undefined) {
        const n = Math.min(first.byteLength, HTTP2_PREFACE.byteLength);
        if (!first.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n))) return void socket.destroy(); // not HTTP/2
        if (n < HTTP2_PREFACE.byteLength) return; // wait for the rest of it
      }
      socket.off('data', onData);
      socket.pause();
      socket.unshift(first);
      guard.handOver(socket);
      injector.injectConnection(socket);
    };
    socket.on('data', onData);
  });
  const port = await new Promise<number>((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? ' (is another head running? pick another --port, or stop it: dpl stop)' : '';
      reject(new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}${hint}`, { cause: err }));
    });
    listener.listen(opts.port, opts.host.replace(/^\[|\]$/g, ''), () => resolve((listener.address() as AddressInfo).port));
  });
  const address = `${hostPart(opts.host)}:${port}`;

  // Heartbeat sweep: a worker silent for heartbeatTimeoutMs is dead, even if its TCP connection
  // looks open (a stopped process, a cut network).
  const sweep = setInterval(() => {
    for (const w of registry.silent(opts.heartbeatTimeoutMs)) {
      const silentMs = Date.now() - w.lastHeartbeatMs;
      registry.markDead(w.id, `no heartbeat for ${silentMs} ms`);
      log.warn({ workerId: w.id, silentMs }, 'worker missed its heartbeats; removed');
      const call = dropLink(links, w.id)?.session;
      call?.emit('error', { code: grpc.status.UNAVAILABLE, details: `no heartbeat for ${silentMs} ms; register again` });
      dispatcher.workerGone(w.id);
    }
  }, Math.max(50, Math.floor(opts.heartbeatIntervalMs / 2)));
  sweep.unref();

  let http: Awaited<ReturnType<typeof startHttpApi>> | undefined;
  /** Closes what the head has started (also a head that fails to start: none is left half-running). */
  const close = async (): Promise<void> => {
    clearInterval(sweep);
    throughput.stop();
    dispatcher.stop(new DplError(DplErrorCode.UNAVAILABLE, 'the head is shutting down; submit the job again when it is back'));
    fetcher.close();
    if (http !== undefined) await new Promise<void>((resolve) => http!.close(() => resolve()));
    for (const id of [...links.keys()]) dropLink(links, id)?.session.end();
    listener.close();
    await shutdownServer(server, 2_000);
    injector.destroy();
    guard.destroyAll();
  };
  try {
    http =
      opts.dashboardPort === null
        ? undefined
        : await startHttpApi(opts, {
            status: () => statusOf(state),
            metrics,
            dashboard: () => ({
              ...statusOf(state),
              now: Date.now(),
              jobs: [...state.jobHistory, ...state.dispatcher.jobList.map((j) => j.summary())],
              throughput: throughput.series(),
            }),
          });
  } catch (e) {
    await close();
    throw e;
  }
  const dashboardAddress = http === undefined ? undefined : `${hostPart(opts.host)}:${(http.address() as AddressInfo).port}`;
  log.info({ address, dashboard: dashboardAddress, token: opts.token !== undefined }, 'head listening');
  let stopped: Promise<void> | undefined;
  return {
    address,
    port,
    token: opts.token,
    registry,
    get bytesFetched() {
      return dispatcher.bytesFetched;
    },
    dashboardAddress,
    status: () => statusOf(state),
    inProcessClient: () =>
      inProcessClient(loadDplProto().HeadService.service, handlers) as unknown as HeadServiceClient,
    stop: () => {
      stopped ??= close().then(() => log.info({ address }, 'head stopped'));
      return stopped;
    },
  };
}

/** Forgets a worker's session: what its link still held is not sent. Returns the link. */
function dropLink<S extends WorkerSink>(links: Map<string, WorkerLink<S>>, workerId: string): WorkerLink<S> | undefined {
  const link = links.get(workerId);
  link?.close();
  links.delete(workerId);
  return link;
}

/** What every HTTP/2 client sends first (RFC 9113, 3.4). */
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** Finished jobs listed by status, most recent last. */
const JOB_HISTORY = 50;

interface HeadState {
  opts: ResolvedHeadOptions;
  registry: WorkerRegistry;
  links: Map<string, WorkerLink<WorkerCall>>;
  log: Logger;
  dispatcher: Dispatcher;
  metrics: HeadMetrics;
  modules: ModuleStore;
  jobHistory: JobSummary[];
  throughput: ThroughputMeter;
}

function statusOf(state: HeadState): ClusterStatus {
  const status = state.registry.status(DPL_VERSION);
  status.jobs = [...state.jobHistory, ...state.dispatcher.jobList.map((j) => j.summary())].map(jobInfoOf);
  status.demand = demandOf(state);
  return status;
}

/**
 * Where a detached job's outputs go: an absolute folder on this machine, made now (so that a
 * folder the head cannot write fails the job at its start).
 * @throws DplError(VALIDATION) naming the folder and the rule.
 */
function outputFilesOf(dir: string, sinks: number, jobId: string): OutputFiles {
  if (dir === '' || !isAbsolute(dir)) {
    throw new DplError(
      DplErrorCode.VALIDATION,
      `a detached job needs an absolute --out-dir on the head's machine (its outputs are written there), got ${JSON.stringify(dir)}; e.g. dpl submit --detach -o /data/out`,
    );
  }
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK);
  } catch (e) {
    throw new DplError(DplErrorCode.VALIDATION, `the head cannot write a detached job's outputs under ${dir}: ${(e as Error).message}; give --out-dir a folder the head's user can write`);
  }
  return new OutputFiles(dir, jobId, { partition: sinks > 1, oneSinkPerFolder: true });
}

/** A job as the status shows it. */
function jobInfoOf(j: JobSummary): JobInfo {
  return {
    id: j.id,
    state: j.state,
    startedAtMs: j.startedAtMs,
    endedAtMs: j.endedAtMs,
    outputs: j.outputs,
    rows: j.rows,
    error: j.error?.message,
    detached: j.detached,
    outDir: j.outDir,
  };
}

/** What the work needs: the waiting calls by shape, and per resource what runs plus what waits. */
function demandOf(state: HeadState): ClusterDemand {
  const waiting = state.dispatcher.engine.demand();
  const pending: Record<string, number> = {};
  for (const w of waiting) for (const [k, v] of Object.entries(w.resources)) if (v > 0) pending[k] = (pending[k] ?? 0) + v * w.calls;
  // CPU always: an autoscaler reads demand.resources.CPU, also when it is 0.
  const resources: Record<string, number> = { CPU: 0, ...pending };
  for (const w of state.registry.workers()) {
    if (w.state === 'dead') continue;
    for (const [k, total] of Object.entries(w.total.toJSON())) {
      const used = total - w.available.get(k);
      if (used > 0) resources[k] = (resources[k] ?? 0) + used;
    }
  }
  return { waiting, resources, pending };
}

let jobCounter = 0;

/** What a client's run id must look like to become its job's id (a UUID, or a name of its own). */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * The job's id: the client's run id (the one id the user sees everywhere: the client's output,
 * the head's log, the dashboard, dpl status), or one made here for a client that sent none.
 * @throws DplError(VALIDATION) for a run id that is malformed or already running here.
 */
function jobIdOf(runId: string, running: (id: string) => boolean): string {
  if (runId === '') return `job-${++jobCounter}-${randomBytes(3).toString('hex')}`;
  if (!RUN_ID.test(runId)) {
    throw new DplError(
      DplErrorCode.VALIDATION,
      `run id ${JSON.stringify(runId.slice(0, 200))} is not a valid job id: use 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  if (running(runId)) {
    throw new DplError(DplErrorCode.VALIDATION, `a job with id ${runId} is already running on this head; give each run its own id`);
  }
  return runId;
}

function headHandlers(state: HeadState): HeadServiceHandlers {
  const { opts, registry, links, log, dispatcher, modules } = state;
  /** A job that ended, among those the head remembers. */
  const endedJob = (id: string): JobSummary | undefined => state.jobHistory.find((j) => j.id === id);
  const noSuchJob = (id: string): Partial<grpc.StatusObject> => ({
    code: grpc.status.NOT_FOUND,
    details: `no job ${JSON.stringify(id)} on this head; dpl job list shows its jobs`,
  });
  const authorized = (call: { metadata: grpc.Metadata }): boolean => tokenMatches(opts.token, presentedToken(call.metadata));
  /**
   * A stream listener that cannot throw into grpc-js (which would take the head down): a fault
   * ends that call with INVALID_ARGUMENT instead.
   */
  const safely =
    <T>(what: string, fail: (e: Partial<grpc.StatusObject>) => void, fn: (arg: T) => void) =>
    (arg: T): void => {
      try {
        fn(arg);
      } catch (e) {
        log.warn({ err: ensureError(e), rpc: what }, 'request failed in its handler');
        fail({ code: grpc.status.INVALID_ARGUMENT, details: `${what}: ${ensureError(e).message}` });
      }
    };
  const endWith = (call: { emit(event: 'error', e: Partial<grpc.StatusObject>): unknown }) => (e: Partial<grpc.StatusObject>) =>
    void call.emit('error', e);
  return {
    ConnectWorker(call: WorkerCall) {
      if (!authorized(call)) {
        call.emit('error', unauthenticated());
        return;
      }
      let worker: WorkerRecord | undefined;
      // A session is refused once: the messages it had queued (say, heartbeats sent while the
      // head was stopped) are dropped, not each refused and logged.
      let refused = false;
      const refuse = (code: grpc.status, details: string): void => {
        refused = true;
        log.warn({ workerId: worker?.id, peer: call.getPeer(), details }, 'worker session refused');
        call.emit('error', { code, details });
      };
      call.on('data', safely('ConnectWorker', endWith(call), (msg: ConnectWorkerRequest) => {
        if (refused) return;
        switch (msg.msg) {
          case 'register': {
            if (worker !== undefined) return refuse(grpc.status.FAILED_PRECONDITION, 'this session is already registered');
            const reg = msg.register!;
            try {
              worker = registry.register({
                address: reg.data_address,
                hostname: reg.hostname,
                pid: reg.pid,
                resources: resourcesFromProto(reg.resources),
              });
            } catch (e) {
              return refuse(grpc.status.INVALID_ARGUMENT, `invalid registration: ${ensureError(e).message}`);
            }
            links.set(worker.id, new WorkerLink(call));
            call.write({ registered: { worker_id: worker.id, heartbeat_interval_ms: opts.heartbeatIntervalMs } });
            log.info({ workerId: worker.id, host: reg.hostname, resources: worker.total.toJSON() }, 'worker registered');
            dispatcher.schedule();
            return;
          }
          case 'heartbeat': {
            if (worker === undefined) return refuse(grpc.status.FAILED_PRECONDITION, 'register before sending heartbeats');
            const hb = msg.heartbeat!;
            const sentAt = Number(hb.sent_at_ms);
            if (sentAt > 0) state.metrics.heartbeatLatency.observe(Math.max(0, Date.now() - sentAt) / 1000);
            const figures = { objectStore: objectStoreFromProto(hb.object_store), bytesFetched: Number(hb.bytes_fetched), bytesServed: Number(hb.bytes_served) };
            if (!registry.heartbeat(worker.id, figures)) {
              return refuse(grpc.status.FAILED_PRECONDITION, `worker ${worker.id} is no longer registered; register again`);
            }
            call.write({ heartbeat_ack: { seq: msg.heartbeat!.seq } });
            return;
          }
          case 'results': {
            if (worker === undefined) return refuse(grpc.status.FAILED_PRECONDITION, 'register before sending results');
            const { done, failed, output } = msg.results!;
            // What a call printed goes before its answer (which may end the job).
            for (const o of output) dispatcher.taskOutput(worker.id, o);
            for (const d of done) dispatcher.taskDone(worker.id, d);
            for (const f of failed) dispatcher.taskFailed(worker.id, f);
            return;
          }
          case 'source_batch':
            if (worker !== undefined) dispatcher.sourceBatch(worker.id, msg.source_batch!);
            return;
          case 'leave': {
            if (worker === undefined) return refuse(grpc.status.FAILED_PRECONDITION, 'register before leaving');
            if (registry.get(worker.id)?.state === 'alive') registry.drain(worker.id, true);
            log.info({ workerId: worker.id, graceMs: Number(msg.leave!.grace_ms) }, 'worker leaving: no new calls; its running ones finish, then what it holds moves');
            dispatcher.workerLeaving(worker.id);
            return;
          }
          case 'kept':
            if (worker !== undefined) dispatcher.objectsKept(worker.id, msg.kept!.object_ids, msg.kept!.failed_ids, msg.kept!.error);
            return;
          case undefined:
          default:
            return refuse(grpc.status.INVALID_ARGUMENT, `unknown worker message ${describe(msg.msg)}`);
        }
      }));
      const gone = (reason: string, graceful: boolean): void => {
        if (worker === undefined) return;
        if (links.get(worker.id)?.session === call) dropLink(links, worker.id);
        if (registry.markDead(worker.id, reason) !== undefined) {
          if (graceful) log.info({ workerId: worker.id }, 'worker left');
          else log.warn({ workerId: worker.id, reason }, 'worker lost');
          dispatcher.workerGone(worker.id);
        }
      };
      // The worker ending its side is a goodbye; a cancelled call or an error is a loss.
      call.on('end', () => {
        gone('it left', true);
        call.end();
      });
      call.on('cancelled', () => gone('its connection was lost', false));
      call.on('error', (e: Error) => gone(`session error: ${e.message}`, false));
    },
    GetStatus(call, callback) {
      if (!authorized(call)) return callback(unauthenticated());
      callback(null, statusToProto(statusOf(state)));
    },
    HasModule(call, callback) {
      if (!authorized(call)) return callback(unauthenticated());
      callback(null, { present: modules.has(call.request.hash), max_bytes: String(modules.maxBytes) });
    },
    UploadModule(call, callback) {
      if (!authorized(call)) return callback(unauthenticated());
      let hash = '';
      let size = 0;
      const assembler = new ChunkAssembler();
      let failed = false;
      const fail = (e: Partial<grpc.StatusObject>): void => {
        if (failed) return;
        failed = true;
        callback(e);
      };
      call.on('data', safely('UploadModule', fail, (m: UploadModuleRequest) => {
        if (failed) return;
        if (hash === '') {
          hash = m.hash;
          size = Number(m.size);
          if (size > modules.maxBytes) {
            failed = true;
            callback({
              code: grpc.status.RESOURCE_EXHAUSTED,
              details: `module bundle is ${size} bytes; the head accepts at most ${modules.maxBytes} bytes; keep large data out of the module (read it inside a task)`,
            });
            return;
          }
        }
        assembler.add(m.chunk);
        if (assembler.size > modules.maxBytes) {
          failed = true;
          callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: `module bundle exceeds ${modules.maxBytes} bytes` });
        }
      }));
      call.on('end', safely('UploadModule', fail, () => {
        if (failed) return;
        try {
          modules.put(hash, assembler.finish());
          callback(null, { hash });
        } catch (e) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: ensureError(e).message });
        }
      }));
    },
    UpdateWorker(call, callback) {
      if (!authorized(call)) return callback(unauthenticated());
      const req = call.request;
      try {
        let w = registry.get(req.worker_id);
        if (w === undefined) {
          return callback({ code: grpc.status.NOT_FOUND, details: `no live worker ${JSON.stringify(req.worker_id)}; see dpl status for the worker ids` });
        }
        const changes = resourcesFromProto(req.resources);
        if (Object.keys(changes).length > 0) {
          w = registry.update(req.worker_id, changes);
          links.get(w.id)?.send({ resources_changed: resourcesToProto(w.total.toJSON()) });
          log.info({ workerId: w.id, resources: w.total.toJSON() }, 'worker resources changed');
        }
        if (req.change_drain) {
          w = registry.drain(req.worker_id, req.drain);
          log.info({ workerId: w.id }, req.drain ? 'worker draining: no new placements' : 'worker taking placements again');
        }
        if (req.leave) {
          w = registry.drain(req.worker_id, true);
          links.get(w.id)?.send({ please_leave: { grace_ms: '0' } });
          log.info({ workerId: w.id }, 'worker asked to leave');
        }
        dispatcher.schedule();
        const info = statusOf(state).workers.find((x) => x.id === req.worker_id)!;
        callback(null, { worker: statusToProto({ version: '', jobs: [], workers: [info], demand: NO_DEMAND }).workers![0] });
      } catch (e) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: ensureError(e).message });
      }
    },
    FetchModule(call) {
      if (!authorized(call)) {
        call.emit('error', unauthenticated());
        return;
      }
      const bytes = modules.get(call.request.hash);
      if (bytes === undefined) {
        call.emit('error', { code: grpc.status.NOT_FOUND, details: `no module ${call.request.hash} on the head` });
        return;
      }
      for (const chunk of chunksOf(bytes)) call.write({ chunk });
      call.end();
    },
    StopJob(call, callback) {
      if (!authorized(call)) return callback(unauthenticated());
      const id = call.request.job_id;
      const running = dispatcher.engine.job(id);
      if (running === undefined) {
        const ended = endedJob(id);
        if (ended !== undefined) return callback(null, { state: ended.state });
        return callback(noSuchJob(id));
      }
      log.info({ jobId: id }, 'job stopped on request');
      dispatcher.cancel(id);
      callback(null, { state: dispatcher.engine.job(id)?.state ?? 'cancelled' });
    },
    JobLogs(call) {
      if (!authorized(call)) {
        call.emit('error', unauthenticated());
        return;
      }
      const { job_id: id, follow } = call.request;
      const running = dispatcher.engine.job(id);
      const summary = running?.summary() ?? endedJob(id);
      if (summary === undefined) {
        call.emit('error', noSuchJob(id));
        return;
      }
      if (summary.output.length > 0) call.write({ lines: summary.output });
      if (!follow || running === undefined) {
        call.end();
        return;
      }
      // A follower that reads slower than the job prints (a paused `| less`) is not buffered
      // without bound on the head: past gRPC's buffer, lines are counted instead of queued, and
      // it is told how many it missed once it reads again.
      let behind = false;
      let missed = 0;
      const open = (): boolean => !call.cancelled && !call.writableEnded;
      /** What it missed, said once (then counted afresh). */
      const sayMissed = (): void => {
        if (missed === 0) return;
        const n = missed;
        missed = 0;
        call.write({ lines: [`(dpl) ${n} line${n === 1 ? '' : 's'} of job ${id} left out here: this reader fell behind the job's output (dpl job logs ${id} shows what the head keeps)`] });
      };
      const send = (lines: string[]): void => {
        if (!open()) return;
        if (behind) missed += lines.length;
        else if (!call.write({ lines })) behind = true;
      };
      call.on('drain', () => {
        if (!open()) return;
        behind = false;
        sayMissed();
      });
      const stop = dispatcher.followOutput(id, send, () => {
        if (!open()) return;
        sayMissed(); // one message past the buffer, at the end
        call.end();
      });
      call.on('cancelled', stop);
      call.on('close', stop);
    },
    AttachJob(attachCall) {
      // Answered as a job stream is (the same messages as RunJob's).
      const call = attachCall as unknown as JobCall;
      if (!authorized(attachCall)) {
        call.emit('error', unauthenticated());
        return;
      }
      let jobId: string | undefined;
      attachCall.on('data', safely('AttachJob', endWith(call), (m: AttachJobRequest) => {
        if (m.msg === 'ack') {
          if (jobId !== undefined) dispatcher.ack(jobId, m.ack!.batch_ids);
          return;
        }
        if (m.msg !== 'start' || jobId !== undefined) {
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'an attachment starts with one start message, then acknowledgements' });
          return;
        }
        const id = m.start!.job_id;
        const job = dispatcher.engine.job(id);
        if (job === undefined) {
          const ended = endedJob(id);
          call.emit('error', ended === undefined ? noSuchJob(id) : { code: grpc.status.FAILED_PRECONDITION, details: `job ${id} has ended (${ended.state}); nothing is left to attach to` });
          return;
        }
        try {
          dispatcher.attach(id, call, m.start!.have);
        } catch (e) {
          call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: ensureError(e).message });
          return;
        }
        jobId = id;
        call.write({ accepted: { job_id: id, sinks: job.graph.sinkTasks.map((t) => t.name) } });
        log.info({ jobId: id, have: m.start!.have.length }, 'a client attached to the job');
      }));
      const gone = (): void => {
        if (jobId !== undefined) dispatcher.detach(jobId, call);
      };
      attachCall.on('cancelled', gone);
      attachCall.on('error', gone);
      attachCall.on('end', () => {
        gone();
        call.end();
      });
    },
    RunJob(call: JobCall) {
      if (!authorized(call)) {
        call.emit('error', unauthenticated());
        return;
      }
      let jobId: string | undefined;
      const reject = (err: DplError): void => {
        call.write({ failed: errorToProto(err) });
        call.end();
      };
      call.on('data', safely('RunJob', endWith(call), (msg: RunJobRequest) => {
        if (msg.msg !== 'start' || jobId !== undefined) {
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'a job stream takes exactly one start message' });
          return;
        }
        const spec = msg.start!;
        let id: string;
        try {
          id = jobIdOf(spec.run_id, (runId) => dispatcher.jobList.some((j) => j.id === runId));
        } catch (e) {
          return reject(e as DplError);
        }
        if (!modules.has(spec.module_hash)) {
          return reject(new DplError(DplErrorCode.MODULE, `module ${spec.module_hash} was not uploaded to the head; upload it first`));
        }
        let built: ReturnType<typeof graphOfSpec>;
        try {
          built = graphOfSpec(spec, { fuse: opts.fuseTasks });
        } catch (e) {
          return reject(e as DplError);
        }
        let files: OutputFiles | undefined;
        if (spec.detached && spec.out_dir !== '') {
          try {
            files = outputFilesOf(spec.out_dir, built.graph.sinkTasks.length, id);
          } catch (e) {
            return reject(e as DplError);
          }
        }
        jobId = id;
        const jobLog = log.child({ jobId: id });
        call.write({ accepted: { job_id: id, sinks: built.graph.sinkTasks.map((t) => t.name) } });
        jobLog.info({ tasks: spec.tasks.length, maxBatches: spec.max_batches, detached: spec.detached, outDir: files?.dir }, 'job started');
        dispatcher.start({ id, spec, ...built, call, log: jobLog, files });
        if (built.chains.size > 0) jobLog.debug({ chains: [...built.chains.values()] }, 'tasks fused into one call per chain');
      }));
      const cancel = (): void => {
        // A detached job runs on without its client.
        if (jobId !== undefined && dispatcher.engine.job(jobId)?.spec.detached !== true) dispatcher.cancel(jobId);
      };
      call.on('cancelled', cancel);
      call.on('error', cancel);
    },
  };
}
