/**
 * A vectored write of many buffers to a new file.
 * @internal
 */
import { closeSync, openSync, writevSync } from 'node:fs';

/** Writes `parts` to a new file with as few `writev` calls as the system allows, finishing partial writes. */
export function writeAllSync(path: string, parts: Uint8Array[]): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    let i = 0;
    let skip = 0; // bytes of parts[i] already written
    while (i < parts.length) {
      const batch = parts.slice(i, i + IOV_MAX);
      if (skip > 0) batch[0] = batch[0]!.subarray(skip);
      let n = writevSync(fd, batch);
      while (i < parts.length && n >= parts[i]!.byteLength - skip) {
        n -= parts[i]!.byteLength - skip;
        skip = 0;
        i++;
      }
      if (i < parts.length) skip += n;
    }
  } finally {
    closeSync(fd);
  }
}
/** Buffers per writev (Linux's IOV_MAX). */
const IOV_MAX = 1024;
