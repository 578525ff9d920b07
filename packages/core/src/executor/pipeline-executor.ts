/**
 * What every executor shares: private copies of the tasks, configuration and context,
 * validation, the run id, parquet output and the description printed by `dpl run -i`.
 * Backends (LocalExecutor here, ClusterExecutor in @dpl/client) implement `execute()`.
 */
import { mkdir } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import type { Table } from 'apache-arrow';
import {
  applyChange,
  changeFromCoordinate,
  changesFromObject,
  readConfigFile,
  type ConfigChange,
} from '../config';
import { ValidationError } from '../errors';
import { PipelineGraph, isPipelineGraph } from '../model/graph';
import { PipelineTask, UNCHECKED, isPipelineTask, isPlainObject, taskProblems } from '../model/task';
import type { ParquetCompression } from '../data/parquet';
import { OutputFiles } from './output-files';
import { describe } from '../resources';
import { didYouMean } from '../internal/names';
import { KWARG_DEPTH_RULE, nestsDeeperThan } from '../internal/nesting';
import type { SchedulerStats } from '../scheduler/streaming-scheduler';

/** One output of a run: a sink task's result for one call. */
export interface OutputBatch {
  /**
   * The batch. A batch that came from a cluster arrives as Arrow IPC bytes and is decoded the
   * first time this is read (a consumer that reads only `rows` never decodes it).
   */
  readonly data: Table;
  /** The name of the sink task that produced it. */
  readonly task: string;
  /** The id of the call that produced it, from its lineage (`<task>#<n>`). */
  readonly id: string;
  /** Its row count (`data.numRows`, known without decoding `data`). */
  readonly rows: number;
}

/** A batch a run skipped after its retries, under `maxErroredBatches`. */
export interface ErroredBatch {
  /** The id of the failed call (`<task>#<n>`). */
  id: string;
  task: string;
  /** The ids of the batches it read. */
  inputs: string[];
  /** Why its last attempt failed. */
  message: string;
}

/** A run in progress: iterate it for outputs; `cancel()` (or `break`) stops it. */
export interface PipelineRun extends AsyncIterable<OutputBatch> {
  readonly runId: string;
  /** The batches skipped so far under `maxErroredBatches` (none unless it is set). */
  readonly erroredBatches: readonly ErroredBatch[];
  /** Counters so far (batches, calls, rows, empty batches dropped). */
  stats(): SchedulerStats;
  /** Stops the run: nothing new starts, the generator is closed, iteration ends. Idempotent. */
  cancel(): Promise<void>;
}

/** Options of {@link PipelineExecutor.writeTo}. */
export interface WriteToOptions {
  /**
   * Write each sink's outputs under `task=<name>/` (hive style).
   * @default true when the graph has several sinks, else false
   */
  partitionByTask?: boolean;
  /** @default 'snappy' */
  compression?: ParquetCompression;
  /** Called after each file is written. */
  onBatch?: (batch: OutputBatch, file: string) => void;
  /** Aborting cancels the run; the files written so far stay, and writeTo resolves. */
  signal?: AbortSignal;
  /** Called with the run once it started (for progress displays). */
  onRun?: (run: PipelineRun) => void;
}

/** What {@link PipelineExecutor.writeTo} wrote. */
export interface WriteSummary {
  runId: string;
  files: string[];
  batches: number;
  rows: number;
  /** Whether the run was cut short by the signal. */
  cancelled: boolean;
  /** Batches skipped under `maxErroredBatches`. */
  erroredBatches: readonly ErroredBatch[];
}

/** The argument of `setConfig` that reads a YAML file. */
export interface FromYaml {
  fromYaml: string;
}

/**
 * The base class of executors. It owns private copies of the tasks, so configuring an executor
 * never changes the graph it was built from.
 */
export abstract class PipelineExecutor {
  /** The graph as given (tasks are immutable, so sharing them is safe). */
  readonly graph: PipelineGraph;
  private readonly changes: ConfigChange[] = [];
  private readonly configProblems: string[] = [];
  private readonly context = new Map<string, unknown>();
  private currentRunId: string | undefined;

  constructor(graph: PipelineGraph | readonly PipelineTask[]) {
    if (isPipelineGraph(graph)) this.graph = graph;
    else if (Array.isArray(graph) && graph.every(isPipelineTask)) this.graph = new PipelineGraph(graph);
    else throw new TypeError(`an executor needs a PipelineGraph or a list of PipelineTasks, got ${describe(graph)}`);
  }

  /**
   * Sets task settings: `setConfig('round.kwargs.decimals', 2)`, `setConfig({ round: {
   * batchSize: 5, kwargs: { decimals: 2 } } })` (maps merge), or `setConfig({ fromYaml: path })`
   * (a file with `context:` and `config:` sections). Problems (an unknown task or field, a
   * malformed coordinate) are reported together by `validate()`.
   * @throws ConfigError when a YAML file cannot be read or parsed.
   */
  setConfig(coord: string, value: unknown): this;
  setConfig(config: Record<string, unknown> | FromYaml): this;
  setConfig(coord: string | Record<string, unknown> | FromYaml, value?: unknown): this {
    if (typeof coord === 'string') {
      this.addChange(changeFromCoordinate(coord, value));
    } else if (typeof coord === 'object' && coord !== null && typeof (coord as FromYaml).fromYaml === 'string' && Object.keys(coord).length === 1) {
      const file = readConfigFile((coord as FromYaml).fromYaml);
      for (const [k, v] of Object.entries(file.context)) this.setContext(k, v);
      this.addChanges(changesFromObject(file.config, `config: in ${(coord as FromYaml).fromYaml}`));
    } else {
      this.addChanges(changesFromObject(coord, 'setConfig(object)'));
    }
    return this;
  }

  /** Sets a context value, which tasks receive through their `contextKwargs`. */
  setContext(key: string, value: unknown): this {
    if (typeof key !== 'string' || key === '') {
      throw new TypeError(`context key must be a non-empty string, got ${describe(key)}`);
    }
    this.context.set(key, value);
    return this;
  }

  /** The context set so far. */
  getContext(): ReadonlyMap<string, unknown> {
    return this.context;
  }

  /** The graph with the configuration applied (tasks may break rules; `validate()` says which). */
  configuredGraph(): PipelineGraph {
    const byTask = new Map<string, ConfigChange[]>();
    for (const c of this.changes) {
      if (!byTask.has(c.task)) byTask.set(c.task, []);
      byTask.get(c.task)!.push(c);
    }
    if (byTask.size === 0) return this.graph;
    return this.graph.mapTasks((task) => {
      const mine = byTask.get(task.name);
      if (mine === undefined) return task;
      const opts = mine.reduce(applyChange, task.options());
      return new PipelineTask(task.name, task.fn, opts, UNCHECKED);
    });
  }

  /**
   * Checks everything that can be checked before running and throws one error listing every
   * problem: configuration for unknown tasks or fields, settings that break their rules,
   * required kwargs without a value, context keys that are not set, and what the backend
   * cannot provide.
   * @throws ValidationError
   */
  validate(): void {
    const problems = this.problems();
    if (problems.length > 0) throw new ValidationError(problems);
  }

  /** Every problem `validate()` would report (an empty list when the pipeline is valid). */
  problems(): string[] {
    const problems = [...this.configProblems];
    for (const c of this.changes) {
      const task = this.graph.taskMap.get(c.task);
      if (task === undefined) {
        const names = [...this.graph.taskMap.keys()];
        problems.push(`config coordinate ${JSON.stringify(c.path)}: no task named ${JSON.stringify(c.task)}${didYouMean(c.task, names)}; tasks: ${names.join(', ')}`);
      } else if (c.field === 'kwargs') {
        problems.push(...kwargChangeProblems(task, c));
      }
    }
    const graph = this.configuredGraph();
    for (const task of graph.tasks) {
      problems.push(...taskProblems(task));
      // The kwargs checks below need well-formed maps; taskProblems has reported them if not.
      if (!isPlainObject(task.kwargs) || !isPlainObject(task.contextKwargs) || !Array.isArray(task.required)) continue;
      const resolved = task.resolveKwargs(this.context);
      const missing = new Set<string>();
      for (const [kwarg, key] of Object.entries(task.contextKwargs)) {
        if (!this.context.has(key) && !(kwarg in task.kwargs)) {
          missing.add(kwarg);
          problems.push(
            `task ${JSON.stringify(task.name)}: kwarg ${JSON.stringify(kwarg)} comes from context key ` +
              `${JSON.stringify(key)}, which is not set; set it with setContext(${JSON.stringify(key)}, value) or -c ${key}=VALUE`,
          );
        }
      }
      for (const [kwarg, key] of Object.entries(task.contextKwargs)) {
        if (this.context.has(key) && nestsDeeperThan(resolved[kwarg])) {
          problems.push(`task ${JSON.stringify(task.name)}: kwarg ${JSON.stringify(kwarg)} from context key ${JSON.stringify(key)} ${KWARG_DEPTH_RULE}`);
        }
      }
      for (const r of task.required as readonly string[]) {
        if (resolved[r] === undefined && !missing.has(r)) {
          problems.push(
            `task ${JSON.stringify(task.name)} requires kwarg ${JSON.stringify(r)}, which has no value; ` +
              `set it with setConfig('${task.name}.kwargs.${r}', value) or -s ${task.name}.kwargs.${r}=VALUE`,
          );
        }
      }
    }
    problems.push(...this.backendProblems(graph));
    return problems;
  }

  /**
   * Validates, then starts a run with a fresh run id and fresh state: nothing from an earlier,
   * abandoned run carries over.
   * @throws ValidationError before anything runs.
   */
  run(): PipelineRun {
    this.validate();
    this.currentRunId = randomUUID();
    return this.execute(this.configuredGraph(), new Map(this.context), this.currentRunId);
  }

  /** The id of the current (or last) run; a new one is made by each `run()`. */
  get runId(): string {
    this.currentRunId ??= randomUUID();
    return this.currentRunId;
  }

  /**
   * Runs the pipeline and writes each output batch as a parquet file `<runId>-<n>.parquet` in
   * `outdir`, n being the number of the sink call that made it (under `task=<name>/` when
   * partitioning by task; `<runId>-<task>-<n>.parquet` when several sinks share the folder).
   * Files appear whole: each is written under a temporary name and renamed.
   * @throws ValidationError before anything runs or is created.
   */
  async writeTo(outdir: string, options: WriteToOptions = {}): Promise<WriteSummary> {
    const run = this.run();
    options.onRun?.(run);
    const partition = options.partitionByTask ?? this.graph.sinkTasks.length > 1;
    const summary: WriteSummary = { runId: run.runId, files: [], batches: 0, rows: 0, cancelled: false, erroredBatches: run.erroredBatches };
    // The folder exists after a valid run even when no batch came out.
    await mkdir(outdir, { recursive: true });
    const files = new OutputFiles(outdir, run.runId, {
      partition,
      oneSinkPerFolder: partition || this.graph.sinkTasks.length === 1,
      compression: options.compression,
    });
    const onAbort = (): void => {
      summary.cancelled = true;
      void run.cancel(); // the loop below then ends
    };
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const batch of run) {
        const file = await files.write(batch);
        summary.files.push(file);
        summary.batches++;
        summary.rows += batch.data.numRows;
        options.onBatch?.(batch, file);
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    return summary;
  }

  /** The tasks with their settings, and the context they need (what `dpl run -i` prints). */
  toString(): string {
    const graph = this.configuredGraph();
    const lines = ['Tasks:'];
    for (const t of graph.tasks) {
      const next = graph.successors(t.name);
      lines.push(`  - ${t.toString()}${next.length > 0 ? ` -> ${next.join(', ')}` : ' [sink]'}`);
    }
    const keys = new Set<string>(this.context.keys());
    for (const t of graph.tasks) {
      if (typeof t.contextKwargs === 'object' && t.contextKwargs !== null) {
        for (const k of Object.values(t.contextKwargs)) keys.add(k);
      }
    }
    if (keys.size > 0) {
      lines.push('Context:');
      for (const k of [...keys].sort()) {
        lines.push(`  - ${k}${this.context.has(k) ? ` (set to ${describe(this.context.get(k))})` : ' (not set)'}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  /** What this backend cannot provide for `graph` (e.g. resources no machine has). */
  protected backendProblems(_graph: PipelineGraph): string[] {
    return [];
  }

  /** Starts a run of an already validated, configured graph. */
  protected abstract execute(
    graph: PipelineGraph,
    context: ReadonlyMap<string, unknown>,
    runId: string,
  ): PipelineRun;

  private addChange(change: ConfigChange | string): void {
    if (typeof change === 'string') this.configProblems.push(change);
    else this.changes.push(change);
  }

  private addChanges({ changes, problems }: { changes: ConfigChange[]; problems: string[] }): void {
    this.changes.push(...changes);
    this.configProblems.push(...problems);
  }
}

/**
 * What is wrong with configuring these kwargs of `task` (as its module declares it): a kwarg it
 * does not declare (in its kwargs defaults, `required` or `contextKwargs`: most often a typo),
 * or a value of another type than the declared default (`iterations=abc` for a default of 100).
 */
function kwargChangeProblems(task: PipelineTask, change: ConfigChange): string[] {
  if (!isPlainObject(change.value) || !isPlainObject(task.kwargs)) return []; // taskProblems reports a kwargs that is not a map
  const required = Array.isArray(task.required) ? task.required.filter((r): r is string => typeof r === 'string') : [];
  const declared = new Set([...Object.keys(task.kwargs), ...required, ...(isPlainObject(task.contextKwargs) ? Object.keys(task.contextKwargs) : [])]);
  const problems: string[] = [];
  for (const [kwarg, value] of Object.entries(change.value)) {
    const coord = JSON.stringify(`${task.name}.kwargs.${kwarg}`);
    if (!declared.has(kwarg)) {
      const known = declared.size === 0 ? 'it declares none' : `its kwargs: ${[...declared].join(', ')}`;
      problems.push(
        `config coordinate ${coord}: task ${JSON.stringify(task.name)} has no kwarg ${JSON.stringify(kwarg)}${didYouMean(kwarg, declared)}; ${known} ` +
          `(a task takes the kwargs its module declares in kwargs or required)`,
      );
      continue;
    }
    if (!Object.hasOwn(task.kwargs, kwarg)) continue; // required or from context: no default to compare with
    const wanted = kindOf(task.kwargs[kwarg]);
    const got = kindOf(value);
    if (wanted !== 'null' && wanted !== 'undefined' && got !== wanted) {
      problems.push(
        `config coordinate ${coord}: the task's default is ${withArticle(wanted)} (${describe(task.kwargs[kwarg])}), got ${withArticle(got)} (${describe(value)}); ` +
          `give ${withArticle(wanted)}, e.g. ${task.name}.kwargs.${kwarg}=${JSON.stringify(task.kwargs[kwarg])}`,
      );
    }
  }
  return problems;
}

/** The JSON-ish kind of a value: null, array, or its typeof. */
function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

const withArticle = (kind: string): string => (/^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`);

