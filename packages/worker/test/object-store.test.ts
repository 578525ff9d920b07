import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectFetcher } from '@dpl/wire';
import { ObjectStore } from '../src/store/object-store';
import { startDataServer } from '../src/data/data-server';

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
/** The spill files under `dir` (the store keeps them in a private folder of its own there). */
const spillFiles = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.arrow'));

describe('ObjectStore', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'dpl-store-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('spills the oldest objects past its memory budget, reads them back whole, and removes their files when released', async () => {
    const store = new ObjectStore({ memoryBytes: 1000, spillDir: dir });
    store.put('a', bytes(600, 1));
    store.put('b', bytes(600, 2));
    store.put('c', bytes(600, 3));
    await settle();
    const s = store.stats();
    expect(s.memoryBytes).toBeLessThanOrEqual(1000);
    expect(s.spills).toBe(2);
    expect(s.diskBytes).toBe(1200);
    expect(store.open('a')).toEqual({ path: expect.any(String) as unknown, size: 600 });
    expect(store.open('c')).toEqual({ bytes: expect.any(Uint8Array) as unknown });
    const a = (await store.read('a'))!;
    expect(a.byteLength).toBe(600);
    expect(a.every((x) => x === 1)).toBe(true);
    expect(a.byteOffset % 8).toBe(0);
    expect(spillFiles(dir)).toHaveLength(2);
    store.delete('a');
    store.deletePrefix('b');
    await settle();
    expect(spillFiles(dir)).toHaveLength(0);
    expect(store.stats()).toMatchObject({ diskBytes: 0, objects: 1 });
  });

  it('does not leave a file behind for an object released while it was being written', async () => {
    const store = new ObjectStore({ memoryBytes: 10, spillDir: dir });
    store.put('x', bytes(5000, 7));
    store.delete('x');
    await settle();
    expect(spillFiles(dir)).toEqual([]);
    expect(store.stats()).toMatchObject({ memoryBytes: 0, diskBytes: 0, objects: 0 });
  });

  it('serves spilled objects to peers from their files', async () => {
    const store = new ObjectStore({ memoryBytes: 0, spillDir: dir });
    const server = await startDataServer(store, '127.0.0.1', undefined);
    const fetcher = new ObjectFetcher(undefined);
    try {
      const big = bytes(3 * 1024 * 1024 + 5, 4);
      store.put('big', big);
      store.put('small', bytes(10, 5));
      await settle();
      expect(store.stats().spills).toBe(2);
      const [g, s] = await Promise.all([fetcher.fetch(`127.0.0.1:${server.port}`, 'big'), fetcher.fetch(`127.0.0.1:${server.port}`, 'small')]);
      expect(g.byteLength).toBe(big.byteLength);
      expect(g.every((x) => x === 4)).toBe(true);
      expect([...s]).toEqual(Array(10).fill(5));
    } finally {
      fetcher.close();
      await server.stop();
    }
  });

  it('spills into a private folder of its own under the given one', () => {
    const store = new ObjectStore({ memoryBytes: 10, spillDir: dir });
    const [own] = readdirSync(dir);
    expect(own).toMatch(/^dpl-spill-/);
    expect(statSync(join(dir, own!)).mode & 0o777).toBe(0o700);
    store.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses at once a spill folder it cannot make, naming it', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(() => new ObjectStore({ memoryBytes: 10, spillDir: join(file, 'spill') })).toThrow(
      `cannot make a spill folder under ${join(file, 'spill')}`,
    );
  });

  it('removes its own spill folder when closed', async () => {
    const store = new ObjectStore({ memoryBytes: 0 });
    store.put('x', bytes(100, 1));
    await settle();
    const own = (store.open('x') as { path: string }).path;
    expect(existsSync(own)).toBe(true);
    store.close();
    expect(existsSync(own)).toBe(false);
  });
});
