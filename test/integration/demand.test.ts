/**
 * The demand an autoscaler reads, with real processes: the calls waiting for room per request
 * and the resources the work needs, in cluster.status(), /api/status and /metrics; it rises
 * while work waits for a worker and falls once one joins.
 */
import { join } from 'node:path';
import { connect, tokenFor } from '@dpl/client';
import { FIXTURES, killDplProcesses, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf } from '../helpers/cluster';
import { dashboardAddress, prometheusSamples } from '../helpers/metrics';

afterEach(killDplProcesses);

describe('the demand for workers', () => {
  it('shows the calls waiting for a worker, per request and per resource, and falls when workers join', async () => {
    const head = await startHeadProcess();
    const token = tokenFor(head.address, undefined);
    const http = dashboardAddress(head.process.stdout);
    const scrape = async (): Promise<Map<string, number>> =>
      prometheusSamples(await (await fetch(`http://${http}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text());
    // Nothing waits, nothing runs: no demand (and a CPU series an autoscaler can read).
    expect((await statusOf(head.address)).demand).toEqual({ waiting: [], resources: { CPU: 0 }, pending: {} });
    expect((await scrape()).get('dpl_resource_demand{resource="CPU"}')).toBe(0);

    const cluster = await connect(head.address);
    try {
      // No worker: the job's first calls wait for one.
      const run = await cluster.submit(join(FIXTURES, 'slow-call.ts'), { maxBatches: 6, config: { 'slow.kwargs.ms': 500 } });
      const all = (async () => {
        let n = 0;
        for await (const _ of run) n++;
        return n;
      })();
      await waitFor(async () => (await statusOf(head.address)).demand.waiting.length > 0, { what: 'demand while no worker runs the job' });
      const waiting = (await statusOf(head.address)).demand;
      expect(waiting.waiting).toEqual([{ resources: { CPU: 1 }, calls: expect.any(Number) as unknown }]);
      expect(waiting.waiting[0]!.calls).toBeGreaterThanOrEqual(1);
      expect(waiting.pending.CPU).toBe(waiting.waiting[0]!.calls);
      const api = (await (await fetch(`http://${http}/api/status`, { headers: { authorization: `Bearer ${token}` } })).json()) as { demand: typeof waiting };
      expect(api.demand.pending.CPU).toBeGreaterThanOrEqual(1);
      const m = await scrape();
      expect(m.get('dpl_pending_demand{resource="CPU"}')).toBeGreaterThanOrEqual(1);
      expect(m.get('dpl_pending_calls{request="{CPU:1}"}')).toBeGreaterThanOrEqual(1);
      expect(m.get('dpl_resource_demand{resource="CPU"}')).toBeGreaterThanOrEqual(1);

      // Workers join with room for all of it: nothing waits, the demand is what runs.
      startWorkerProcess(head.address, ['--num-cpus', '8']);
      await waitFor(async () => (await statusOf(head.address)).demand.waiting.length === 0, { timeoutMs: 15_000, what: 'the demand to fall' });
      expect((await scrape()).get('dpl_pending_demand{resource="CPU"}') ?? 0).toBe(0);
      expect(await all).toBe(6);
      await waitFor(async () => ((await statusOf(head.address)).demand.resources.CPU ?? 0) === 0, { what: 'nothing to run' });
    } finally {
      await cluster.close();
    }
  });
});
