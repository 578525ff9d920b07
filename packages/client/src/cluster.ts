/**
 * A connection to a dpl cluster's head.
 */
import { isAbsolute } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode, resourceProblems, silentLogger, type PipelineGraph, type ResourceMap } from '@dpl/core';
import { headError } from './head-error';
import {
  CHANNEL_OPTIONS,
  isHostPort,
  loadDplProto,
  statusFromProto,
  tokenMetadata,
  type ClusterStatus,
  type GetStatusResponse,
  type HeadServiceClient,
  channelCredentials,
  loadTls,
  type TlsFiles,
  resourcesToProto,
  type UpdateWorkerRequest__Input,
  type WorkerInfo,
  type JobInfo,
  type JobLogsResponse,
} from '@dpl/wire';
import { ClusterExecutor } from './cluster-executor';
import { ClusterRun } from './cluster-run';
import { printTaskOutput, type TaskOutputLine } from './task-output';
import { loadPipelineModule, type LoadedModule } from './module/bundle';
import { tokenFor } from './local/daemon-records';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * The cluster token. @default the token of the head at `address` when that head runs on this
   * machine for this user (read from its record in `runDir`), else none
   */
  token?: string;
  /** Where local daemons keep their records. @default `~/.dpl/run` (the CLI honours DPL_RUN_DIR) */
  runDir?: string;
  /** How long to wait for the head to answer. @default 5000 */
  timeoutMs?: number;
  /** For a head with TLS: `{ ca: 'path/to/ca.pem' }`, the CA that signed its certificate. */
  tls?: TlsFiles;
}

/** Options of {@link Cluster.submit}. */
export interface SubmitOptions {
  /** Task settings: `{ round: { batchSize: 5 } }` or coordinates `{ 'round.kwargs.decimals': 2 }`. */
  config?: Record<string, unknown>;
  /** Context values for the tasks' contextKwargs. */
  context?: Record<string, unknown>;
  /** Stop after this many source batches. @default the module's maxBatches, else endless */
  maxBatches?: number;
  /** How long a task no live worker can fit may wait before the job fails. @default 60000 */
  infeasibleTimeoutMs?: number;
  /**
   * Batches the job may skip when their call still fails after its retries; the next one fails
   * the job. Skipped batches are listed in `run.erroredBatches`. @default 0
   */
  maxErroredBatches?: number;
  /** Called with the head's notices (e.g. a task waiting for resources). */
  onNotice?: (message: string) => void;
  /**
   * Called with each line the job's tasks print on the workers; `false`: not sent.
   * @default print `(task=score worker=w2) line` on stderr
   */
  onTaskOutput?: ((line: TaskOutputLine) => void) | false;
  /** @internal see {@link Cluster.submitDetached} */
  detached?: { outDir: string };
}

/** A connected cluster. */
export interface Cluster {
  /** The head's `host:port`. */
  readonly address: string;
  /**
   * Bundles a pipeline module (a path, a loaded module, or a graph that is the default export
   * of its module file), validates it with the given configuration, uploads it and starts
   * the job. Iterate the run for its outputs; breaking out of the loop cancels the job.
   * @throws ValidationError, or DplError(MODULE) for a module that cannot be bundled or loaded.
   */
  submit(module: string | LoadedModule | PipelineGraph, options?: SubmitOptions): Promise<ClusterRun>;
  /** Workers with their resources (total and free), and jobs. */
  status(): Promise<ClusterStatus>;
  /**
   * Changes what a live worker advertises, without restarting it: the given resource names take
   * the given amounts (`{ bigdb: 0 }`, `{ CPU: 8 }`), the others stay. Running calls keep what
   * they hold. The worker keeps the change when it re-registers.
   * @throws DplError naming the worker when it is unknown or an amount is invalid.
   */
  updateWorker(workerId: string, resources: ResourceMap): Promise<WorkerInfo>;
  /**
   * Stops new placements on a worker (its running calls finish); `drain: false` takes it back.
   * `{ leave: true }`: the worker then leaves gracefully, as on SIGTERM (it finishes its running
   * calls, other workers take over what only it holds, and it exits 0).
   */
  drainWorker(workerId: string, drain?: boolean, options?: { leave?: boolean }): Promise<WorkerInfo>;
  /**
   * Submits a job that runs on without this client (`dpl submit --detach`): the head writes its
   * sink outputs as parquet under `outDir` (an absolute path on the head's machine, made if
   * missing; the same file names as `dpl submit -o`), or, without `outDir`, holds them for a
   * client to take with `job.attach()` (the job waits while 16 wait). Resolves once the head
   * accepted it.
   * @throws ValidationError, DplError(MODULE), or the head's refusal (e.g. a folder it cannot write).
   */
  submitDetached(module: string | LoadedModule | PipelineGraph, options?: SubmitOptions & { outDir?: string }): Promise<JobHandle>;
  /** The jobs the head knows: running ones and the last ones that ended. */
  jobs(): Promise<JobInfo[]>;
  /** A handle on job `id` (nothing is asked of the head until it is used). */
  job(id: string): JobHandle;
  /** Closes the connection. Idempotent. */
  close(): Promise<void>;
}

/** One job on the head, by id: its state, its tasks' output, and a way to stop it. */
export interface JobHandle {
  readonly id: string;
  /** The job as the head sees it now. @throws DplError(VALIDATION) when the head has no such job. */
  status(): Promise<JobInfo>;
  /**
   * What its tasks printed, as `(task=T worker=W) line`: the lines the head kept (the last 100),
   * then with `follow` the new ones until the job ends.
   */
  logs(options?: { follow?: boolean }): AsyncIterable<string>;
  /** Stops it (as its client leaving would); resolves with its state then. */
  stop(): Promise<string>;
  /**
   * Takes the output stream of a detached job that holds its outputs (submitted without
   * `outDir`): iterate the run as a submitted one. Each batch counts as delivered when it is
   * taken from the run; those not taken when the run is closed go to the next client that
   * attaches, and `have` (ids taken before) are not sent again. One client at a time.
   * @throws DplError when there is no such job running, it does not hold its outputs, or another client is attached.
   */
  attach(options?: { have?: readonly string[]; onNotice?: (message: string) => void; onTaskOutput?: ((line: TaskOutputLine) => void) | false }): Promise<ClusterRun>;
}

/**
 * Connects to a head and checks that it answers (and accepts the token).
 *
 * ```ts
 * const cluster = await connect('127.0.0.1:6380', { token: process.env.DPL_TOKEN });
 * console.log((await cluster.status()).workers);
 * await cluster.close();
 * ```
 * @throws DplError naming the address when the head cannot be reached or refuses the token.
 */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Cluster> {
  if (!isHostPort(address)) {
    throw new TypeError(`address must be the head's host:port, e.g. 127.0.0.1:6380, got ${JSON.stringify(address)}`);
  }
  const { HeadService } = loadDplProto();
  const client = new HeadService(address, channelCredentials(loadTls(options.tls, 'client')), CHANNEL_OPTIONS);
  const cluster = new ClusterConnection(address, client, { ...options, token: tokenFor(address, options.token, options.runDir) });
  try {
    await cluster.status();
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}

class ClusterConnection implements Cluster {
  private closed = false;
  private readonly timeoutMs: number;

  constructor(
    readonly address: string,
    private readonly client: HeadServiceClient,
    private readonly options: ConnectOptions,
  ) {
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  async submit(module: string | LoadedModule | PipelineGraph, options: SubmitOptions = {}): Promise<ClusterRun> {
    const loaded = typeof module === 'string' ? await loadPipelineModule(module) : module;
    const executor = new ClusterExecutor(loaded, {
      address: this.address,
      token: this.options.token,
      tls: this.options.tls,
      maxBatches: options.maxBatches,
      infeasibleTimeoutMs: options.infeasibleTimeoutMs,
      maxErroredBatches: options.maxErroredBatches,
      onNotice: options.onNotice,
      onTaskOutput: options.onTaskOutput,
      detached: options.detached,
    });
    for (const [key, value] of Object.entries(options.config ?? {})) {
      if (key.includes('.')) executor.setConfig(key, value);
      else executor.setConfig({ [key]: value });
    }
    for (const [key, value] of Object.entries(options.context ?? {})) executor.setContext(key, value);
    const run = executor.run() as ClusterRun;
    await run.start();
    return run;
  }

  async submitDetached(module: string | LoadedModule | PipelineGraph, options: SubmitOptions & { outDir?: string } = {}): Promise<JobHandle> {
    if (options.outDir !== undefined && (typeof options.outDir !== 'string' || !isAbsolute(options.outDir))) {
      throw new DplError(DplErrorCode.VALIDATION, `a detached job's outDir must be an absolute path on the head's machine, got ${JSON.stringify(options.outDir)}`);
    }
    const run = await this.submit(module, { ...options, detached: { outDir: options.outDir ?? '' } });
    const id = await run.accepted();
    // The head keeps a detached job running when its client leaves.
    await run.cancel();
    return this.job(id);
  }

  async jobs(): Promise<JobInfo[]> {
    return (await this.status()).jobs;
  }

  job(id: string): JobHandle {
    const md = (): grpc.Metadata => tokenMetadata(this.options.token);
    const notFound = (e: grpc.ServiceError): Error =>
      e.code === grpc.status.NOT_FOUND ? new DplError(DplErrorCode.VALIDATION, e.details) : headError(this.address, e, this.timeoutMs);
    return {
      id,
      status: async () => {
        const j = (await this.jobs()).find((x) => x.id === id);
        if (j === undefined) throw new DplError(DplErrorCode.VALIDATION, `no job ${JSON.stringify(id)} on the head at ${this.address}; dpl job list shows its jobs`);
        return j;
      },
      stop: () =>
        new Promise<string>((resolve, reject) =>
          this.client.StopJob({ job_id: id }, md(), { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(notFound(err)) : resolve(res!.state))),
        ),
      attach: async (opts = {}) => {
        const run = new ClusterRun(
          id,
          this.client,
          this.options.token,
          () => Promise.reject(new Error('an attachment sends no job spec')),
          silentLogger,
          {
            onNotice: opts.onNotice,
            onTaskOutput: opts.onTaskOutput === false ? undefined : (opts.onTaskOutput ?? printTaskOutput),
            attach: { have: opts.have ?? [] },
          },
        );
        await run.accepted();
        return run;
      },
      logs: (opts = {}) => {
        const client = this.client;
        return {
          async *[Symbol.asyncIterator]() {
            const call = client.JobLogs({ job_id: id, follow: opts.follow === true }, md());
            try {
              for await (const m of call as AsyncIterable<JobLogsResponse>) yield* m.lines;
            } catch (e) {
              throw notFound(e as grpc.ServiceError);
            } finally {
              call.cancel();
            }
          },
        };
      },
    };
  }

  status(): Promise<ClusterStatus> {
    return new Promise((resolve, reject) => {
      this.client.GetStatus(
        {},
        tokenMetadata(this.options.token),
        { deadline: Date.now() + this.timeoutMs },
        (err: grpc.ServiceError | null, res?: GetStatusResponse) => {
          if (err !== null) reject(headError(this.address, err, this.timeoutMs));
          else resolve(statusFromProto(res!));
        },
      );
    });
  }

  updateWorker(workerId: string, resources: ResourceMap): Promise<WorkerInfo> {
    // Checked here too, so that a bad amount never leaves this process (the head checks again).
    const problems = resourceProblems('resources', resources);
    if (problems.length > 0) {
      return Promise.reject(new DplError(DplErrorCode.VALIDATION, `cannot update worker ${workerId}: ${problems.join('; ')}`));
    }
    return this.update({ worker_id: workerId, resources: resourcesToProto(resources) });
  }

  drainWorker(workerId: string, drain = true, options: { leave?: boolean } = {}): Promise<WorkerInfo> {
    return this.update({ worker_id: workerId, change_drain: !options.leave, drain, leave: options.leave === true });
  }

  private update(req: UpdateWorkerRequest__Input): Promise<WorkerInfo> {
    return new Promise((resolve, reject) => {
      this.client.UpdateWorker(req, tokenMetadata(this.options.token), { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (err === null) {
          resolve(statusFromProto({ version: '', jobs: [], workers: [res!.worker!], demand: null }).workers[0]!);
        } else if (err.code === grpc.status.NOT_FOUND || err.code === grpc.status.INVALID_ARGUMENT) {
          reject(new DplError(DplErrorCode.VALIDATION, `cannot update worker ${req.worker_id}: ${err.details}`, { cause: err }));
        } else reject(headError(this.address, err, this.timeoutMs));
      });
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.client.close();
    }
    return Promise.resolve();
  }
}
