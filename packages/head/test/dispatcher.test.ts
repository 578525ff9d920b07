import { EventEmitter } from 'node:events';
import { silentLogger } from '@dpl/core';
import { encodeKwargs, type AssignTask, type JobSpec, type ObjectFetcher, type RunJobResponse__Input } from '@dpl/wire';
import { WorkerRegistry } from '@dpl/head';
import { Dispatcher } from '../src/jobs/dispatcher';
import { Job, graphOfSpec, type JobCall } from '../src/jobs/job';
import { WorkerLink } from '../src/jobs/worker-link';
import { HeadMetrics } from '../src/metrics/metrics';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A job stream that records what the head sends the client. */
class FakeJobCall extends EventEmitter {
  cancelled = false;
  writableEnded = false;
  outputs: string[] = [];
  finished = false;
  write(msg: RunJobResponse__Input): boolean {
    for (const c of msg.outputs?.chunks ?? []) if (c.last === true) this.outputs.push(String(c.batch_id));
    if (msg.finished !== undefined) this.finished = true;
    return true;
  }
  end(): void {
    this.writableEnded = true;
  }
}

function spec(tasks: { name: string; cpus: number }[], maxBatches: number): JobSpec {
  return {
    module_hash: 'h',
    run_id: 'run',
    max_batches: String(maxBatches),
    infeasible_timeout_ms: 60_000,
    module_generator: false,
    max_errored_batches: 0,
    edges: tasks.slice(1).map((t, i) => ({ from: tasks[i]!.name, to: t.name })),
    tasks: tasks.map((t) => ({
      name: t.name,
      num_cpus: t.cpus,
      num_gpus: 0,
      resources: { values: {} },
      batch_size: 0,
      max_retries: 0,
      kwargs: encodeKwargs(t.name, {}),
      timeout_ms: 0,
    })),
  } as unknown as JobSpec;
}

/** A head's dispatcher with one fake worker of `cpus` CPUs whose link records the calls it gets. */
function setUp(cpus: number) {
  const registry = new WorkerRegistry();
  const worker = registry.register({ address: 'w:1', hostname: 'w', pid: 1, resources: { CPU: cpus } });
  const sent: AssignTask[] = [];
  const links = new Map([[worker.id, new WorkerLink({ write: (m) => sent.push(...((m.assign_batch?.calls ?? []) as AssignTask[])) })]]);
  const fetcher = { bytesFetched: 0, fetch: () => Promise.reject(new Error('no fetches here')) } as unknown as ObjectFetcher;
  const metrics = new HeadMetrics({ registry, jobs: () => [] });
  const dispatcher = new Dispatcher(registry, links, fetcher, silentLogger, metrics);
  const start = (tasks: { name: string; cpus: number }[], maxBatches: number): { job: Job; call: FakeJobCall } => {
    const s = spec(tasks, maxBatches);
    const { graph, tasks: jobTasks } = graphOfSpec(s);
    const call = new FakeJobCall();
    const job: Job = new Job('job-1', s, graph, jobTasks, call as unknown as JobCall, {
      fetch: () => Promise.reject(new Error('outputs come inline')),
      release: () => undefined,
      wake: () => dispatcher.schedule(),
      delivered: () => undefined,
      ended: (j) => {
        dispatcher.remove(j);
        dispatcher.jobEnded(j);
      },
    }, silentLogger);
    dispatcher.add(job);
    return { job, call };
  };
  /** Answers every call sent so far as done (output = input, inline), like a no-op task. */
  const answerAll = (): number => {
    const calls = sent.splice(0);
    for (const a of calls) {
      const bytes = a.inputs[0]?.inline_ipc ?? new Uint8Array(0);
      dispatcher.taskDone(worker.id, {
        call_id: a.call_id,
        job_id: a.job_id,
        output_id: '',
        rows: a.inputs[0]?.rows ?? '1',
        bytes: String(bytes.byteLength),
        inline_ipc: bytes,
        assignment: a.assignment,
        observations: [],
        run_us: '50',
      } as never);
    }
    return calls.length;
  };
  return { registry, worker, sent, dispatcher, start, answerAll };
}

describe('Dispatcher leases', () => {
  it('queues calls behind at most one lease per free slot and delivers each batch once', async () => {
    const { worker, sent, start, answerAll } = setUp(2);
    const { call } = start([{ name: 'noop', cpus: 1 }], 60);
    for (let i = 0; i < 200 && !call.finished; i++) {
      await turn();
      // Never more leases than slots, and never more CPU taken than the worker has.
      expect(new Set(sent.map((a) => a.lease)).size).toBeLessThanOrEqual(2);
      expect(worker.available.get('CPU')).toBeGreaterThanOrEqual(0);
      answerAll();
    }
    expect(call.finished).toBe(true);
    expect(call.outputs).toHaveLength(60);
    expect(new Set(call.outputs).size).toBe(60);
    expect(worker.available.get('CPU')).toBe(2);
  });

  it('queues more than one call per lease once the task is known to be quick', async () => {
    const { sent, start, answerAll } = setUp(1);
    const { call } = start([{ name: 'noop', cpus: 1 }], 100);
    let deepest = 0;
    for (let i = 0; i < 300 && !call.finished; i++) {
      await turn();
      const perLease = new Map<string, number>();
      for (const a of sent) perLease.set(a.lease, (perLease.get(a.lease) ?? 0) + 1);
      deepest = Math.max(deepest, ...perLease.values());
      answerAll();
    }
    expect(call.finished).toBe(true);
    expect(deepest).toBeGreaterThan(2);
  });

  it('drains the leases of a task when one nearer the sink needs the whole worker', async () => {
    const { worker, sent, start, answerAll } = setUp(2);
    const { call } = start(
      [
        { name: 'a', cpus: 1 },
        { name: 'wide', cpus: 2 },
      ],
      30,
    );
    let wide = 0;
    const order: string[] = [];
    for (let i = 0; i < 400 && !call.finished; i++) {
      await turn();
      order.push(...sent.map((a) => a.task));
      // A call of "wide" holds both CPUs: nothing else is ever sent alongside it.
      const tasks = new Set(sent.map((a) => a.task));
      if (tasks.has('wide')) {
        expect(tasks).toEqual(new Set(['wide']));
        wide++;
      }
      expect(worker.available.get('CPU')).toBeGreaterThanOrEqual(0);
      answerAll();
    }
    expect(call.finished).toBe(true);
    expect(wide).toBeGreaterThan(0);
    // Priority to the task nearer the sink: "wide" runs while "a" still has batches to make,
    // not only after the source is done (its leases would otherwise never drain).
    expect(order.lastIndexOf('a')).toBeGreaterThan(order.indexOf('wide'));
    expect(call.outputs).toHaveLength(30);
    expect(worker.available.get('CPU')).toBe(2);
  });

  it('gives a cancelled job’s slots back once its calls are answered', async () => {
    const { worker, sent, start, dispatcher } = setUp(2);
    const { job } = start([{ name: 'noop', cpus: 1 }], 1000);
    await turn(); // the head's pass
    await turn(); // the link's batch
    expect(sent.length).toBeGreaterThan(0);
    expect(worker.available.get('CPU')).toBe(0);
    job.cancel();
    // The worker answers what it held for the job (it drops queued calls as CANCELLED).
    for (const a of sent.splice(0)) {
      dispatcher.taskFailed(worker.id, {
        call_id: a.call_id,
        job_id: a.job_id,
        assignment: a.assignment,
        observations: [],
        error: { code: 'CANCELLED', message: 'job ended', stack: '', task: a.task, batch_id: a.call_id, attempt: 1, retryable: false },
      } as never);
    }
    expect(worker.available.get('CPU')).toBe(2);
  });
});
