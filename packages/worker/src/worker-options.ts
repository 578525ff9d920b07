/**
 * Options of the worker daemon.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { availableParallelism, hostname, networkInterfaces, totalmem } from 'node:os';
import { CPU, GPU, ResourceSet, detectGpus, silentLogger, type Logger, type ResourceMap } from '@dpl/core';
import { executorSchedulingFrom, type EarlyExecutors, type ExecutorScheduling } from './executor/fork';
import { isHostPort, isLoopbackHost, loadTls, type HeadServiceClient, type TlsFiles, type TlsMaterial } from '@dpl/wire';

export interface WorkerOptions {
  /** The head's `host:port`. Required. */
  address: string;
  /** The cluster token. @default undefined */
  token?: string;
  /** CPUs to advertise. @default the machine's available parallelism */
  numCpus?: number;
  /** GPUs to advertise. @default what `nvidia-smi -L` lists, else 0 */
  numGpus?: number;
  /** Custom resources to advertise, e.g. `{ bigdb: 1 }`. @default {} */
  resources?: ResourceMap;
  /** The name the head shows for this worker. @default os.hostname() */
  hostname?: string;
  /**
   * The address this worker's data server listens on and advertises to its peers.
   * @default 127.0.0.1 when the head is on loopback, else this machine's first external IPv4
   */
  host?: string;
  /** The data server's port (peers fetch task outputs there). @default 0 (a free port) */
  dataPort?: number;
  /**
   * TLS for the session with the head, the data server and fetches from peers: PEM file paths
   * of this worker's certificate and key, and of the CA that signed the head's and the other
   * workers' certificates. @default none
   */
  tls?: TlsFiles;
  /** Idle executor processes kept for reuse. @default 2 × (CPUs + GPUs advertised), at least 4 */
  maxIdleExecutors?: number;
  /**
   * Memory for task outputs kept on this worker, in MiB; past it, the oldest outputs spill to
   * `spillDir`. @default 30 % of this machine's memory
   */
  objectStoreMemoryMb?: number;
  /** Where outputs spill past `objectStoreMemoryMb`. @default a new folder under the OS temporary directory */
  spillDir?: string;
  /**
   * A RAM-backed folder (tmpfs) where executors leave large task outputs as files, which the
   * next task on this worker and the data server read without the worker copying them; false
   * sends them through the executors' sockets instead. @default `/dev/shm` where it is a folder
   * this user can write, else false
   */
  sharedMemoryDir?: string | false;
  /**
   * The JavaScript heap limit of each executor process, in MiB (`--max-old-space-size`): a task
   * that needs more fails with an out-of-memory error and the worker goes on.
   * @default undefined (Node's own limit)
   */
  executorMemoryMb?: number;
  /**
   * Node flags added to every executor's command line, e.g. `['--max-semi-space-size=32']` or
   * `['--trace-gc']` (flags that NODE_OPTIONS refuses). @default the words of the
   * `DPL_EXECUTOR_NODE_OPTIONS` environment variable, else none
   */
  executorNodeFlags?: readonly string[];
  /**
   * How Linux schedules executor processes: `batch` (SCHED_BATCH: they never preempt the worker
   * on waking, so the daemon that feeds them is not kept waiting on a busy machine) or `normal`.
   * @default the `DPL_EXECUTOR_SCHED` environment variable, else `batch` (`normal` where `chrt`
   * is missing or not allowed, and off Linux)
   */
  executorScheduling?: ExecutorScheduling;
  /** First delay before reconnecting to a lost head; doubles up to `maxReconnectDelayMs`. @default 200 */
  reconnectDelayMs?: number;
  /** @default 5000 */
  maxReconnectDelayMs?: number;
  /**
   * How long the worker goes on trying to reach its head (at start, or after losing it) before
   * it gives up and stops, in ms; 0 tries forever. A head that refuses the worker (a wrong
   * token, an invalid registration) makes it give up at once. @default 60000
   */
  connectTimeoutMs?: number;
  /**
   * How long a graceful leave (SIGTERM, `leave()`, `dpl worker drain --leave`) waits for the
   * running calls to finish and the head to move what only this worker holds, before the worker
   * stops anyway, in ms. Match Kubernetes' terminationGracePeriodSeconds. @default 30000
   */
  leaveGraceMs?: number;
  logger?: Logger;
  /**
   * A client of the head to use instead of connecting to `address` (the embedded `dpl run`
   * links its worker to its head in memory: `head.inProcessClient()`).
   * @internal
   */
  headClient?: HeadServiceClient;
  /**
   * Executors started before the worker (`dpl run` starts them first thing); it takes those
   * started the way it would start its own.
   * @internal
   */
  earlyExecutors?: EarlyExecutors;
}

export interface ResolvedWorkerOptions {
  address: string;
  token: string | undefined;
  resources: ResourceSet;
  hostname: string;
  host: string;
  dataPort: number;
  maxIdleExecutors: number;
  tls: TlsMaterial | undefined;
  executorMemoryMb: number | undefined;
  executorNodeFlags: readonly string[];
  executorScheduling: ExecutorScheduling;
  objectStoreMemoryMb: number;
  spillDir: string | undefined;
  sharedMemoryDir: string | undefined;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  connectTimeoutMs: number;
  leaveGraceMs: number;
  logger: Logger;
  headClient: HeadServiceClient | undefined;
  earlyExecutors: EarlyExecutors | undefined;
}

/**
 * Fills defaults and checks every option.
 * @throws TypeError listing every problem.
 */
export function resolveWorkerOptions(o: WorkerOptions): ResolvedWorkerOptions {
  const problems: string[] = [];
  if (!isHostPort(o.address)) {
    problems.push(`address must be the head's host:port, e.g. 127.0.0.1:6380, got ${JSON.stringify(o.address)}`);
  }
  let resources = ResourceSet.EMPTY;
  try {
    resources = ResourceSet.from({
      ...(o.resources ?? {}),
      [CPU]: o.numCpus ?? availableParallelism(),
      [GPU]: o.numGpus ?? detectGpus(),
    });
  } catch (e) {
    problems.push((e as Error).message);
  }
  let tls: TlsMaterial | undefined;
  try {
    tls = loadTls(o.tls, 'daemon');
  } catch (e) {
    problems.push((e as Error).message);
  }
  const dataPort = o.dataPort ?? 0;
  if (!Number.isInteger(dataPort) || dataPort < 0 || dataPort > 65535) problems.push(`dataPort must be an integer from 0 to 65535, got ${JSON.stringify(dataPort)}`);
  const storeMb = o.objectStoreMemoryMb ?? Math.floor((totalmem() * 0.3) / 1024 / 1024);
  if (typeof storeMb !== 'number' || !Number.isFinite(storeMb) || storeMb < 0) {
    problems.push(`objectStoreMemoryMb must be a number of MiB >= 0, got ${JSON.stringify(storeMb)}`);
  }
  const mem = o.executorMemoryMb;
  if (mem !== undefined && (typeof mem !== 'number' || !Number.isInteger(mem) || mem < 32)) {
    problems.push(`executorMemoryMb must be an integer number of MiB >= 32, got ${JSON.stringify(mem)}`);
  }
  const flags = o.executorNodeFlags ?? (process.env.DPL_EXECUTOR_NODE_OPTIONS ?? '').split(/\s+/).filter((f) => f !== '');
  const notFlags = Array.isArray(flags) ? flags.filter((f) => typeof f !== 'string' || !f.startsWith('-')) : [flags];
  if (notFlags.length > 0) {
    const from = o.executorNodeFlags === undefined ? 'DPL_EXECUTOR_NODE_OPTIONS' : 'executorNodeFlags';
    problems.push(`${from} must be Node flags, each starting with "-" (e.g. --max-semi-space-size=32), got ${notFlags.map((f) => JSON.stringify(f)).join(', ')}`);
  }
  let scheduling: ExecutorScheduling = 'batch';
  if (o.executorScheduling !== undefined) {
    if (o.executorScheduling === 'batch' || o.executorScheduling === 'normal') scheduling = o.executorScheduling;
    else problems.push(`executorScheduling must be "batch" or "normal", got ${JSON.stringify(o.executorScheduling)}`);
  } else {
    try {
      scheduling = executorSchedulingFrom();
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  const shm = o.sharedMemoryDir;
  if (shm !== undefined && shm !== false && (typeof shm !== 'string' || shm === '')) {
    problems.push(`sharedMemoryDir must be a folder path or false, got ${JSON.stringify(shm)}`);
  }
  const connectTimeoutMs = o.connectTimeoutMs ?? 60_000;
  if (typeof connectTimeoutMs !== 'number' || !Number.isFinite(connectTimeoutMs) || connectTimeoutMs < 0) {
    problems.push(`connectTimeoutMs must be a number of ms >= 0 (0: try forever), got ${JSON.stringify(connectTimeoutMs)}`);
  }
  const leaveGraceMs = o.leaveGraceMs ?? 30_000;
  if (typeof leaveGraceMs !== 'number' || !Number.isFinite(leaveGraceMs) || leaveGraceMs < 0) {
    problems.push(`leaveGraceMs must be a number of ms >= 0, got ${JSON.stringify(leaveGraceMs)}`);
  }
  if (problems.length > 0) throw new TypeError(`invalid worker options: ${problems.join('; ')}`);
  return {
    address: o.address,
    token: o.token === '' ? undefined : o.token,
    resources,
    hostname: o.hostname ?? hostname(),
    host: o.host ?? defaultHost(o.address),
    dataPort,
    maxIdleExecutors: o.maxIdleExecutors ?? Math.max(4, 2 * Math.ceil(resources.get(CPU) + resources.get(GPU))),
    executorMemoryMb: mem,
    executorNodeFlags: flags,
    executorScheduling: scheduling,
    objectStoreMemoryMb: storeMb,
    spillDir: o.spillDir,
    sharedMemoryDir: shm === false ? undefined : (shm ?? defaultSharedMemoryDir()),
    tls,
    reconnectDelayMs: o.reconnectDelayMs ?? 200,
    maxReconnectDelayMs: o.maxReconnectDelayMs ?? 5_000,
    connectTimeoutMs,
    leaveGraceMs,
    logger: o.logger ?? silentLogger,
    headClient: o.headClient,
    earlyExecutors: o.earlyExecutors,
  };
}

/** `/dev/shm` when this user can write there (Linux), else none. */
function defaultSharedMemoryDir(): string | undefined {
  try {
    accessSync(DEV_SHM, constants.W_OK);
    return statSync(DEV_SHM).isDirectory() ? DEV_SHM : undefined;
  } catch {
    return undefined;
  }
}
const DEV_SHM = '/dev/shm';

/** 127.0.0.1 for a head on loopback; else the first external IPv4 address of this machine. */
function defaultHost(headAddress: string): string {
  if (isLoopbackHost(headAddress)) return '127.0.0.1';
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
