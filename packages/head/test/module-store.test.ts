import { createHash } from 'node:crypto';
import { ModuleStore } from '../src/modules/module-store';

const bundle = (n: number, fill: number): { hash: string; bytes: Uint8Array } => {
  const bytes = new Uint8Array(n).fill(fill);
  return { hash: createHash('sha256').update(bytes).digest('hex'), bytes };
};

describe('ModuleStore', () => {
  it('keeps at most its capacity, dropping the bundles used longest ago', () => {
    const store = new ModuleStore({ maxBytes: 100, capacityBytes: 250 });
    const [a, b, c] = [bundle(100, 1), bundle(100, 2), bundle(100, 3)];
    store.put(a.hash, a.bytes);
    store.put(b.hash, b.bytes);
    expect(store.has(a.hash)).toBe(true); // a is now the most recently used
    store.put(c.hash, c.bytes);
    expect(store.has(b.hash)).toBe(false);
    expect(store.has(a.hash)).toBe(true);
    expect(store.get(c.hash)).toBe(c.bytes);
    expect(store.bytes).toBe(200);
  });

  it('never drops a bundle a running job uses, nor the one just stored', () => {
    const running = new Set<string>();
    const store = new ModuleStore({ maxBytes: 100, capacityBytes: 100, inUse: (h) => running.has(h) });
    const [a, b, c] = [bundle(100, 1), bundle(100, 2), bundle(100, 3)];
    store.put(a.hash, a.bytes);
    running.add(a.hash);
    store.put(b.hash, b.bytes);
    expect([store.has(a.hash), store.has(b.hash)]).toEqual([true, true]);
    running.delete(a.hash);
    store.put(c.hash, c.bytes);
    expect([store.has(a.hash), store.has(b.hash), store.has(c.hash)]).toEqual([false, false, true]);
    expect(store.size).toBe(1);
  });

  it('counts a bundle stored twice once', () => {
    const store = new ModuleStore({ maxBytes: 100 });
    const a = bundle(60, 1);
    store.put(a.hash, a.bytes);
    store.put(a.hash, a.bytes);
    expect([store.bytes, store.size]).toEqual([60, 1]);
  });

  it('refuses a bundle over the size limit or with another hash, naming the rule', () => {
    const store = new ModuleStore({ maxBytes: 10 });
    const big = bundle(11, 1);
    expect(() => store.put(big.hash, big.bytes)).toThrow('module bundle is 11 bytes; the limit is 10 bytes');
    const a = bundle(5, 1);
    expect(() => store.put('0'.repeat(64), a.bytes)).toThrow(`module bundle hash is ${a.hash}, not the announced ${'0'.repeat(64)}`);
  });
});
