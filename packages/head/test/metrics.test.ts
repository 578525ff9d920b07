import { HeadMetrics, FINISHED_JOBS_KEPT } from '../src/metrics/metrics';
import { WorkerRegistry } from '../src/registry/worker-registry';

describe('HeadMetrics', () => {
  it("keeps a finished job's series only until newer jobs have finished, so labels stay bounded", async () => {
    const m = new HeadMetrics({ registry: new WorkerRegistry(), jobs: () => [] });
    const jobs = Array.from({ length: FINISHED_JOBS_KEPT + 3 }, (_, i) => `job-${i}`);
    for (const job of jobs) {
      m.call(job, 'a', 'done', 5);
      m.output(job, 5);
      m.observation(job, 'observe', 'loss', 0.5);
      m.observation(job, 'param', 'lr', '0.01');
      m.jobEnded(job, 'finished');
    }
    const text = await m.text();
    for (const job of jobs.slice(0, 3)) expect(text).not.toContain(`job="${job}"`);
    for (const job of jobs.slice(3)) {
      expect(text).toContain(`dpl_task_calls_total{job="${job}",task="a",outcome="done"} 1`);
      expect(text).toContain(`dpl_observed{job="${job}",name="loss"} 0.5`);
      expect(text).toContain(`dpl_param{job="${job}",name="lr",value="0.01"} 1`);
    }
    expect(text).toContain(`dpl_jobs_total{state="finished"} ${jobs.length}`);
  });
});
