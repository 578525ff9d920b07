import {
  InMemoryObserver,
  NoOpObserver,
  Timer,
  getObserver,
  increment,
  observe,
  param,
  setObserver,
  tapObservations,
  timer,
  type Observation,
} from '../src';

describe('observers', () => {
  afterEach(() => setObserver(new NoOpObserver()));

  it('send the module functions to the root observer, extra arguments included', () => {
    const mem = new InMemoryObserver();
    setObserver(mem);
    observe('loss', 0.5, { step: 1 });
    increment('rows', 10);
    increment('rows');
    param('lr', 0.01);
    expect(mem.dump().metrics.loss!.map((p) => p.value)).toEqual([0.5]);
    expect(mem.dump().metrics.rows!.map((p) => p.value)).toEqual([10, 11]); // cumulative
    expect(mem.dump().params).toEqual({ lr: 0.01 });
  });

  it('accept every call with the default no-op observer (extra arguments too)', () => {
    expect(getObserver()).toBeInstanceOf(NoOpObserver);
    expect(() => {
      observe('x', 1, { step: 2 });
      increment('y', 3, { step: 2 });
      param('z', 'v', { step: 2 });
      timer('t', { step: 2 }).start().complete();
    }).not.toThrow();
  });

  it('fall back to the root observer for an unknown key', () => {
    const mem = new InMemoryObserver();
    setObserver(mem);
    expect(getObserver('other')).toBe(mem);
    const other = new InMemoryObserver();
    setObserver(other, 'other');
    expect(getObserver('other')).toBe(other);
  });

  it('time in milliseconds, accumulated over start/stop, and around sync and async blocks', async () => {
    const mem = new InMemoryObserver();
    setObserver(mem);
    const t = new Timer('manual');
    expect(() => t.complete()).toThrow('timer "manual" was never started; call start() first');
    t.start();
    await new Promise((r) => setTimeout(r, 20));
    t.stop();
    t.start();
    await new Promise((r) => setTimeout(r, 20));
    expect(t.complete()).toBeGreaterThanOrEqual(35);
    expect(timer('sync', () => 42)).toBe(42);
    expect(await timer('async', () => new Promise<string>((r) => setTimeout(() => r('done'), 15)))).toBe('done');
    expect(() => timer('throws', () => { throw new Error('boom'); })).toThrow('boom');
    const m = mem.dump().metrics;
    expect(m.manual![0]!.value).toBeGreaterThanOrEqual(35);
    expect(m.async![0]!.value).toBeGreaterThanOrEqual(10);
    expect(Object.keys(m).sort()).toEqual(['async', 'manual', 'sync', 'throws']);
  });

  it('pass every observation to taps, whatever observer is set', () => {
    const seen: Observation[] = [];
    const untap = tapObservations((o) => seen.push(o));
    observe('a', 1);
    increment('b', 2);
    param('c', { deep: true });
    untap();
    observe('after', 1);
    expect(seen).toEqual([
      { kind: 'observe', name: 'a', value: 1 },
      { kind: 'increment', name: 'b', value: 2 },
      { kind: 'param', name: 'c', value: '{"deep":true}' },
    ]);
  });
});
