import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAllSync } from '../src/executor/write-all';

describe('writeAllSync', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'dpl-writev-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes every buffer in order, more than one writev takes, empty ones included', () => {
    const parts = Array.from({ length: 2500 }, (_, i) => new Uint8Array(i % 7).fill(i % 251));
    const path = join(dir, 'out');
    writeAllSync(path, parts);
    const want = Buffer.concat(parts);
    expect(Buffer.compare(readFileSync(path), want)).toBe(0);
  });

  it('refuses to replace a file that exists', () => {
    const path = join(dir, 'out');
    writeAllSync(path, [Uint8Array.of(1)]);
    expect(() => writeAllSync(path, [Uint8Array.of(2)])).toThrow(/EEXIST/);
    expect([...readFileSync(path)]).toEqual([1]);
  });
});
