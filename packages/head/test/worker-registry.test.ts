import { ResourceSet } from '@dpl/core';
import { WorkerRegistry, resolveHeadOptions, isLoopback, DEAD_WORKERS_KEPT } from '@dpl/head';

describe('WorkerRegistry', () => {
  let now = 1_000;
  const clock = () => now;
  const reg = (r: WorkerRegistry, resources: Record<string, number> = { CPU: 2 }) =>
    r.register({ address: 'h:1', hostname: 'node-1', pid: 1, resources });

  beforeEach(() => {
    now = 1_000;
  });

  it('gives every registration a new id and full availability', () => {
    const r = new WorkerRegistry(clock);
    const a = reg(r, { CPU: 2, bigdb: 1 });
    const b = reg(r);
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^w1-node-1-[0-9a-f]{4}$/);
    expect(a.available.toJSON()).toEqual({ CPU: 2, bigdb: 1 });
    expect(r.workers().map((w) => w.id)).toEqual([a.id, b.id]);
  });

  it('finds workers silent for longer than the timeout', () => {
    const r = new WorkerRegistry(clock);
    const a = reg(r);
    const b = reg(r);
    now = 4_000;
    expect(r.heartbeat(b.id)).toBe(true);
    now = 6_500;
    expect(r.silent(5_000).map((w) => w.id)).toEqual([a.id]);
  });

  it('takes a dead worker out of the totals and lists it as dead, most recent first', () => {
    const r = new WorkerRegistry(clock);
    const a = reg(r, { CPU: 2 });
    const b = reg(r, { CPU: 3 });
    expect(r.markDead(a.id, 'gone')?.deathReason).toBe('gone');
    expect(r.markDead(a.id, 'again')).toBeUndefined(); // idempotent
    expect(r.heartbeat(a.id)).toBe(false);
    expect(r.totals().total.toJSON()).toEqual({ CPU: 3 });
    const s = r.status('v');
    expect(s.workers.map((w) => [w.id, w.state])).toEqual([[b.id, 'alive'], [a.id, 'dead']]);
    expect(s.workers[1]!.resources.available).toEqual({});
  });

  it('keeps only the most recent dead workers', () => {
    const r = new WorkerRegistry(clock);
    for (let i = 0; i < DEAD_WORKERS_KEPT + 5; i++) r.markDead(reg(r).id, 'x');
    expect(r.status('v').workers).toHaveLength(DEAD_WORKERS_KEPT);
  });

  it('rejects malformed resources', () => {
    expect(() => reg(new WorkerRegistry(clock), { CPU: -1 })).toThrow('resources.CPU must be a number >= 0, got -1');
  });
});

describe('resolveHeadOptions', () => {
  it('gives every head a token: the one given, else a fresh random one; none only when insecure', () => {
    const a = resolveHeadOptions({ host: '0.0.0.0' }).token;
    const b = resolveHeadOptions({}).token;
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(resolveHeadOptions({ host: '0.0.0.0', token: 't' }).token).toBe('t');
    expect(resolveHeadOptions({ host: '0.0.0.0', insecure: true }).token).toBeUndefined();
    expect(resolveHeadOptions({ insecure: true, token: 't' }).token).toBe('t');
    expect(() => resolveHeadOptions({ token: 'has space' })).toThrow('token: a token may hold only printable ASCII characters without spaces');
    expect(isLoopback('127.0.0.2')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('10.0.0.1')).toBe(false);
  });

  it('checks ports and heartbeat timings together', () => {
    expect(() => resolveHeadOptions({ port: 70_000, heartbeatIntervalMs: 10, heartbeatTimeoutMs: 5 })).toThrow(
      'port must be an integer from 0 to 65535, got 70000; heartbeatTimeoutMs (5) must be longer than heartbeatIntervalMs (10)',
    );
  });

  it('fuses tasks unless told not to, and takes only a boolean for it', () => {
    expect(resolveHeadOptions({}).fuseTasks).toBe(true);
    expect(resolveHeadOptions({ fuseTasks: false }).fuseTasks).toBe(false);
    expect(() => resolveHeadOptions({ fuseTasks: 'no' as never })).toThrow('fuseTasks must be true or false, got "no"');
  });
});

describe('WorkerRegistry.update', () => {
  it('changes a total while calls run: lowering below what is in use withholds their give-backs', () => {
    const reg = new WorkerRegistry();
    const w = reg.register({ address: 'a:1', hostname: 'h', pid: 1, resources: { CPU: 4, bigdb: 2 } });
    const call = ResourceSet.from({ CPU: 1, bigdb: 1 });
    reg.take(w, call);
    reg.take(w, call);
    reg.update(w.id, { bigdb: 1 }); // 2 in use, 1 advertised now
    expect(w.total.toJSON()).toEqual({ CPU: 4, bigdb: 1 });
    expect(w.available.toJSON()).toEqual({ CPU: 2 });
    reg.giveBack(w, call); // absorbed: still 1 in use against a total of 1
    expect(w.available.toJSON()).toEqual({ CPU: 3 });
    reg.giveBack(w, call);
    expect(w.available.toJSON()).toEqual({ CPU: 4, bigdb: 1 });
    reg.update(w.id, { bigdb: 3, GPU: 1 });
    expect(w.available.toJSON()).toEqual({ CPU: 4, bigdb: 3, GPU: 1 });
    expect(() => reg.update(w.id, { bigdb: -1 })).toThrow('bigdb');
    expect(() => reg.update('nope', { bigdb: 1 })).toThrow('no live worker "nope"');
  });

  it('drains a worker and takes it back', () => {
    const reg = new WorkerRegistry();
    const w = reg.register({ address: 'a:1', hostname: 'h', pid: 1, resources: { CPU: 1 } });
    expect(reg.drain(w.id, true).state).toBe('draining');
    expect(reg.drain(w.id, false).state).toBe('alive');
  });
});
