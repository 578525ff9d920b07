/**
 * The head daemon: a gRPC server that keeps the registry of workers (registration, heartbeats,
 * death by silence or disconnection) and answers status queries.
 */
import * as grpc from '@grpc/grpc-js';
import { DPL_VERSION, describe, ensureError, type Logger } from '@dpl/core';
import {
  SERVER_OPTIONS,
  loadDplProto,
  presentedToken,
  statusToProto,
  tokenMatches,
  unauthenticated,
  resourcesFromProto,
  type ClusterStatus,
  type ConnectWorkerRequest,
  type ConnectWorkerResponse__Input,
  type HeadServiceHandlers,
} from '@dpl/wire';
import { resolveHeadOptions, type HeadOptions, type ResolvedHeadOptions } from './head-options';
import { WorkerRegistry, type WorkerRecord } from './registry/worker-registry';

/** A running head. */
export interface Head {
  /** `host:port` that workers and clients connect to. */
  readonly address: string;
  readonly port: number;
  readonly registry: WorkerRegistry;
  status(): ClusterStatus;
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
  const sessions = new Map<string, WorkerCall>();
  const server = new grpc.Server(SERVER_OPTIONS);
  server.addService(loadDplProto().HeadService.service, headHandlers(opts, registry, sessions, log));

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err })) : resolve(p),
    );
  });
  const address = `${opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host}:${port}`;

  // Heartbeat sweep: a worker silent for heartbeatTimeoutMs is dead, even if its TCP connection
  // looks open (a stopped process, a cut network).
  const sweep = setInterval(() => {
    for (const w of registry.silent(opts.heartbeatTimeoutMs)) {
      const silentMs = Date.now() - w.lastHeartbeatMs;
      registry.markDead(w.id, `no heartbeat for ${silentMs} ms`);
      log.warn({ workerId: w.id, silentMs }, 'worker missed its heartbeats; removed');
      const call = sessions.get(w.id);
      sessions.delete(w.id);
      call?.emit('error', { code: grpc.status.UNAVAILABLE, details: `no heartbeat for ${silentMs} ms; register again` });
    }
  }, Math.max(50, Math.floor(opts.heartbeatIntervalMs / 2)));
  sweep.unref();

  log.info({ address, token: opts.token !== undefined }, 'head listening');
  let stopped: Promise<void> | undefined;
  return {
    address,
    port,
    registry,
    status: () => registry.status(DPL_VERSION),
    stop: () => {
      stopped ??= (async () => {
        clearInterval(sweep);
        for (const call of sessions.values()) call.end();
        sessions.clear();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2_000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        log.info({ address }, 'head stopped');
      })();
      return stopped;
    },
  };
}

function headHandlers(
  opts: ResolvedHeadOptions,
  registry: WorkerRegistry,
  sessions: Map<string, WorkerCall>,
  log: Logger,
): HeadServiceHandlers {
  const authorized = (md: grpc.Metadata): boolean => tokenMatches(opts.token, presentedToken(md));
  return {
    ConnectWorker(call: WorkerCall) {
      if (!authorized(call.metadata)) {
        call.emit('error', unauthenticated());
        return;
      }
      let worker: WorkerRecord | undefined;
      const refuse = (code: grpc.status, details: string): void => {
        log.warn({ workerId: worker?.id, peer: call.getPeer(), details }, 'worker session refused');
        call.emit('error', { code, details });
      };
      call.on('data', (msg: ConnectWorkerRequest) => {
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
            sessions.set(worker.id, call);
            call.write({ registered: { worker_id: worker.id, heartbeat_interval_ms: opts.heartbeatIntervalMs } });
            log.info({ workerId: worker.id, host: reg.hostname, resources: worker.total.toJSON() }, 'worker registered');
            return;
          }
          case 'heartbeat': {
            if (worker === undefined) return refuse(grpc.status.FAILED_PRECONDITION, 'register before sending heartbeats');
            if (!registry.heartbeat(worker.id)) {
              return refuse(grpc.status.FAILED_PRECONDITION, `worker ${worker.id} is no longer registered; register again`);
            }
            call.write({ heartbeat_ack: { seq: msg.heartbeat!.seq } });
            return;
          }
          case undefined:
          default:
            return refuse(grpc.status.INVALID_ARGUMENT, `unknown worker message ${describe(msg.msg)}`);
        }
      });
      const gone = (reason: string, graceful: boolean): void => {
        if (worker === undefined) return;
        if (sessions.get(worker.id) === call) sessions.delete(worker.id);
        if (registry.markDead(worker.id, reason) !== undefined) {
          if (graceful) log.info({ workerId: worker.id }, 'worker left');
          else log.warn({ workerId: worker.id, reason }, 'worker lost');
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
      if (!authorized(call.metadata)) return callback(unauthenticated());
      callback(null, statusToProto(registry.status(DPL_VERSION)));
    },
  };
}
