/**
 * ClusterExecutor: the LocalExecutor surface (setConfig, setContext, validate, run, writeTo) on
 * a cluster. Configuration is applied and validated here, on the client; the head gets the
 * graph's description and the module's bundle, and workers run the task functions.
 */
import * as grpc from '@grpc/grpc-js';
import {
  DplError,
  DplErrorCode,
  PipelineExecutor,
  capacityProblems,
  silentLogger,
  type ResourceSet,
  type Logger,
  type PipelineGraph,
  type PipelineRun,
} from '@dpl/core';
import {
  CHANNEL_OPTIONS,
  chunksOf,
  encodeKwargs,
  loadDplProto,
  resourcesToProto,
  tokenMetadata,
  type HasModuleResponse,
  type HeadServiceClient,
  type JobSpec__Input,
} from '@dpl/wire';
import { ClusterRun } from './cluster-run';
import { loadPipelineModule, type LoadedModule } from './module/bundle';

/** @default 60 s */
export const DEFAULT_INFEASIBLE_TIMEOUT_MS = 60_000;

export interface ClusterExecutorOptions {
  /** The head's `host:port`. */
  address: string;
  /** @default undefined */
  token?: string;
  /** Stop after this many source batches. @default the module's maxBatches, else endless */
  maxBatches?: number;
  /** How long a task no live worker can fit may wait before the job fails. @default 60000 */
  infeasibleTimeoutMs?: number;
  /** Called with the head's notices (e.g. a task waiting for resources). */
  onNotice?: (message: string) => void;
  /**
   * The resources of the one machine the cluster has (an embedded cluster): `validate()` then
   * reports tasks that can never fit, with `capacityHint` as the next step.
   */
  capacity?: ResourceSet;
  capacityHint?: string;
  logger?: Logger;
}

/**
 * Runs a pipeline module on a cluster.
 *
 * ```ts
 * const executor = await ClusterExecutor.load('./pipeline.ts', { address: '127.0.0.1:6380' });
 * executor.setConfig('round.kwargs.decimals', 2);
 * for await (const batch of executor.run()) console.log(batch.task, batch.data.numRows);
 * ```
 */
export class ClusterExecutor extends PipelineExecutor {
  private readonly module: LoadedModule;
  private readonly options: ClusterExecutorOptions;
  private client: HeadServiceClient | undefined;

  /** Loads (bundles and imports) a module and makes an executor for it. */
  static async load(path: string, options: ClusterExecutorOptions): Promise<ClusterExecutor> {
    return new ClusterExecutor(await loadPipelineModule(path), options);
  }

  /**
   * @param module a loaded module (from `loadPipelineModule`), or use `ClusterExecutor.load(path)`.
   */
  constructor(module: LoadedModule, options: ClusterExecutorOptions) {
    if (typeof module !== 'object' || module === null || !('bundle' in module)) {
      throw new TypeError(
        'ClusterExecutor needs a loaded module: use `await ClusterExecutor.load(\'./pipeline.ts\', { address })` ' +
          '(a graph object alone cannot be shipped: workers need the module that defines its functions)',
      );
    }
    super(module.graph);
    this.module = module;
    this.options = options;
  }

  /** Closes the connection to the head. */
  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  protected override backendProblems(graph: PipelineGraph): string[] {
    if (this.options.capacity === undefined) return [];
    return capacityProblems(graph, this.options.capacity, this.options.capacityHint ?? 'lower the request');
  }

  protected execute(graph: PipelineGraph, context: ReadonlyMap<string, unknown>, runId: string): PipelineRun {
    // Encode now, so unsendable kwargs fail at run(), before anything is uploaded.
    const spec = this.spec(graph, context, runId);
    const client = this.headClient();
    return new ClusterRun(
      runId,
      client,
      this.options.token,
      async () => {
        await this.upload(client);
        return spec;
      },
      (this.options.logger ?? silentLogger).child({ runId }),
      this.options.onNotice,
    );
  }

  private headClient(): HeadServiceClient {
    if (this.client === undefined) {
      const { HeadService } = loadDplProto();
      this.client = new HeadService(this.options.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    }
    return this.client;
  }

  private spec(graph: PipelineGraph, context: ReadonlyMap<string, unknown>, runId: string): JobSpec__Input {
    const maxBatches = this.options.maxBatches ?? this.module.maxBatches;
    return {
      module_hash: this.module.bundle.hash,
      run_id: runId,
      max_batches: String(maxBatches ?? -1),
      infeasible_timeout_ms: this.options.infeasibleTimeoutMs ?? DEFAULT_INFEASIBLE_TIMEOUT_MS,
      module_generator: this.module.generator !== undefined,
      tasks: graph.tasks.map((t) => ({
        name: t.name,
        num_cpus: t.numCpus,
        num_gpus: t.numGpus,
        resources: resourcesToProto({ ...t.resources }),
        batch_size: t.batchSize ?? 0,
        max_retries: t.maxRetries,
        kwargs: encodeKwargs(t.name, t.resolveKwargs(context)),
      })),
      edges: graph.edges.map(([from, to]) => ({ from, to })),
    };
  }

  /** Uploads the module bundle unless the head has it. */
  private async upload(client: HeadServiceClient): Promise<void> {
    const { hash, code } = this.module.bundle;
    const md = tokenMetadata(this.options.token);
    const has = await new Promise<HasModuleResponse>((resolve, reject) =>
      client.HasModule({ hash }, md, { deadline: Date.now() + 10_000 }, (err, res) =>
        err ? reject(headError(this.options.address, err)) : resolve(res!),
      ),
    );
    if (has.present) return;
    const bytes = Buffer.from(code, 'utf8');
    if (bytes.byteLength > Number(has.max_bytes)) {
      throw new DplError(
        DplErrorCode.MODULE,
        `pipeline module ${this.module.bundle.file} bundles to ${bytes.byteLength} bytes; the head accepts at most ` +
          `${has.max_bytes}; keep large data out of the module (read it inside a task, or pass a path in kwargs)`,
      );
    }
    await new Promise<void>((resolve, reject) => {
      const call = client.UploadModule(md, (err) => (err ? reject(headError(this.options.address, err)) : resolve()));
      let first = true;
      for (const chunk of chunksOf(bytes)) {
        call.write(first ? { hash, size: String(bytes.byteLength), chunk } : { chunk });
        first = false;
      }
      call.end();
    });
  }
}

function headError(address: string, err: grpc.ServiceError): DplError {
  if (err.code === grpc.status.UNAUTHENTICATED) {
    return new DplError(DplErrorCode.UNAUTHENTICATED, `the head at ${address} refused the token: ${err.details}`);
  }
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
    return new DplError(
      DplErrorCode.UNAVAILABLE,
      `cannot reach the dpl head at ${address}; is \`dpl head start\` running there, and is the address right (--address or DPL_ADDRESS)?`,
    );
  }
  return new DplError(DplErrorCode.INTERNAL, `the head at ${address} failed: ${err.details}`);
}
