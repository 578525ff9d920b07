/**
 * The token a head gets when none is given: made once per user, kept in `~/.dpl/token` (mode
 * 0600 in a 0700 folder) and reused by every head this user starts, so that a restarted head
 * takes back its workers, and the file can be copied to other machines for `--token-file`.
 */
import { linkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dplHomeDir, ensurePrivateDir, readPrivateFile, writePrivateFile } from '@dpl/core';
import { generateToken, tokenProblem } from '@dpl/wire';

/** Where the user's token is kept. */
export function userTokenFile(): string {
  return join(dplHomeDir(), 'token');
}

/**
 * The user's token, made (and written) on first use.
 * @throws DplError(INSECURE) when the folder or file is not private; Error when it holds no valid token.
 */
export function userToken(): { token: string; file: string; created: boolean } {
  const file = userTokenFile();
  ensurePrivateDir(dplHomeDir());
  const existing = readIfThere(file);
  if (existing !== undefined) return { token: existing, file, created: false };
  // Written aside, then linked into place: of two heads starting at once, one makes the file
  // and both use what it holds.
  const aside = `${file}.${process.pid}.new`;
  writePrivateFile(aside, `${generateToken()}\n`);
  try {
    linkSync(aside, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(aside, { force: true });
  }
  return { token: readIfThere(file)!, file, created: true };
}

function readIfThere(file: string): string | undefined {
  let text: string;
  try {
    text = readPrivateFile(file).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const token = text.trim();
  const problem = tokenProblem(token);
  if (problem !== undefined) throw new Error(`${file} holds no valid token (${problem}); remove it and a new one is made`);
  return token;
}
