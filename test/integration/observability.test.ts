/**
 * Seeing a running cluster: the head's Prometheus metrics scraped during and after a real run.
 */
import { join } from 'node:path';
import { connect, tokenFor, type ClusterRun } from '@dpl/client';
import { FIXTURES, killDplProcesses, runDpl, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';
import { dashboardAddress, prometheusSamples } from '../helpers/metrics';

afterEach(killDplProcesses);

async function scrape(dashboard: string, token?: string): Promise<Map<string, number>> {
  const res = await fetch(`http://${dashboard}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return prometheusSamples(await res.text());
}

describe('the head /metrics', () => {
  it('counts what ran, during and after a run, behind the token', async () => {
    const token = 'metrics-token';
    const head = await startHeadProcess([], { DPL_TOKEN: token });
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}'], { DPL_TOKEN: token });
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"taker":2}'], { DPL_TOKEN: token });
    await waitForWorkers(head.address, 2, token);
    expect((await fetch(`http://${dashboard}/metrics`)).status).toBe(401);

    const before = await scrape(dashboard, token);
    expect(before.get('dpl_workers{state="alive"}')).toBe(2);
    expect(before.get('dpl_resources_total{resource="CPU"}')).toBe(4);
    expect(before.get('dpl_resources_total{resource="maker"}')).toBe(2);

    const cluster = await connect(head.address, { token });
    const n = 12;
    let run: ClusterRun | undefined;
    try {
      run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: n });
      let sawRunning = false;
      let got = 0;
      for await (const _ of run) {
        got++;
        if (!sawRunning) {
          const during = await scrape(dashboard, token);
          const running = [...during].filter(([k]) => k.startsWith('dpl_tasks_running{')).reduce((s, [, v]) => s + v, 0);
          const used = during.get('dpl_resources_used{resource="maker"}') ?? 0;
          sawRunning = running > 0 || used > 0;
        }
      }
      expect(got).toBe(n);
      expect(sawRunning).toBe(true);
    } finally {
      await cluster.close();
    }

    const job = run.jobId;
    let after = new Map<string, number>();
    await waitFor(
      async () => {
        after = await scrape(dashboard, token);
        return after.get('dpl_jobs_total{state="finished"}') === 1;
      },
      { timeoutMs: 5_000, what: 'the job to be counted as finished' },
    );
    expect(after.get(`dpl_task_calls_total{job="${job}",task="make",outcome="done"}`)).toBe(n);
    expect(after.get(`dpl_task_calls_total{job="${job}",task="take",outcome="done"}`)).toBe(n);
    expect(after.get(`dpl_batches_out_total{job="${job}"}`)).toBe(n);
    expect(after.get(`dpl_rows_out_total{job="${job}"}`)).toBe(n);
    expect(after.get(`dpl_task_rows_in_total{job="${job}",task="take"}`)).toBe(n * 2000);
    expect(after.get('dpl_resources_used{resource="maker"}')).toBe(0);
    expect(after.get('dpl_placement_seconds_count')).toBeGreaterThanOrEqual(2 * n);
    // Heartbeats come every second: a run shorter than that may end before the first.
    await waitFor(async () => ((await scrape(dashboard, token)).get('dpl_heartbeat_latency_seconds_count') ?? 0) > 0, {
      timeoutMs: 5_000,
      what: 'a heartbeat to be timed',
    });
    // The bytes the taker fetched from the maker, as its heartbeats report them.
    await waitFor(
      async () => {
        const s = await scrape(dashboard, token);
        const fetched = [...s].filter(([k]) => k.startsWith('dpl_worker_bytes_fetched{')).reduce((t, [, v]) => t + v, 0);
        return fetched >= n * 2000 * 4;
      },
      { timeoutMs: 5_000, what: 'heartbeats to report the bytes moved' },
    );
  });
});

describe('observers in task code', () => {
  it('reach the head from tasks on workers, per job', async () => {
    const head = await startHeadProcess();
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'observed.ts'), { maxBatches: 7 });
      // One id for the job, known before it starts: the run id is the head's job id.
      const job = run.jobId;
      expect(job).toBe(run.runId);
      for await (const _ of run) {
        // drain
      }
      expect((await cluster.status()).jobs.map((j) => j.id)).toContain(run.runId);
      const token = tokenFor(head.address, undefined);
      const m = await scrape(dashboard, token);
      expect(m.get(`dpl_observed_total{job="${job}",name="rows_seen"}`)).toBe(7);
      expect(m.get(`dpl_param{job="${job}",name="model",value="v3"}`)).toBe(1);
      expect(m.get(`dpl_observed{job="${job}",name="score_ms"}`)).toBeGreaterThanOrEqual(4);
      expect(m.get(`dpl_observed{job="${job}",name="last_id"}`)).toBeGreaterThanOrEqual(0);
      // …and the dashboard's data, per job.
      const d = (await (await fetch(`http://${dashboard}/api/dashboard`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        jobs: { id: string; observed: Record<string, number>; params: Record<string, string> }[];
      };
      const summary = d.jobs.find((j) => j.id === job)!;
      expect(summary.observed.rows_seen).toBe(7);
      expect(summary.params).toEqual({ model: 'v3' });
      expect(summary.observed.score_ms).toBeGreaterThanOrEqual(4);
    } finally {
      await cluster.close();
    }
  });
});

describe('live resources', () => {
  it('drains a worker and changes what another advertises without restarting them, changing placement', async () => {
    const head = await startHeadProcess();
    const a = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2,"taker":2}']);
    const b = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2,"taker":2}']);
    const status = await waitForWorkers(head.address, 2);
    // Which id is which process: the workers print their id when they join.
    await waitFor(() => /dpl worker (\S+) joined/.test(a.stdout) && /dpl worker (\S+) joined/.test(b.stdout), { what: 'workers to print their ids' });
    const idA = /dpl worker (\S+) joined/.exec(a.stdout)![1]!;
    const idB = /dpl worker (\S+) joined/.exec(b.stdout)![1]!;
    expect(status.workers.map((w) => w.id).sort()).toEqual([idA, idB].sort());

    const drained = await runDpl(['worker', 'drain', '--address', head.address, '--worker', idB]);
    expect(drained.code).toBe(0);
    expect(drained.stdout).toContain(`worker ${idB}: draining`);
    const cluster = await connect(head.address);
    try {
      const pids = async (): Promise<Set<number>> => {
        const out = new Set<number>();
        for await (const batch of await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 6 })) out.add(Number(batch.data.getChild('maker_pid')!.get(0)));
        return out;
      };
      expect(await pids()).toEqual(new Set([a.child.pid]));

      // A no longer advertises "taker": with B drained, the sink waits until A gets it back.
      const updated = await runDpl(['worker', 'update', '--address', head.address, '--worker', idA, '--resources', '{"taker":0}']);
      expect(updated.code).toBe(0);
      expect(updated.stdout).toContain(`worker ${idA}: alive; resources (free/total): CPU 2/2, maker 2/2\n`); // taker is gone
      const notices: string[] = [];
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 3, onNotice: (m) => notices.push(m) });
      const collected = (async () => {
        let n = 0;
        for await (const _ of run) n++;
        return n;
      })();
      await waitFor(() => notices.some((m) => m.includes('"take"')), { what: 'the notice that take cannot be placed' });
      const back = await cluster.updateWorker(idA, { taker: 2 });
      expect(back.resources.total).toMatchObject({ taker: 2 });
      expect(await collected).toBe(3);

      await cluster.drainWorker(idB, false);
      expect((await cluster.status()).workers.find((w) => w.id === idB)!.state).toBe('alive');
      const unknown = await runDpl(['worker', 'drain', '--address', head.address, '--worker', 'w99-nope']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/no live worker "w99-nope"; see dpl status/);
    } finally {
      await cluster.close();
    }
  });
});
