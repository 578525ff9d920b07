/** What the benchmarks share: arguments, medians, the tables they print and their Python peers. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** Debian's python3 (the first python3 on PATH may not see Debian's python3-* packages). */
export const PYTHON = process.env.DPL_BENCH_PYTHON ?? '/usr/bin/python3';

/**
 * Runs a peer script of bench/peer/ with {@link PYTHON} (through `via`, e.g. `ip netns exec H`,
 * when given); returns the JSON of the last line it prints and the wall time.
 */
export async function pythonPeer<T>(script: string, args: string[], via: string[] = []): Promise<{ json: T; wallS: number }> {
  const t0 = performance.now();
  const argv = [...via, PYTHON, join(__dirname, 'peer', script), ...args];
  const { stdout } = await promisify(execFile)(argv[0]!, argv.slice(1), { maxBuffer: 16 << 20 });
  return { json: JSON.parse(stdout.trim().split('\n').pop()!) as T, wallS: (performance.now() - t0) / 1000 };
}

/** Whether {@link PYTHON} can import `module`. */
export function pythonHas(module: string): Promise<boolean> {
  return promisify(execFile)(PYTHON, ['-c', `import ${module}`]).then(
    () => true,
    () => false,
  );
}

/** The value after `--name` on the command line, or `fallback`. */
export function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A Markdown table. */
export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(header), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** A pipeline the benchmarks run with `dpl run` (and bench:peers with its peers). */
export interface Pipeline {
  name: string;
  /** The module's path: relative to a checkout's root in PEER_PIPELINES. */
  module: string;
  batches: number;
  /** Rows the run must deliver (each source batch has one row). */
  rows: number;
  /** Also run `dpl run --no-fuse-tasks` (a pipeline the head fuses). */
  unfused?: boolean;
}

/** bench:peers' pipelines (bench:ab runs them too). */
export const PEER_PIPELINES: readonly Pipeline[] = [
  { name: 'readme', module: 'examples/quickstart.ts', batches: 2000, rows: 2000 },
  { name: 'noop', module: 'bench/pipelines/noop.ts', batches: 20000, rows: 20000 },
  { name: 'chain', module: 'bench/pipelines/chain.ts', batches: 5000, rows: 5000, unfused: true },
  { name: 'rows', module: 'bench/pipelines/rows.ts', batches: 200, rows: 200 * 50_000, unfused: true },
  { name: 'words', module: 'bench/pipelines/words.ts', batches: 200, rows: 200 * 2_000, unfused: true },
];

/** bench:ab's pipelines: bench:peers' and those that only compare dpl with itself. */
export const AB_PIPELINES: readonly Pipeline[] = [...PEER_PIPELINES, { name: 'slices', module: 'bench/pipelines/slices.ts', batches: 200, rows: 600 }];
