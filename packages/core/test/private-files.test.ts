import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePrivateDir, isDplError, readPrivateFile, writeBundle, writePrivateFile } from '../src';

const isRoot = process.getuid?.() === 0;
const asRoot = isRoot ? it : it.skip;

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('private folders and files', () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), 'dpl-private-'))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it('creates a folder with mode 0700, parents included', () => {
    const dir = ensurePrivateDir(join(base, 'a', 'b'));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(ensurePrivateDir(dir)).toBe(dir); // and takes it again
  });

  it('refuses a folder others can write into, and a link standing for the folder', () => {
    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const e = thrown(() => ensurePrivateDir(open));
    expect(isDplError(e, 'INSECURE')).toBe(true);
    expect((e as Error).message).toContain(`refusing to use ${open}: others may write into it (mode 777)`);
    const link = join(base, 'link');
    symlinkSync(ensurePrivateDir(join(base, 'real')), link);
    expect((thrown(() => ensurePrivateDir(link)) as Error).message).toContain('it is a symbolic link');
  });

  it('tightens a folder of its own that others could only read', () => {
    const dir = join(base, 'readable');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    ensurePrivateDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  asRoot('refuses a folder that belongs to another user (as root: chown to nobody)', () => {
    const theirs = join(base, 'theirs');
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, 65534, 65534);
    expect((thrown(() => ensurePrivateDir(theirs)) as Error).message).toContain('it belongs to uid 65534, not to you (uid 0)');
  });

  it('writes files 0600 without following a link planted where the file goes', () => {
    const dir = ensurePrivateDir(join(base, 'd'));
    const victim = join(base, 'victim');
    writeFileSync(victim, 'precious');
    const target = join(dir, 'record.json');
    symlinkSync(victim, target);
    writePrivateFile(target, '{"ok":true}');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(lstatSync(target).isSymbolicLink()).toBe(false);
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(readPrivateFile(target).toString()).toBe('{"ok":true}');
  });

  it('reads back only a regular file of its own: not a link, not one others may write', () => {
    const dir = ensurePrivateDir(join(base, 'd'));
    const file = join(dir, 'f');
    writePrivateFile(file, 'x');
    symlinkSync(file, join(dir, 'l'));
    expect(() => readPrivateFile(join(dir, 'l'))).toThrow(/ELOOP/);
    chmodSync(file, 0o666);
    expect((thrown(() => readPrivateFile(file)) as Error).message).toContain('others may write to it (mode 666)');
  });
});

describe('writeBundle', () => {
  let dir: string;
  beforeEach(() => (dir = join(mkdtempSync(join(tmpdir(), 'dpl-bundles-')), 'cache')));
  afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));
  const hashOf = (code: string): string => createHash('sha256').update(code).digest('hex');

  it('writes a bundle under its hash in a private folder', () => {
    const code = 'export default 1;';
    const file = writeBundle(dir, hashOf(code), code);
    expect(file).toBe(join(dir, `${hashOf(code)}.mjs`));
    expect(readFileSync(file, 'utf8')).toBe(code);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('writes again a cached file whose content no longer has its hash (a swapped bundle)', () => {
    const code = 'export default 1;';
    const file = writeBundle(dir, hashOf(code), code);
    writeFileSync(file, 'throw new Error("not the real module");');
    expect(writeBundle(dir, hashOf(code), code)).toBe(file);
    expect(readFileSync(file, 'utf8')).toBe(code);
  });

  it('refuses code that does not have the hash it is filed under', () => {
    const e = thrown(() => writeBundle(dir, hashOf('a'), 'b'));
    expect(isDplError(e, 'MODULE')).toBe(true);
    expect((e as Error).message).toContain('does not match its hash');
    expect((thrown(() => writeBundle(dir, '../../etc/passwd', 'b')) as Error).message).toContain('is not a sha256 in hex');
    expect(existsSync(dir)).toBe(false);
  });
});
