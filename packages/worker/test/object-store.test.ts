import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DplErrorCode, decodeIpc, encodeIpc } from '@dpl/core';
import { Table, makeVector } from 'apache-arrow';
import { ObjectFetcher } from '@dpl/wire';
import { ObjectStore } from '../src/store/object-store';
import { startDataServer } from '../src/data/data-server';

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
/** Waits until `ok()` holds (a file removal runs on its own after a release), for at most 10 s. */
async function until(ok: () => boolean): Promise<void> {
  for (let waited = 0; !ok() && waited < 10_000; waited += 10) await new Promise((r) => setTimeout(r, 10));
}
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
    await store.idle();
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
    await until(() => spillFiles(dir).length === 0);
    expect(spillFiles(dir)).toHaveLength(0);
    expect(store.stats()).toMatchObject({ diskBytes: 0, objects: 1 });
  });

  it('does not leave a file behind for an object released while it was being written', async () => {
    const store = new ObjectStore({ memoryBytes: 10, spillDir: dir });
    store.put('x', bytes(5000, 7));
    store.delete('x');
    await store.idle();
    await until(() => spillFiles(dir).length === 0);
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
      await store.idle();
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

  it('serves many spilled objects over one connection without piling up close listeners on it', () => {
    // In a process of its own (the built package), where Node prints MaxListenersExceededWarning.
    const dist = join(__dirname, '..', 'dist');
    const script = `
      const { ObjectStore } = require(${JSON.stringify(join(dist, 'store', 'object-store.js'))});
      const { startDataServer } = require(${JSON.stringify(join(dist, 'data', 'data-server.js'))});
      const { ObjectFetcher } = require('@dpl/wire');
      (async () => {
        const store = new ObjectStore({ memoryBytes: 0, spillDir: ${JSON.stringify(dir)} });
        const server = await startDataServer(store, '127.0.0.1', undefined);
        const fetcher = new ObjectFetcher(undefined);
        for (let i = 0; i < 30; i++) store.put('o' + i, new Uint8Array(1000).fill(i));
        await store.idle();
        for (let i = 0; i < 30; i++) {
          const b = await fetcher.fetch('127.0.0.1:' + server.port, 'o' + i);
          if (b.byteLength !== 1000 || b[0] !== i) throw new Error('wrong bytes for o' + i);
        }
        await new Promise((r) => setTimeout(r, 50));
        fetcher.close();
        await server.stop();
        store.close();
        console.log('served 30');
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: __dirname, encoding: 'utf8' });
    expect(r.stdout).toContain('served 30');
    expect(r.stderr).not.toContain('MaxListenersExceededWarning');
  });

  it('on a full disk removes the partial file, keeps the object in memory, says so once and tries again later', async () => {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (e) {
      console.warn(`full-disk spill test skipped: cannot mount a tmpfs (${String((e as Error).message).split('\n')[0]})`);
      return;
    }
    const warnings: string[] = [];
    const store = new ObjectStore({ memoryBytes: 0, spillDir: dir, warn: (m) => warnings.push(m), spillRetryMs: 200 });
    try {
      const size = 20 * 1024; // three fit in 64 KiB, the fourth does not
      for (let i = 0; i < 6; i++) store.put(`o${i}`, bytes(size, i));
      await store.idle();
      const s = store.stats();
      expect(s.spills + s.spillFailures).toBe(6);
      expect(s.spillFailures).toBeGreaterThan(0);
      // What is on disk is whole objects only, one file per spilled object.
      const files = spillFiles(dir);
      expect(files).toHaveLength(s.spills);
      for (const f of files) expect(statSync(join(dir, f)).size).toBe(size);
      expect(s.memoryBytes).toBe(s.spillFailures * size);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^cannot spill objects to .* \(ENOSPC\): they stay in memory, .* held over a budget of 0 B \(--object-store-memory\); retrying in 0\.2 s\. Free space there or give --spill-dir a folder on another disk$/);
      for (let i = 0; i < 6; i++) expect((await store.read(`o${i}`))!.every((x) => x === i)).toBe(true);
      // While paused, nothing is tried; once space is back, spilling goes on.
      store.put('o6', bytes(size, 6));
      await store.idle();
      expect(store.stats().spillFailures).toBe(s.spillFailures);
      for (let i = 0; i < 6; i++) if (store.open(`o${i}`)!.hasOwnProperty('path')) store.delete(`o${i}`);
      await until(() => spillFiles(dir).length === 0);
      await new Promise((r) => setTimeout(r, 250));
      store.put('o7', bytes(10, 7));
      await store.idle();
      expect(store.stats().spills).toBeGreaterThan(s.spills);
      expect(warnings).toHaveLength(1);
    } finally {
      store.close();
      execFileSync('umount', [dir]);
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
    await store.idle();
    const own = (store.open('x') as { path: string }).path;
    expect(existsSync(own)).toBe(true);
    store.close();
    expect(existsSync(own)).toBe(false);
  });
});

describe('ObjectStore shared-memory files', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'dpl-shm-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes a file as an executor does, in the store's shared folder. */
  const written = (store: ObjectStore, name: string, b: Uint8Array): string => {
    const path = join(store.sharedDir!, name);
    writeFileSync(path, b);
    return path;
  };

  it('adopts a file, counts it as memory, gives its path to local tasks, serves it to peers and removes it when released', async () => {
    const store = new ObjectStore({ sharedDir: dir });
    const server = await startDataServer(store, '127.0.0.1', undefined);
    const fetcher = new ObjectFetcher(undefined);
    try {
      const path = written(store, '1.arrow', bytes(300_000, 9));
      store.adopt('o', path, 300_000);
      expect(store.stats()).toMatchObject({ memoryBytes: 300_000, objects: 1 });
      expect(store.open('o')).toEqual({ path, size: 300_000 });
      const got = await fetcher.fetch(`127.0.0.1:${server.port}`, 'o');
      expect(got.byteLength).toBe(300_000);
      expect(got.every((x) => x === 9)).toBe(true);
      store.delete('o');
      await until(() => !existsSync(path));
      expect(existsSync(path)).toBe(false);
      expect(store.stats()).toMatchObject({ memoryBytes: 0, objects: 0 });
    } finally {
      fetcher.close();
      await server.stop();
      store.close();
    }
  });

  it('removes the stray files a caller claims, never a file an object holds', () => {
    const store = new ObjectStore({ sharedDir: dir });
    try {
      store.adopt('kept', written(store, '7-5.arrow', bytes(10, 1)), 10);
      written(store, '7-6.arrow', bytes(10, 2)); // a stray of process 7
      written(store, '8-6.arrow', bytes(10, 3)); // another process's
      expect(store.removeStrays((name) => name.startsWith('7-'))).toBe(1);
      expect(readdirSync(store.sharedDir!).sort()).toEqual(['7-5.arrow', '8-6.arrow']);
      expect(store.open('kept')).toEqual({ path: join(store.sharedDir!, '7-5.arrow'), size: 10 });
      expect(new ObjectStore().removeStrays(() => true)).toBe(0); // no shared folder
    } finally {
      store.close();
    }
  });

  it('moves files to the spill folder past its budget and reads them back whole', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'dpl-store-'));
    const store = new ObjectStore({ sharedDir: dir, memoryBytes: 1000, spillDir: spill });
    try {
      const a = written(store, 'a.arrow', bytes(800, 1));
      store.adopt('a', a, 800);
      store.adopt('b', written(store, 'b.arrow', bytes(800, 2)), 800);
      await store.idle();
      await until(() => !existsSync(a));
      expect(store.stats()).toMatchObject({ memoryBytes: 800, diskBytes: 800, spills: 1 });
      expect(existsSync(a)).toBe(false);
      const back = (await store.read('a'))!;
      expect(back.byteLength).toBe(800);
      expect(back.every((x) => x === 1)).toBe(true);
    } finally {
      store.close();
      rmSync(spill, { recursive: true, force: true });
    }
  });

  it('refuses at once a shared-memory folder it cannot make, naming it and the flag', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(() => new ObjectStore({ sharedDir: join(file, 'shm') })).toThrow(
      new RegExp(`cannot make a shared-memory folder under ${join(file, 'shm')}: .*; give --shm-dir a folder this user can write`),
    );
  });

  it("removes the folders of dead workers' stores, keeps live ones', and its own when closed", () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const orphan = join(dir, `dpl-objects-${dead}-AbC123`);
    const live = join(dir, `dpl-objects-${process.ppid}-XyZ789`);
    const other = join(dir, 'dpl-objects-not-a-store');
    for (const d of [orphan, live, other]) mkdirSync(d);
    writeFileSync(join(orphan, '1.arrow'), bytes(10, 1));
    const store = new ObjectStore({ sharedDir: dir });
    expect(existsSync(orphan)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);
    expect(store.sharedDir).toMatch(new RegExp(`dpl-objects-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(statSync(store.sharedDir!).mode & 0o777).toBe(0o700);
    store.close();
    expect(existsSync(store.sharedDir!)).toBe(false);
  });
});

describe('ObjectStore views (outputs that are rows of other objects)', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'dpl-shm-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** An object of `rows` rows whose column x counts from `from`, as Arrow IPC bytes. */
  const ipcRows = (from: number, rows: number): Uint8Array => encodeIpc(new Table({ x: makeVector(Float64Array.from({ length: rows }, (_, i) => from + i)) }));
  const xs = (ipc: Uint8Array): number[] => [...(decodeIpc(ipc).getChild('x')!.toArray() as Float64Array)];

  it('keeps the objects a view names, even released, until the view goes; encodes its rows for readers outside', async () => {
    const store = new ObjectStore({ sharedDir: dir });
    const server = await startDataServer(store, '127.0.0.1', undefined);
    const fetcher = new ObjectFetcher(undefined);
    try {
      store.put('a', ipcRows(0, 10));
      const path = join(store.sharedDir!, '1.arrow');
      const b = ipcRows(100, 10);
      writeFileSync(path, b);
      store.adopt('b', path, b.byteLength);
      const used = store.stats().memoryBytes;
      store.adoptView('v', [
        { objectId: 'a', offset: 5, rows: 5 },
        { objectId: 'b', offset: 0, rows: 3 },
      ]);
      // A view holds nothing of its own.
      expect(store.stats()).toMatchObject({ memoryBytes: used, objects: 3, views: 1 });
      // Released by the head: gone for everyone else, still there for the view.
      store.delete('a');
      store.delete('b');
      expect(store.has('a')).toBe(false);
      expect(store.open('b')).toBeUndefined();
      expect(existsSync(path)).toBe(true);
      const open = store.open('v');
      expect(open).toEqual({
        parts: [
          { objectId: 'a', offset: 5, rows: 5, at: { bytes: expect.any(Uint8Array) as unknown } },
          { objectId: 'b', offset: 0, rows: 3, at: { path, size: b.byteLength } },
        ],
      });
      expect(xs((await store.read('v'))!)).toEqual([5, 6, 7, 8, 9, 100, 101, 102]);
      expect(xs(await fetcher.fetch(`127.0.0.1:${server.port}`, 'v'))).toEqual([5, 6, 7, 8, 9, 100, 101, 102]);
      // The last view goes: so do the objects released meanwhile, and their memory.
      store.delete('v');
      expect(store.stats()).toMatchObject({ memoryBytes: 0, objects: 0 });
      await until(() => !existsSync(path));
      expect(existsSync(path)).toBe(false);
    } finally {
      fetcher.close();
      await server.stop();
      store.close();
    }
  });

  it('makes a view of a view name the first objects, and frees each object once no view names it', async () => {
    const store = new ObjectStore();
    store.put('a', ipcRows(0, 10));
    store.put('b', ipcRows(10, 10));
    store.adoptView('v1', [
      { objectId: 'a', offset: 2, rows: 8 },
      { objectId: 'b', offset: 0, rows: 10 },
    ]);
    // Rows 6..11 of v1: a's rows 8, 9 and b's rows 0..3.
    store.adoptView('v2', [{ objectId: 'v1', offset: 6, rows: 6 }]);
    const open = store.open('v2') as { parts: { objectId: string; offset: number; rows: number }[] };
    expect(open.parts.map(({ objectId, offset, rows }) => ({ objectId, offset, rows }))).toEqual([
      { objectId: 'a', offset: 8, rows: 2 },
      { objectId: 'b', offset: 0, rows: 4 },
    ]);
    expect(xs((await store.read('v2'))!)).toEqual([8, 9, 10, 11, 12, 13]);
    store.delete('a');
    store.delete('b');
    store.delete('v1');
    // v2 still names both.
    expect(xs((await store.read('v2'))!)).toEqual([8, 9, 10, 11, 12, 13]);
    expect(store.stats().objects).toBe(3);
    store.delete('v2');
    expect(store.stats()).toMatchObject({ objects: 0, memoryBytes: 0 });
  });

  it('reads a view from the spill folder once an object it names spilled, and removes that file with the last view', async () => {
    const store = new ObjectStore({ memoryBytes: 0, spillDir: dir });
    store.put('a', ipcRows(0, 10));
    store.adoptView('v', [{ objectId: 'a', offset: 4, rows: 6 }]);
    store.delete('a');
    await store.idle();
    const open = store.open('v') as { parts: { at: { path?: string } }[] };
    const path = open.parts[0]!.at.path!;
    expect(path.startsWith(dir)).toBe(true);
    expect(xs((await store.read('v'))!)).toEqual([4, 5, 6, 7, 8, 9]);
    store.delete('v');
    await until(() => !existsSync(path));
    expect(existsSync(path)).toBe(false);
    expect(store.stats()).toMatchObject({ objects: 0, memoryBytes: 0, diskBytes: 0 });
  });

  it("drops a job's views and the objects they name together, in any order", () => {
    const store = new ObjectStore();
    store.put('j/a', ipcRows(0, 4));
    store.adoptView('j/v', [{ objectId: 'j/a', offset: 0, rows: 2 }]);
    store.adoptView('j/w', [{ objectId: 'j/a', offset: 2, rows: 2 }]);
    store.deletePrefix('j/');
    expect(store.stats()).toMatchObject({ objects: 0, memoryBytes: 0 });
  });

  it('refuses a view of an object it does not hold, as lost (the call runs again), and keeps nothing of it', () => {
    const store = new ObjectStore();
    store.put('a', ipcRows(0, 4));
    expect(() => store.adoptView('v', [{ objectId: 'a', offset: 0, rows: 2 }, { objectId: 'gone', offset: 0, rows: 2 }])).toThrow(
      expect.objectContaining({ code: DplErrorCode.OBJECT_LOST, message: expect.stringMatching(/object gone, which the output v is rows of, is no longer in this worker's store/) as unknown }) as Error,
    );
    expect(store.has('v')).toBe(false);
    store.delete('a');
    expect(store.stats()).toMatchObject({ objects: 0, memoryBytes: 0 });
  });
});
