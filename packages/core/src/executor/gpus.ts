/**
 * Counts this machine's GPUs with `nvidia-smi -L` (one line per GPU), once per process.
 */
import { execFileSync } from 'node:child_process';

let cached: number | undefined;

/** The number of NVIDIA GPUs `nvidia-smi` lists, or 0 when it is absent or fails. */
export function detectGpus(): number {
  if (cached !== undefined) return cached;
  try {
    const out = execFileSync('nvidia-smi', ['-L'], {
      encoding: 'utf8',
      timeout: 5_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cached = out.split('\n').filter((l) => l.startsWith('GPU ')).length;
  } catch {
    cached = 0;
  }
  return cached;
}
