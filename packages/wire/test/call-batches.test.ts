import { AssignBatcher, ResultBatcher, TurnBatcher } from '@dpl/wire';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TurnBatcher', () => {
  it('sends what was pushed in one turn as one batch, in order', async () => {
    const sent: number[][] = [];
    const b = new TurnBatcher<number>((items) => sent.push(items));
    for (let i = 0; i < 5; i++) b.push(i);
    expect(sent).toEqual([]);
    await turn();
    b.push(5);
    await turn();
    expect(sent).toEqual([[0, 1, 2, 3, 4], [5]]);
  });

  it('flushes early at its item and byte limits, and a large item goes alone', () => {
    const sent: string[][] = [];
    const b = new TurnBatcher<string>((items) => sent.push(items), { maxItems: 2, maxBytes: 100 });
    b.push('a', 10);
    b.push('b', 10); // reaches maxItems
    b.push('c', 60);
    b.push('d', 60); // would pass maxBytes: 'c' leaves first
    b.push('huge', 500); // alone
    b.clear();
    expect(sent).toEqual([['a', 'b'], ['c'], ['d'], ['huge']]);
  });

  it('sends nothing after clear()', async () => {
    const sent: number[][] = [];
    const b = new TurnBatcher<number>((items) => sent.push(items));
    b.push(1);
    b.clear();
    await turn();
    expect(sent).toEqual([]);
  });
});

describe('AssignBatcher and ResultBatcher', () => {
  it('sends one AssignBatch per turn: facts, calls and releases, in order', async () => {
    const sent: unknown[] = [];
    const b = new AssignBatcher((m) => sent.push(m));
    b.facts({ job_id: 'j', module_hash: 'h', tasks: [{ task: 't', kwargs: new Uint8Array(4) }] });
    b.call({ call_id: 'c1', job_id: 'j' }, 10);
    b.call({ call_id: 'c2', job_id: 'j' }, 10);
    b.release('j/x');
    await turn();
    expect(sent).toEqual([
      {
        assign_batch: {
          jobs: [{ job_id: 'j', module_hash: 'h', tasks: [{ task: 't', kwargs: new Uint8Array(4) }] }],
          calls: [{ call_id: 'c1', job_id: 'j' }, { call_id: 'c2', job_id: 'j' }],
          release: ['j/x'],
        },
      },
    ]);
  });

  it('keeps each batch under the message limit, counting a job’s kwargs and what tasks recorded', () => {
    const sent: { assign_batch?: { jobs: unknown[]; calls: unknown[] } }[] = [];
    const b = new AssignBatcher((m) => sent.push(m as never));
    b.call({ call_id: 'c0' }, 1024);
    b.facts({ job_id: 'j', tasks: [{ task: 't', kwargs: new Uint8Array(3 * 1024 * 1024) }] }); // starts a batch of its own
    b.call({ call_id: 'c1' }, 1024);
    b.clear();
    expect(sent.map((m) => [m.assign_batch!.jobs.length, m.assign_batch!.calls.length])).toEqual([
      [0, 1],
      [1, 0],
    ]);
    const results: { results?: { done: unknown[] } }[] = [];
    const r = new ResultBatcher((m) => results.push(m as never));
    const observations = Array.from({ length: 10_000 }, (_, i) => ({ kind: 'param', name: `name-${i}`, text: 'x'.repeat(200) }));
    for (let i = 0; i < 3; i++) r.done({ call_id: `c${i}`, observations }, 0);
    r.flush();
    // About 2.4 MB of observations per answer: no two fit in one batch.
    expect(results.map((m) => m.results!.done.length)).toEqual([1, 1, 1]);
  });

  it('drops answers once its session is closed', async () => {
    const sent: unknown[] = [];
    const r = new ResultBatcher((m) => sent.push(m));
    r.done({ call_id: 'c' }, 0);
    r.close();
    r.failed({ call_id: 'd' });
    await turn();
    expect(sent).toEqual([]);
  });
});
