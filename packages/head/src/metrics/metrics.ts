/**
 * The head's Prometheus metrics (prom-client), served as text at `/metrics`.
 *
 * Label sets stay bounded: per job and task name (never per batch or object), per live worker
 * (a dead worker's series are removed), and a finished job's series are kept only for the most
 * recent {@link FINISHED_JOBS_KEPT} finished jobs.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { WorkerRegistry } from '../registry/worker-registry';
import { NO_DEMAND, type ClusterDemand } from '@dpl/wire';

/** Distinct observation names kept per job. */
export const MAX_OBSERVED_NAMES = 200;

/** Finished jobs whose series stay before the oldest are removed. */
export const FINISHED_JOBS_KEPT = 10;

/** What the metrics read at scrape time. */
export interface MetricsSources {
  registry: WorkerRegistry;
  /** The running jobs' per-task counts. */
  jobs(): { id: string; tasks: Record<string, { running: number; queuedRows: number }> }[];
  /** What the work needs (see ClusterDemand), read at scrape time. */
  demand?(): ClusterDemand;
}

interface Removable {
  remove(labels: Record<string, string>): void;
}

/**
 * Counts per job and label set, kept as plain numbers and handed to their prom-client counter
 * when it is scraped: a call's counts are a map lookup and an add, where prom-client hashes and
 * validates the labels on every `inc` (a few microseconds per call on the head's busiest path).
 */
class Tally<L extends string> {
  private readonly byJob = new Map<string, Map<string, { labels: Record<L, string>; n: number }>>();

  /** Adds `n` to the job's series named `key`; false when it has none yet (then {@link open} it). */
  add(job: string, key: string, n: number): boolean {
    const s = this.byJob.get(job)?.get(key);
    if (s === undefined) return false;
    s.n += n;
    return true;
  }

  /** Starts the job's series named `key` with these labels at `n`. */
  open(job: string, key: string, labels: Record<L, string>, n: number): void {
    let series = this.byJob.get(job);
    if (series === undefined) {
      series = new Map();
      this.byJob.set(job, series);
    }
    series.set(key, { labels, n });
  }

  /** Forgets a job's series (they leave the exposition at the next scrape). */
  forget(job: string): void {
    this.byJob.delete(job);
  }

  /** Sets the counter to these counts (its collect hook, at scrape time). */
  into(counter: Counter<L>): void {
    counter.reset();
    for (const series of this.byJob.values()) for (const { labels, n } of series.values()) counter.inc(labels, n);
  }
}

export type CallOutcome = 'done' | 'failed' | 'retried' | 'skipped' | 'interrupted' | 'recomputed' | 'handed_back';

export class HeadMetrics {
  readonly registry = new Registry();
  private readonly calls = new Tally<'job' | 'task' | 'outcome'>();
  private readonly batchesOut = new Tally<'job'>();
  private readonly rowsOut = new Tally<'job'>();
  private readonly rowsIn = new Tally<'job' | 'task'>();
  private readonly jobsTotal: Counter<'state'>;
  private readonly observed: Gauge<'job' | 'name'>;
  private readonly observedCount: Counter<'job' | 'name'>;
  private readonly params: Gauge<'job' | 'name' | 'value'>;
  readonly heartbeatLatency: Histogram;
  readonly placementLatency: Histogram;
  private readonly workersLost: Counter;
  /** Label sets recorded per job and metric, to remove them when the job ages out. */
  private readonly seriesOfJob = new Map<string, Map<Removable, Map<string, Record<string, string>>>>();
  private readonly finished: string[] = [];
  private readonly observedNames = new Map<string, Set<string>>();

  constructor(sources: MetricsSources) {
    const r = this.registry;
    const workers = sources.registry;
    new Gauge({
      name: 'dpl_workers',
      help: 'Workers by state',
      labelNames: ['state'],
      registers: [r],
      collect() {
        this.reset();
        const counts: Record<string, number> = { alive: 0, draining: 0 };
        for (const w of workers.workers()) counts[w.state] = (counts[w.state] ?? 0) + 1;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    this.workersLost = new Counter({ name: 'dpl_workers_lost_total', help: 'Workers lost (dead or gone) since the head started', registers: [r] });
    new Gauge({
      name: 'dpl_resources_total',
      help: 'Resources the live workers advertise, per resource name',
      labelNames: ['resource'],
      registers: [r],
      collect() {
        this.reset();
        for (const [name, v] of Object.entries(workers.totals().total.toJSON())) this.set({ resource: name }, v);
      },
    });
    new Gauge({
      name: 'dpl_resources_used',
      help: 'Resources held by running calls, per resource name',
      labelNames: ['resource'],
      registers: [r],
      collect() {
        this.reset();
        const { total, available } = workers.totals();
        const free = available.toJSON();
        for (const [name, v] of Object.entries(total.toJSON())) this.set({ resource: name }, v - (free[name] ?? 0));
      },
    });
    const demand = (): ClusterDemand => sources.demand?.() ?? NO_DEMAND;
    new Gauge({
      name: 'dpl_pending_demand',
      help: 'Resources the calls waiting for room ask for, per resource name (what more workers would take)',
      labelNames: ['resource'],
      registers: [r],
      collect() {
        this.reset();
        for (const [name, v] of Object.entries(demand().pending)) this.set({ resource: name }, v);
      },
    });
    new Gauge({
      name: 'dpl_resource_demand',
      help: 'Resources the work needs now, per resource name: held by running calls plus asked for by waiting ones (an autoscaler target: divide by one worker\'s amount)',
      labelNames: ['resource'],
      registers: [r],
      collect() {
        this.reset();
        // CPU always, so that an autoscaler's query has a series to read when nothing runs.
        const all = { CPU: 0, ...demand().resources };
        for (const [name, v] of Object.entries(all)) this.set({ resource: name }, v);
      },
    });
    new Gauge({
      name: 'dpl_pending_calls',
      help: 'Calls waiting for room, per resource request (e.g. "{CPU:1}")',
      labelNames: ['request'],
      registers: [r],
      collect() {
        this.reset();
        for (const w of demand().waiting) this.set({ request: describeRequest(w.resources) }, w.calls);
      },
    });
    const perTask = (name: string, help: string, pick: (t: { running: number; queuedRows: number }) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['job', 'task'],
        registers: [r],
        collect() {
          this.reset();
          for (const j of sources.jobs()) for (const [task, t] of Object.entries(j.tasks)) this.set({ job: j.id, task }, pick(t));
        },
      });
    };
    perTask('dpl_tasks_running', 'Calls running now, per job and task', (t) => t.running);
    perTask('dpl_tasks_queued_rows', 'Rows waiting for a call, per job and task', (t) => t.queuedRows);
    const perWorker = (name: string, help: string, pick: (w: ReturnType<WorkerRegistry['workers']>[number]) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['worker'],
        registers: [r],
        collect() {
          this.reset();
          for (const w of workers.workers()) this.set({ worker: w.id }, pick(w));
        },
      });
    };
    perWorker('dpl_object_store_bytes', 'Bytes of task outputs in a worker\'s memory', (w) => w.objectStore.memoryBytes);
    perWorker('dpl_object_store_disk_bytes', 'Bytes of task outputs a worker spilled to disk', (w) => w.objectStore.diskBytes);
    perWorker('dpl_object_store_spills', 'Objects a worker spilled to disk since it started', (w) => w.objectStore.spills);
    perWorker('dpl_worker_bytes_fetched', 'Bytes a worker fetched from other workers since it started', (w) => w.bytesFetched);
    perWorker('dpl_worker_bytes_served', 'Bytes a worker served to other workers and the head since it started', (w) => w.bytesServed);
    const tallied = <L extends string>(tally: Tally<L>, name: string, help: string, labelNames: L[]): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          tally.into(this);
        },
      });
    };
    tallied(
      this.calls,
      'dpl_task_calls_total',
      'Task calls by outcome: done, failed (for good), retried, skipped (maxErroredBatches), interrupted (worker lost), recomputed, handed_back (not started on a worker that left gracefully: run elsewhere)',
      ['job', 'task', 'outcome'],
    );
    tallied(this.rowsIn, 'dpl_task_rows_in_total', 'Rows given to calls that finished', ['job', 'task']);
    tallied(this.batchesOut, 'dpl_batches_out_total', 'Output batches delivered to clients', ['job']);
    tallied(this.rowsOut, 'dpl_rows_out_total', 'Output rows delivered to clients', ['job']);
    this.jobsTotal = new Counter({ name: 'dpl_jobs_total', help: 'Jobs ended, by final state', labelNames: ['state'], registers: [r] });
    this.observed = new Gauge({ name: 'dpl_observed', help: 'Last value observed by task code (observe/timer), per job and name', labelNames: ['job', 'name'], registers: [r] });
    this.observedCount = new Counter({
      name: 'dpl_observed_total',
      help: 'Sum of increments (increment) from task code, per job and name',
      labelNames: ['job', 'name'],
      registers: [r],
    });
    this.params = new Gauge({ name: 'dpl_param', help: 'Parameters recorded by task code (param), value as a label', labelNames: ['job', 'name', 'value'], registers: [r] });
    this.heartbeatLatency = new Histogram({
      name: 'dpl_heartbeat_latency_seconds',
      help: 'From a worker sending a heartbeat to the head receiving it (clocks of different hosts may differ)',
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [r],
    });
    this.placementLatency = new Histogram({
      name: 'dpl_placement_seconds',
      help: 'Time to choose a worker for one call',
      buckets: [0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01],
      registers: [r],
    });
  }

  call(job: string, task: string, outcome: CallOutcome, rows = 0): void {
    const key = `${task}\u0000${outcome}`;
    if (!this.calls.add(job, key, 1)) this.calls.open(job, key, { job, task, outcome }, 1);
    if (outcome === 'done' && rows > 0 && !this.rowsIn.add(job, task, rows)) this.rowsIn.open(job, task, { job, task }, rows);
  }

  output(job: string, rows: number): void {
    if (!this.batchesOut.add(job, '', 1)) this.batchesOut.open(job, '', { job }, 1);
    if (!this.rowsOut.add(job, '', rows)) this.rowsOut.open(job, '', { job }, rows);
  }

  /**
   * A value from task code: observe/timer set the gauge, increment adds, param records. At most
   * {@link MAX_OBSERVED_NAMES} names per job are kept (a name per batch would grow without bound).
   */
  observation(job: string, kind: 'observe' | 'increment' | 'param', name: string, value: number | string): void {
    let names = this.observedNames.get(job);
    if (names === undefined) {
      names = new Set();
      this.observedNames.set(job, names);
    }
    if (!names.has(name)) {
      if (names.size >= MAX_OBSERVED_NAMES) return;
      names.add(name);
    }
    if (kind === 'param') {
      const labels = { job, name, value: String(value).slice(0, 200) };
      this.track(job, this.params, labels);
      this.params.set(labels, 1);
    } else if (kind === 'increment') {
      this.track(job, this.observedCount, { job, name });
      this.observedCount.inc({ job, name }, Number(value));
    } else {
      this.track(job, this.observed, { job, name });
      this.observed.set({ job, name }, Number(value));
    }
  }

  workerLost(): void {
    this.workersLost.inc();
  }

  /** A job ended: its series stay until FINISHED_JOBS_KEPT newer jobs have ended. */
  jobEnded(job: string, state: string): void {
    this.jobsTotal.inc({ state });
    this.finished.push(job);
    while (this.finished.length > FINISHED_JOBS_KEPT) {
      const old = this.finished.shift()!;
      for (const [metric, series] of this.seriesOfJob.get(old) ?? []) for (const labels of series.values()) metric.remove(labels);
      this.seriesOfJob.delete(old);
      this.observedNames.delete(old);
      for (const tally of [this.calls, this.rowsIn, this.batchesOut, this.rowsOut]) tally.forget(old);
    }
  }

  /** The text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private track(job: string, metric: Removable, labels: Record<string, string>): void {
    let byMetric = this.seriesOfJob.get(job);
    if (byMetric === undefined) {
      byMetric = new Map();
      this.seriesOfJob.set(job, byMetric);
    }
    let series = byMetric.get(metric);
    if (series === undefined) {
      series = new Map();
      byMetric.set(metric, series);
    }
    const key = Object.values(labels).join('\u0000');
    if (!series.has(key)) series.set(key, labels);
  }
}

/** A request as a label: `{CPU:1, bigdb:1}`, names sorted. */
function describeRequest(r: Record<string, number>): string {
  return `{${Object.keys(r).sort().filter((k) => r[k]! > 0).map((k) => `${k}:${r[k]}`).join(', ')}}`;
}
