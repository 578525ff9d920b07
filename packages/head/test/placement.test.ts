import { ResourceSet } from '@dpl/core';
import { PLACEMENT_SAMPLE, place, type PlacementWorker } from '../src/placement/placement';

const rs = (m: Record<string, number>) => ResourceSet.from(m);
const worker = (id: string, total: Record<string, number>, available = total, state: PlacementWorker['state'] = 'alive'): PlacementWorker => ({
  id,
  state,
  total: rs(total),
  available: rs(available),
});

describe('place', () => {
  it('puts a custom-resource task only on the worker that has the resource', () => {
    const ws = [worker('a', { CPU: 8 }), worker('big', { CPU: 2, bigdb: 1 }), worker('c', { CPU: 8 })];
    expect(place(rs({ CPU: 1, bigdb: 1 }), ws)).toEqual({ kind: 'placed', workerId: 'big' });
  });

  it('never sums workers: two 1-GPU workers cannot take a 2-GPU task', () => {
    const ws = [worker('a', { CPU: 4, GPU: 1 }), worker('b', { CPU: 4, GPU: 1 })];
    const p = place(rs({ CPU: 1, GPU: 2 }), ws);
    expect(p).toEqual({ kind: 'infeasible', shortfall: 'GPU>=2 (largest live worker has 1)' });
  });

  it('waits when a worker could run it but has no room now', () => {
    const ws = [worker('a', { CPU: 2, GPU: 1 }, { CPU: 2 })];
    expect(place(rs({ GPU: 1 }), ws)).toEqual({ kind: 'wait' });
  });

  it('prefers the worker that holds the input bytes, then the least loaded', () => {
    const ws = [worker('a', { CPU: 4 }, { CPU: 1 }), worker('b', { CPU: 4 }, { CPU: 4 })];
    expect(place(rs({ CPU: 1 }), ws)).toEqual({ kind: 'placed', workerId: 'b' });
    expect(place(rs({ CPU: 1 }), ws, new Map([['a', 1024]]))).toEqual({ kind: 'placed', workerId: 'a' });
  });

  it('ignores dead and draining workers', () => {
    const ws = [worker('d', { CPU: 4, bigdb: 1 }, undefined, 'dead'), worker('x', { CPU: 4, bigdb: 1 }, undefined, 'draining')];
    expect(place(rs({ bigdb: 1 }), ws).kind).toBe('infeasible');
  });

  it('packs fractional GPUs exactly', () => {
    let w = worker('g', { CPU: 8, GPU: 1 });
    const req = rs({ GPU: 0.1 });
    let placed = 0;
    while (place(req, [w]).kind === 'placed') {
      w = { ...w, available: w.available.subtract(req) };
      placed++;
    }
    expect(placed).toBe(10);
  });

  it('compares a bounded sample in a large cluster, from a start that callers rotate', () => {
    // 1,000 workers, half-busy, and one idle worker far from the start.
    const ws = Array.from({ length: 1000 }, (_, i) => worker(`w${i}`, { CPU: 4 }, { CPU: i === 700 ? 4 : 2 }));
    const near = place(rs({ CPU: 1 }), ws);
    expect(near).toEqual({ kind: 'placed', workerId: 'w0' }); // the first of an equal sample
    expect(place(rs({ CPU: 1 }), ws, new Map(), { start: 700 - PLACEMENT_SAMPLE + 1 })).toEqual({ kind: 'placed', workerId: 'w700' });
    expect(place(rs({ CPU: 1 }), ws, new Map(), { start: 3 })).toEqual({ kind: 'placed', workerId: 'w3' });
  });

  it('finds the workers holding the inputs by id, and scans a full cluster whole before waiting', () => {
    const ws = Array.from({ length: 1000 }, (_, i) => worker(`w${i}`, { CPU: 2 }, { CPU: i === 999 ? 1 : 0 }));
    const byId = (id: string) => ws.find((w) => w.id === id);
    expect(place(rs({ CPU: 1 }), ws, new Map([['w999', 10]]), { byId })).toEqual({ kind: 'placed', workerId: 'w999' });
    expect(place(rs({ CPU: 1 }), ws, new Map([['w5', 10]]), { byId })).toEqual({ kind: 'placed', workerId: 'w999' }); // w5 is full
    expect(place(rs({ CPU: 2 }), ws)).toEqual({ kind: 'wait' });
  });
});
