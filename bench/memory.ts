/**
 * The memory benchmark: an endless stream through a head and a worker (separate processes) with
 * a deliberately slow sink. Prints the head's and the worker's resident memory after the first
 * N1 batches and after N2, their growth (goal ≤ 1.2×), and the worker's peak object-store bytes
 * against its budget.
 *
 *   npm run bench:memory [-- --batches 100000 --first 10000 --store-mib 64]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@dpl/client';

const ROOT = join(__dirname, '..');
const DPL = join(ROOT, 'packages', 'cli', 'bin', 'dpl.js');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function dpl(args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawn(process.execPath, [DPL, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, out: () => out };
}

/** Resident memory of a process, in MiB (Linux /proc). */
function rssMib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

async function main(): Promise<void> {
  const total = arg('batches', 100_000);
  const first = arg('first', 10_000);
  const storeMib = arg('store-mib', 64);
  // Unfused, so every batch also passes through the worker's object store.
  const head = dpl(['head', 'start', '--port', '0', '--dashboard-port', '0', '-v', 'error', '--no-fuse-tasks']);
  let address = '';
  while (address === '') {
    await new Promise((r) => setTimeout(r, 50));
    address = /dpl head listening on (\S+)/.exec(head.out())?.[1] ?? '';
  }
  const worker = dpl(['worker', 'start', '--address', address, '--num-cpus', '2', '--object-store-memory', String(storeMib), '-v', 'error']);
  const cluster = await connect(address);
  const samples: { batches: number; head: number; worker: number; seconds: number }[] = [];
  try {
    while ((await cluster.status()).workers.length === 0) await new Promise((r) => setTimeout(r, 100));
    process.stdout.write(`bench:memory: an endless stream (make → 1 ms sink), head and worker in their own processes; ${total} batches\n\n`);
    const run = await cluster.submit(join(ROOT, 'bench', 'pipelines', 'memory.ts'));
    const t0 = performance.now();
    let n = 0;
    let peakStore = 0;
    for await (const _ of run) {
      n++;
      if (n % 1000 === 0) {
        const w = (await cluster.status()).workers[0];
        peakStore = Math.max(peakStore, w?.objectStore.peakMemoryBytes ?? 0);
      }
      if (n === first || n === total) {
        samples.push({ batches: n, head: rssMib(head.child.pid!), worker: rssMib(worker.child.pid!), seconds: (performance.now() - t0) / 1000 });
      }
      if (n >= total) break; // cancels the endless job
    }
    const [a, b] = samples as [(typeof samples)[number], (typeof samples)[number]];
    const rows = [
      ['batches out', String(a.batches), String(b.batches), ''],
      ['elapsed', `${a.seconds.toFixed(0)} s`, `${b.seconds.toFixed(0)} s`, ''],
      ['head RSS', `${a.head.toFixed(1)} MiB`, `${b.head.toFixed(1)} MiB`, `${(b.head / a.head).toFixed(2)}× (goal <= 1.2×)`],
      ['worker RSS (daemon, not executors)', `${a.worker.toFixed(1)} MiB`, `${b.worker.toFixed(1)} MiB`, `${(b.worker / a.worker).toFixed(2)}× (goal <= 1.2×)`],
      ['worker object store, peak in memory', '', `${(peakStore / 1024 / 1024).toFixed(2)} MiB`, `budget ${storeMib} MiB`],
    ];
    const header = ['measure', `after ${a.batches}`, `after ${b.batches}`, 'growth / reference'];
    const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
    process.stdout.write([line(header), `|${w.map((k) => '-'.repeat(k + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n');
  } finally {
    await cluster.close();
    worker.child.kill('SIGTERM');
    head.child.kill('SIGTERM');
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:memory failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
