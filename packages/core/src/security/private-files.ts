/**
 * Folders and files that only this user may touch. Every place dpl writes on its own (module
 * caches, the records of running daemons with their tokens, spill files) is a folder made here:
 * created with mode 0700, and refused when it already exists but someone else owns it or others
 * may write to it, because then another local user could have planted what dpl would read back
 * (a bundle it imports, a record whose PID it signals). Files are written with mode 0600 under a
 * fresh name opened with O_EXCL|O_NOFOLLOW and renamed into place, so a planted symbolic link is
 * never followed.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, chmodSync, openSync, readFileSync, renameSync, rmSync, writeSync, type Stats } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DplError, DplErrorCode } from '../errors';

/** This process's user id, or undefined where the platform has none (ownership is not checked). */
function myUid(): number | undefined {
  return process.getuid?.();
}

function unsafe(path: string, why: string): DplError {
  return new DplError(
    DplErrorCode.INSECURE,
    `refusing to use ${path}: ${why}; another user could have put files there for dpl to run or trust. ` +
      'Remove it (or fix its owner and mode: chmod 700), or point dpl elsewhere with DPL_RUN_DIR',
    { details: { path } },
  );
}

/** Checks that an existing path is a folder of this user that no one else can write into. */
function checkDir(path: string, st: Stats): void {
  if (st.isSymbolicLink()) throw unsafe(path, 'it is a symbolic link, not a folder');
  if (!st.isDirectory()) throw unsafe(path, 'it is not a folder');
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid) throw unsafe(path, `it belongs to uid ${st.uid}, not to you (uid ${uid})`);
  if ((st.mode & 0o022) !== 0) throw unsafe(path, `others may write into it (mode ${(st.mode & 0o777).toString(8)})`);
}

/**
 * Makes `path` a private folder (mode 0700) and returns it. Its parents are created as usual when
 * missing. An existing folder must belong to this user and be writable by no one else; one only
 * readable by others is tightened to 0700.
 * @throws DplError(INSECURE) naming the folder and what is wrong with it.
 */
export function ensurePrivateDir(path: string): string {
  let st: Stats | undefined;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st === undefined) {
    mkdirSync(dirname(path), { recursive: true });
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (e) {
      // Made meanwhile by another process: check what is there.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    st = lstatSync(path);
  }
  checkDir(path, st);
  if ((st.mode & 0o077) !== 0) chmodSync(path, 0o700);
  return path;
}

/**
 * Writes `data` to `path` (mode 0600) without following a symbolic link that may stand there:
 * under a fresh name opened with O_EXCL|O_NOFOLLOW, then renamed over `path`. The folder should
 * be private ({@link ensurePrivateDir}).
 */
export function writePrivateFile(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let at = 0;
    while (at < bytes.byteLength) at += writeSync(fd, bytes, at, bytes.byteLength - at);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/**
 * Reads a file written by {@link writePrivateFile}: a regular file (not a link) of this user that
 * no one else can write.
 * @throws DplError(INSECURE) when it is not; the file system's error when it cannot be read.
 */
export function readPrivateFile(path: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw unsafe(path, 'it is not a regular file');
    const uid = myUid();
    if (uid !== undefined && st.uid !== uid) throw unsafe(path, `it belongs to uid ${st.uid}, not to you (uid ${uid})`);
    if ((st.mode & 0o022) !== 0) throw unsafe(path, `others may write to it (mode ${(st.mode & 0o777).toString(8)})`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * dpl's own folder for this user: `~/.dpl` when the home folder exists and is this user's, else
 * `<tmp>/dpl-<uid>` (containers and service accounts without a home). Not created here.
 */
export function dplHomeDir(): string {
  const uid = myUid();
  try {
    const home = homedir();
    const st = lstatSync(home);
    if (home !== '/' && st.isDirectory() && (uid === undefined || st.uid === uid)) return join(home, '.dpl');
  } catch {
    // no usable home: fall back to the temp folder
  }
  return join(tmpdir(), `dpl-${uid ?? 'user'}`);
}

/**
 * A private folder for one purpose under {@link dplHomeDir} (created, both checked), e.g.
 * `privateDir('bundles')` → `~/.dpl/bundles`.
 * @throws DplError(INSECURE) when either folder is not private.
 */
export function privateDir(name: string, base = dplHomeDir()): string {
  ensurePrivateDir(base);
  return ensurePrivateDir(join(base, name));
}

/**
 * Where running daemons leave their records: `DPL_RUN_DIR`, else `<dplHomeDir>/run` (not created
 * here). The CLI and the SDK read the same one.
 */
export function defaultRunDir(): string {
  return process.env.DPL_RUN_DIR ?? join(dplHomeDir(), 'run');
}
