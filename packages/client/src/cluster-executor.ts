/**
 * ClusterExecutor: the LocalExecutor surface (setConfig, setContext, validate, run, writeTo) on
 * a cluster. Configuration is applied and validated here, on the client; the head gets the
 * graph's description and the module's bundle, and workers run the task functions.
 */
import {
  DplError,
  DplErrorCode,
  PipelineExecutor,
  capacityProblems,
  isPipelineGraph,
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
  type TaskSpec__Input,
  channelCredentials,
  loadTls,
  type TlsFiles,
} from '@dpl/wire';
import { ClusterRun } from './cluster-run';
import { headError } from './head-error';
import { loadModuleFile, loadPipelineModule, type LoadedModule } from './module/bundle';
import { tokenFor } from './local/daemon-records';
import { printTaskOutput, type TaskOutputLine } from './task-output';

/** @default 60 s */
export const DEFAULT_INFEASIBLE_TIMEOUT_MS = 60_000;

export interface ClusterExecutorOptions {
  /** The head's `host:port`. */
  address: string;
  /** The cluster token. @default the local head's, as for {@link connect} */
  token?: string;
  /** Where local daemons keep their records. @default `~/.dpl/run` */
  runDir?: string;
  /** For a head with TLS: `{ ca: 'path/to/ca.pem' }`, the CA that signed its certificate. */
  tls?: TlsFiles;
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
   * Called with each line the job's tasks print (console.log, console.error) on the workers;
   * `false`: the head does not send them. @default print `(task=score worker=w2) line` on stderr
   */
  onTaskOutput?: ((line: TaskOutputLine) => void) | false;
  /**
   * The resources of the one machine the cluster has (an embedded cluster): `validate()` then
   * reports tasks that can never fit, with `capacityHint` as the next step.
   */
  capacity?: ResourceSet;
  capacityHint?: string;
  /**
   * The job runs on without this client: the head writes its sink outputs as parquet under
   * `outDir` (an absolute path on the head's machine), or with `outDir: ''` holds them for a
   * client to attach; the submitting run yields none.
   */
  detached?: { outDir: string };
  logger?: Logger;
  /**
   * A client of the head to use instead of connecting to `address` (the embedded `dpl run`
   * talks to its head in memory: `head.inProcessClient()`).
   * @internal
   */
  headClient?: HeadServiceClient;
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
  /** The module, loaded (or, for a graph object, loaded from its source file on first run). */
  private module: LoadedModule | undefined;
  private loading: Promise<LoadedModule> | undefined;
  private readonly options: ClusterExecutorOptions;
  private resolvedToken: { token: string | undefined } | undefined;

  /** The token given, or the local head's (looked up once, when first needed). */
  private get token(): string | undefined {
    this.resolvedToken ??= { token: tokenFor(this.options.address, this.options.token, this.options.runDir) };
    return this.resolvedToken.token;
  }
  private client: HeadServiceClient | undefined;

  /** Loads (bundles and imports) a module and makes an executor for it. */
  static async load(path: string, options: ClusterExecutorOptions): Promise<ClusterExecutor> {
    return new ClusterExecutor(await loadPipelineModule(path), options);
  }

  /**
   * @param graphOrModule the pipeline graph (the default export of a module file, which is found
   *   from where the graph was built and shipped to the workers), or a module loaded by
   *   `loadPipelineModule`. For a module path, use `await ClusterExecutor.load(path, options)`.
   * @throws TypeError for a path string, or a graph whose module file cannot be told.
   */
  constructor(graphOrModule: PipelineGraph | LoadedModule, options: ClusterExecutorOptions) {
    if (isPipelineGraph(graphOrModule)) {
      if (graphOrModule.sourceFile === undefined) {
        throw new TypeError(
          'cannot tell which module file built this graph; use `await ClusterExecutor.load(\'./pipeline.ts\', { address })`',
        );
      }
      super(graphOrModule);
    } else if (typeof graphOrModule === 'object' && graphOrModule !== null && 'bundle' in graphOrModule) {
      super(graphOrModule.graph);
      this.module = graphOrModule;
    } else {
      throw new TypeError(
        'ClusterExecutor takes a PipelineGraph or a loaded module; for a path use `await ClusterExecutor.load(path, { address })`',
      );
    }
    this.options = options;
  }

  /** The module to ship: given, or loaded from the graph's source file (once). */
  private loadModule(): Promise<LoadedModule> {
    if (this.module !== undefined) return Promise.resolve(this.module);
    this.loading ??= (async () => {
      const file = this.graph.sourceFile!;
      const mod = await loadModuleFile(file);
      const want = this.graph.tasks.map((t) => t.name).join(',');
      const have = mod.graph.tasks.map((t) => t.name).join(',');
      if (want !== have) {
        throw new DplError(
          DplErrorCode.MODULE,
          `the graph was built in ${file}, but that module's default export has tasks [${have}], not [${want}]; ` +
            'export the graph as the module\'s default, or use ClusterExecutor.load(path)',
        );
      }
      this.module = mod;
      return mod;
    })();
    return this.loading;
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
    const tasks = this.taskSpecs(graph, context);
    const client = this.headClient();
    return new ClusterRun(
      runId,
      client,
      this.token,
      async () => {
        const module = await this.loadModule();
        await this.upload(client, module);
        return this.spec(module, graph, tasks, runId);
      },
      (this.options.logger ?? silentLogger).child({ runId }),
      {
        onNotice: this.options.onNotice,
        onTaskOutput: this.options.onTaskOutput === false ? undefined : (this.options.onTaskOutput ?? printTaskOutput),
        reupload: async () => this.upload(client, await this.loadModule()),
      },
    );
  }

  private headClient(): HeadServiceClient {
    this.client ??= this.options.headClient;
    if (this.client === undefined) {
      const { HeadService } = loadDplProto();
      this.client = new HeadService(this.options.address, channelCredentials(loadTls(this.options.tls, 'client')), CHANNEL_OPTIONS);
    }
    return this.client;
  }

  private taskSpecs(graph: PipelineGraph, context: ReadonlyMap<string, unknown>): TaskSpec__Input[] {
    return graph.tasks.map((t) => ({
      name: t.name,
      num_cpus: t.numCpus,
      num_gpus: t.numGpus,
      resources: resourcesToProto({ ...t.resources }),
      batch_size: t.batchSize ?? 0,
      max_retries: t.maxRetries,
      timeout_ms: t.timeoutMs ?? 0,
      kwargs: encodeKwargs(t.name, t.resolveKwargs(context)),
    }));
  }

  private spec(module: LoadedModule, graph: PipelineGraph, tasks: TaskSpec__Input[], runId: string): JobSpec__Input {
    const maxBatches = this.options.maxBatches ?? module.maxBatches;
    return {
      module_hash: module.bundle.hash,
      run_id: runId,
      max_batches: String(maxBatches ?? -1),
      infeasible_timeout_ms: this.options.infeasibleTimeoutMs ?? DEFAULT_INFEASIBLE_TIMEOUT_MS,
      module_generator: module.generator !== undefined,
      max_errored_batches: this.options.maxErroredBatches ?? 0,
      no_task_output: this.options.onTaskOutput === false,
      detached: this.options.detached !== undefined,
      out_dir: this.options.detached?.outDir ?? '',
      tasks,
      edges: graph.edges.map(([from, to]) => ({ from, to })),
    };
  }

  /** Uploads the module bundle unless the head has it; true when it did. */
  private async upload(client: HeadServiceClient, module: LoadedModule): Promise<boolean> {
    const { hash, code } = module.bundle;
    const md = tokenMetadata(this.token);
    const has = await new Promise<HasModuleResponse>((resolve, reject) =>
      client.HasModule({ hash }, md, { deadline: Date.now() + 10_000 }, (err, res) =>
        err ? reject(headError(this.options.address, err)) : resolve(res!),
      ),
    );
    if (has.present) return false;
    const bytes = Buffer.from(code, 'utf8');
    if (bytes.byteLength > Number(has.max_bytes)) {
      throw new DplError(
        DplErrorCode.MODULE,
        `pipeline module ${module.bundle.file} bundles to ${bytes.byteLength} bytes; the head accepts at most ` +
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
    return true;
  }
}
