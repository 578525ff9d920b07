/**
 * Garbage collection's share of what `dpl run` costs, per process kind, on the pipelines of
 * bench:peers: every process of the run (the main one: head, worker and client; the executors,
 * through DPL_EXECUTOR_NODE_OPTIONS) prints its collections (`--trace-gc`), and the CPU time of
 * the whole process tree comes from the shell's `times`. GC time here is the time collections
 * took on each process's main thread (pauses plus incremental marking steps), not V8's helper
 * threads.
 *
 *   npm run bench:gc [-- --repeats 3 --only noop,rows,words --dpl PATH/TO/packages/cli/bin/dpl.js]
 *
 * `--dpl` measures another checkout (an earlier commit, built) for a before/after table.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { arg, median, table } from './lib';

const ROOT = join(__dirname, '..');

interface Pipeline {
  name: string;
  module: string;
  batches: number;
  extra?: string[];
}

/** The pipelines of bench:peers, from the checkout being measured (`root`). */
const pipelines = (root: string): Pipeline[] => [
  { name: 'noop', module: join(root, 'bench', 'pipelines', 'noop.ts'), batches: 20000 },
  { name: 'rows', module: join(root, 'bench', 'pipelines', 'rows.ts'), batches: 200 },
  { name: 'rows --no-fuse-tasks', module: join(root, 'bench', 'pipelines', 'rows.ts'), batches: 200, extra: ['--no-fuse-tasks'] },
  { name: 'words', module: join(root, 'bench', 'pipelines', 'words.ts'), batches: 200 },
];

interface Sample {
  mainGcMs: number;
  executorGcMs: number;
  executors: number;
  cpuS: number;
}

// [pid:isolate]  123 ms: Scavenge 10.1 (12.0) -> 9.0 (13.0) MB, 1.23 / 0.00 ms  (+ 0.5 ms in 3 steps since start of marking, ...
const GC_LINE = /^\[(\d+):0x[0-9a-f]+\]\s+[\d.]+ ms: [A-Za-z -]+?(?:\([a-z ]+\) )?[\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB, ([\d.]+) \/ [\d.]+ ms(?:\s+\(\+ ([\d.]+) ms in \d+ steps)?/;

/** `times`' second line (children): "0m1.234s 0m0.567s" → seconds of user + system. */
function childrenCpu(line: string): number {
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (parts.length !== 2) throw new Error(`cannot read the shell's times: ${line}`);
  return parts[0]! + parts[1]!;
}

async function sample(dpl: string, p: Pipeline): Promise<Sample> {
  const script = `"$@" > "$OUT_FILE"; status=$?; times; exit $status`;
  const out = join(tmpdir(), `dpl-gc-bench-${process.pid}.txt`);
  const argv = [process.execPath, '--trace-gc', dpl, 'run', p.module, '-n', String(p.batches), '-q', ...(p.extra ?? [])];
  const { stdout: times } = await promisify(execFile)('bash', ['-c', script, 'bash', ...argv], {
    env: { ...process.env, DPL_EXECUTOR_NODE_OPTIONS: '--trace-gc', OUT_FILE: out },
    maxBuffer: 64 << 20,
  });
  const text = readFileSync(out, 'utf8');
  rmSync(out, { force: true });
  const perPid = new Map<number, number>();
  let first: number | undefined;
  for (const line of text.split('\n')) {
    const m = GC_LINE.exec(line);
    if (m === null) continue;
    const pid = Number(m[1]);
    first ??= pid;
    perPid.set(pid, (perPid.get(pid) ?? 0) + Number(m[2]) + Number(m[3] ?? 0));
  }
  if (!/finished in [\d.]+ s: \d+ batches/.test(text)) throw new Error(`no summary line in dpl's output:\n${text.slice(-2000)}`);
  // The main process collects first (it starts before any executor).
  const mainGcMs = first === undefined ? 0 : perPid.get(first)!;
  if (perPid.size < 2) throw new Error(`no executor printed its collections: does ${dpl} pass DPL_EXECUTOR_NODE_OPTIONS on?`);
  const executorGcMs = [...perPid].filter(([pid]) => pid !== first).reduce((s, [, ms]) => s + ms, 0);
  return { mainGcMs, executorGcMs, executors: Math.max(0, perPid.size - 1), cpuS: childrenCpu(times.trim().split('\n').pop()!) };
}

async function main(): Promise<void> {
  const dpl = arg('dpl', join(ROOT, 'packages', 'cli', 'bin', 'dpl.js'))!;
  const repeats = Number(arg('repeats', '3'));
  const only = arg('only')?.split(',');
  process.stdout.write(`bench:gc: ${dpl}, medians of ${repeats}; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}\n\n`);
  const rows: string[][] = [];
  // packages/cli/bin/dpl.js → the checkout's root.
  const root = join(dirname(dpl), '..', '..', '..');
  for (const p of pipelines(root).filter((x) => only === undefined || only.includes(x.name.split(' ')[0]!))) {
    const samples: Sample[] = [];
    for (let i = 0; i < repeats; i++) samples.push(await sample(dpl, p));
    const main = median(samples.map((s) => s.mainGcMs));
    const ex = median(samples.map((s) => s.executorGcMs));
    const cpu = median(samples.map((s) => s.cpuS));
    rows.push([
      `${p.name}, ${p.batches} batches`,
      main.toFixed(0),
      `${ex.toFixed(0)} (${median(samples.map((s) => s.executors))})`,
      cpu.toFixed(2),
      `${(((main + ex) / 1000 / cpu) * 100).toFixed(1)}%`,
    ]);
  }
  process.stdout.write(`${table(['dpl run', 'GC main process ms', 'GC executors ms (processes)', 'CPU all processes s', 'GC share of CPU'], rows)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:gc failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
