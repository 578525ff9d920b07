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

  it('adds up calls by outcome, rows in and out, and reads the same on every scrape', async () => {
    const m = new HeadMetrics({ registry: new WorkerRegistry(), jobs: () => [] });
    for (let i = 0; i < 7; i++) m.call('j', 'a', 'done', 10);
    m.call('j', 'a', 'retried');
    m.call('j', 'a', 'failed', 10); // rows count only for calls that finished
    m.call('j', 'b', 'done', 0);
    m.call('k', 'a', 'done', 2);
    for (let i = 0; i < 3; i++) m.output('j', 4);
    const expected = [
      'dpl_task_calls_total{job="j",task="a",outcome="done"} 7',
      'dpl_task_calls_total{job="j",task="a",outcome="retried"} 1',
      'dpl_task_calls_total{job="j",task="a",outcome="failed"} 1',
      'dpl_task_calls_total{job="j",task="b",outcome="done"} 1',
      'dpl_task_calls_total{job="k",task="a",outcome="done"} 1',
      'dpl_task_rows_in_total{job="j",task="a"} 70',
      'dpl_task_rows_in_total{job="k",task="a"} 2',
      'dpl_batches_out_total{job="j"} 3',
      'dpl_rows_out_total{job="j"} 12',
    ];
    for (let scrape = 0; scrape < 2; scrape++) {
      const text = await m.text();
      for (const line of expected) expect(text).toContain(line);
      expect(text).not.toContain('dpl_task_rows_in_total{job="j",task="b"}');
    }
    m.call('j', 'a', 'done', 1);
    expect(await m.text()).toContain('dpl_task_calls_total{job="j",task="a",outcome="done"} 8');
  });
});
