/**
 * Takes the token out of what other processes can read about this one. `/proc/PID/cmdline`
 * (what `ps` shows every local user) and `/proc/PID/environ` (readable by this user's other
 * processes, task code included) show the memory the process started with, not Node's copies of
 * it; so after the token is read, that memory is overwritten in place through `/proc/self/mem`,
 * the way MySQL's client masks `-pPASSWORD`. Node's own `process.argv` is a copy and keeps the
 * value; `process.env.DPL_TOKEN` is deleted so that no child process inherits it.
 *
 * Linux only; elsewhere (or where `/proc/self/mem` cannot be written) nothing is hidden and the
 * caller says so.
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

/** The `[start, end)` addresses of this process's initial argv and environment strings. */
function argAndEnvRanges(): { arg: [number, number]; env: [number, number] } | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (field 2, which may hold spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const field = (n: number): number => Number(f[n - 3]);
    const r = { arg: [field(48), field(49)] as [number, number], env: [field(50), field(51)] as [number, number] };
    return [...r.arg, ...r.env].every((v) => Number.isSafeInteger(v) && v > 0) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** NUL-separated strings of a region with their offsets. */
function strings(buf: Buffer): { at: number; text: string }[] {
  const out: { at: number; text: string }[] = [];
  let at = 0;
  while (at < buf.byteLength) {
    let end = buf.indexOf(0, at);
    if (end < 0) end = buf.byteLength;
    out.push({ at, text: buf.toString('latin1', at, end) });
    at = end + 1;
  }
  return out;
}

/**
 * Overwrites with `*` the value of every `--token` argument and of `DPL_TOKEN` in this
 * process's initial argv and environment, and deletes `process.env.DPL_TOKEN`.
 * @returns whether the memory `/proc` shows could be rewritten (false: not on Linux, or refused).
 */
export function hideTokenFromProc(): boolean {
  delete process.env.DPL_TOKEN;
  const ranges = argAndEnvRanges();
  if (ranges === undefined) return false;
  let fd: number | undefined;
  try {
    fd = openSync('/proc/self/mem', 'r+');
    const read = ([start, end]: [number, number]): Buffer => {
      const buf = Buffer.alloc(end - start);
      readSync(fd!, buf, 0, buf.byteLength, start);
      return buf;
    };
    const blank = (address: number, length: number): void => {
      if (length > 0) writeSync(fd!, Buffer.alloc(length, '*'), 0, length, address);
    };
    const args = strings(read(ranges.arg));
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (a.text === '--token' && i + 1 < args.length) blank(ranges.arg[0] + args[i + 1]!.at, Buffer.byteLength(args[i + 1]!.text, 'latin1'));
      else if (a.text.startsWith('--token=')) blank(ranges.arg[0] + a.at + 8, a.text.length - 8);
    }
    for (const e of strings(read(ranges.env))) {
      if (e.text.startsWith('DPL_TOKEN=')) blank(ranges.env[0] + e.at + 10, e.text.length - 10);
    }
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
