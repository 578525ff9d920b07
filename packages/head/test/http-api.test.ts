import { boundDashboard, type DashboardData } from '../src/dashboard/http-api';
import type { JobSummary } from '../src/jobs/job';

function job(id: string, state: JobSummary['state'], bulk: number): JobSummary {
  return {
    id,
    state,
    startedAtMs: 0,
    endedAtMs: state === 'running' ? undefined : 1,
    outputs: 1,
    rows: 1,
    skipped: 0,
    tasks: {},
    error: state === 'failed' ? { message: 'boom', stack: 's'.repeat(bulk) } : undefined,
    detached: false,
    outDir: undefined,
    observed: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`${'n'.repeat(bulk / 400)}${i}`, i])),
    params: { p: 'v'.repeat(bulk / 2) },
    output: ['(task=t worker=w1) ' + 'o'.repeat(bulk / 4)],
  };
}

const data = (jobs: JobSummary[]): DashboardData => ({ version: 'x', workers: [], jobs, now: 0, throughput: [], demand: { waiting: [], resources: {}, pending: {} } });

describe('boundDashboard', () => {
  it('leaves a small payload as it is', () => {
    const d = data([job('j1', 'finished', 4_000)]);
    expect(boundDashboard(d)).toBe(JSON.stringify(d));
  });

  it('keeps a large one under the limit: finished jobs lose their details first, then the oldest go; running jobs stay whole', () => {
    const jobs = [...Array.from({ length: 50 }, (_, i) => job(`old${i}`, i % 2 ? 'failed' : 'finished', 80_000)), job('live', 'running', 80_000)];
    const json = boundDashboard(data(jobs), 256 * 1024);
    expect(json.length).toBeLessThanOrEqual(256 * 1024);
    const out = JSON.parse(json) as DashboardData & { truncated: boolean };
    expect(out.truncated).toBe(true);
    const live = out.jobs.find((j) => j.id === 'live')!;
    expect(live).toEqual(jobs.at(-1));
    for (const j of out.jobs.filter((x) => x.state !== 'running')) {
      expect(j.observed).toEqual({});
      expect(j.error?.stack ?? '').toBe('');
    }
    // The newest finished jobs are the ones kept.
    expect(out.jobs.filter((j) => j.state !== 'running').at(-1)?.id).toBe('old49');
  });
});
