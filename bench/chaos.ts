/**
 * The chaos benchmark: a run of N batches on 4 worker processes while a random worker is killed
 * (SIGKILL) every K seconds (at most 2 kills), and the same run with the workers stopped with
 * SIGTERM instead (a graceful leave: they hand over what they hold), against the run with no
 * kills. Reports the batches delivered exactly once (goal 100 %), the calls the head recomputed
 * or interrupted (goal 0 for SIGTERM), whether every surviving worker's resources are free
 * afterwards, and how long each worker took to be gone.
 *
 *   npm run bench:chaos [-- --batches 2000 --every 10 --kills 2 --task-ms 60]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type Cluster } from '@dpl/client';
import { startHead } from '@dpl/head';

const ROOT = join(__dirname, '..');
const DPL = join(ROOT, 'packages', 'cli', 'bin', 'dpl.js');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function startWorker(address: string, token: string | undefined): ChildProcess {
  return spawn(process.execPath, [DPL, 'worker', 'start', '--address', address, '--num-cpus', '2', '-v', 'error'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DPL_TOKEN: token },
  });
}

async function alive(cluster: Cluster): Promise<number> {
  return (await cluster.status()).workers.filter((w) => w.state === 'alive').length;
}

interface Outcome {
  seconds: number;
  delivered: number;
  unique: number;
  /** Ids in range seen exactly once. */
  exact: number;
  whole: number;
  missing: number;
  duplicates: number;
  detectMs: number[];
  /** The head's call counters: recomputed, interrupted, handed_back. */
  calls: Record<string, number>;
  resourcesFree: boolean;
  /** `dpl-objects-<pid>-*` folders of this run's workers still in /dev/shm after the cleanup worker. */
  leftShm: number;
}

/** Stops a worker with SIGTERM (its store removes its folders) and waits for it to exit. */
function stopWorker(w: ChildProcess): Promise<void> {
  if (w.exitCode !== null || w.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => w.once('exit', () => r()));
  w.kill('SIGTERM');
  return exited;
}

/** Store folders in /dev/shm of the given worker processes. */
function shmFolders(pids: (number | undefined)[]): number {
  if (!existsSync('/dev/shm')) return 0;
  const mine = new Set(pids.map((p) => `dpl-objects-${p}-`));
  return readdirSync('/dev/shm').filter((n) => mine.has(n.slice(0, n.lastIndexOf('-') + 1))).length;
}

/** The head's task-call counters of the run, summed over tasks: outcome → calls. */
async function callCounts(dashboard: string, token: string | undefined): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${dashboard}/metrics`, { headers: { authorization: `Bearer ${token ?? ''}` } })).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^dpl_task_calls_total\{[^}]*outcome="([^"]+)"\} (\S+)$/.exec(line);
    if (m !== null) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  }
  return out;
}

async function runOnce(batches: number, kills: number, everyS: number, taskMs: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<Outcome> {
  // Unfused: the point is intermediate batches kept on the workers, lost with them and
  // recomputed (fused, make and check would run as one call and nothing would wait between).
  const head = await startHead({ port: 0, dashboardPort: 0, heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, fuseTasks: false });
  const workers = [0, 1, 2, 3].map(() => startWorker(head.address, head.token));
  const cluster = await connect(head.address, { token: head.token });
  try {
    while ((await alive(cluster)) < 4) await new Promise((r) => setTimeout(r, 100));
    const detectMs: number[] = [];
    const seen = new Map<number, number>();
    let delivered = 0;
    let whole = 0;
    const t0 = performance.now();
    const killer = (async () => {
      for (let k = 0; k < kills; k++) {
        await new Promise((r) => setTimeout(r, everyS * 1000));
        if (delivered >= batches) return;
        const living = workers.filter((w) => w.exitCode === null && w.signalCode === null);
        const victim = living[Math.floor(Math.random() * living.length)]!;
        const before = await alive(cluster);
        const killedAt = performance.now();
        victim.kill(signal);
        while ((await alive(cluster)) >= before) await new Promise((r) => setTimeout(r, 10));
        detectMs.push(performance.now() - killedAt);
      }
    })();
    const run = await cluster.submit(join(ROOT, 'bench', 'pipelines', 'chaos.ts'), {
      maxBatches: batches,
      config: { 'make.kwargs.ms': taskMs, 'check.kwargs.ms': taskMs },
    });
    for await (const b of run) {
      delivered++;
      const id = Number(b.data.getChild('id')!.get(0));
      seen.set(id, (seen.get(id) ?? 0) + 1);
      if (Number(b.data.getChild('rows')!.get(0)) === 1000) whole++;
    }
    const seconds = (performance.now() - t0) / 1000;
    await killer;
    let missing = 0;
    for (let i = 0; i < batches; i++) if (!seen.has(i)) missing++;
    const duplicates = [...seen.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
    const status = await cluster.status();
    const resourcesFree = status.workers
      .filter((w) => w.state === 'alive')
      .every((w) => JSON.stringify(w.resources.available) === JSON.stringify(w.resources.total));
    const exact = [...seen].filter(([id, c]) => c === 1 && id >= 0 && id < batches).length;
    const calls = await callCounts(head.dashboardAddress!, head.token);
    // The survivors stop as an operator stops them; the folders the killed ones left are
    // removed by the next worker started on the machine (one started for that, then stopped).
    await Promise.all(workers.map(stopWorker));
    let leftShm = 0;
    if (existsSync('/dev/shm')) {
      const known = (await cluster.status()).workers.length;
      const cleaner = startWorker(head.address, head.token);
      // Registered: it has removed the dead ones' folders and handles SIGTERM.
      while ((await cluster.status()).workers.length === known && cleaner.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      await stopWorker(cleaner);
      leftShm = shmFolders([...workers, cleaner].map((w) => w.pid));
    }
    return { seconds, delivered, unique: seen.size, exact, whole, missing, duplicates, detectMs, calls, resourcesFree, leftShm };
  } finally {
    await cluster.close();
    for (const w of workers) w.kill('SIGKILL');
    await head.stop();
  }
}

async function main(): Promise<void> {
  const batches = arg('batches', 2000);
  const every = arg('every', 10);
  const kills = arg('kills', 2);
  const taskMs = arg('task-ms', 60);
  process.stdout.write(
    `bench:chaos: ${batches} batches, 2 tasks of ${taskMs} ms each, 4 workers × 2 CPUs; a random worker SIGKILLed (then, in another run, SIGTERMed) every ${every} s (at most ${kills})\n\n`,
  );
  const calm = await runOnce(batches, 0, every, taskMs, 'SIGKILL');
  const chaos = await runOnce(batches, kills, every, taskMs, 'SIGKILL');
  const leave = await runOnce(batches, kills, every, taskMs, 'SIGTERM');
  const runs = [calm, chaos, leave];
  const pct = (n: number) => `${((100 * n) / batches).toFixed(2)}%`;
  const each = (f: (o: Outcome) => string): string[] => runs.map(f);
  const rows: string[][] = [
    ['batches delivered exactly once (goal 100%)', ...each((o) => pct(o.exact))],
    ['outputs whole (1,000 rows made, 1,000 checked)', ...each((o) => pct(o.whole))],
    ['outputs received', ...each((o) => String(o.delivered))],
    ['missing / duplicated batch ids', ...each((o) => `${o.missing} / ${o.duplicates}`)],
    ['workers stopped', ...each((o) => String(o.detectMs.length))],
    ['calls recomputed / interrupted (goal 0 with SIGTERM)', ...each((o) => `${o.calls.recomputed ?? 0} / ${o.calls.interrupted ?? 0}`)],
    ['queued calls handed back by a leaving worker', ...each((o) => String(o.calls.handed_back ?? 0))],
    ['time until each worker was gone', ...each((o) => o.detectMs.map((ms) => `${ms.toFixed(0)} ms`).join(', ') || '-')],
    ['resources all free afterwards', ...each((o) => (o.resourcesFree ? 'yes' : 'NO'))],
    ['store folders left in /dev/shm (goal 0)', ...each((o) => String(o.leftShm))],
    ['run time', `${calm.seconds.toFixed(1)} s`, ...[chaos, leave].map((o) => `${o.seconds.toFixed(1)} s (${(o.seconds / calm.seconds).toFixed(2)}× the calm run)`)],
  ];
  const header = ['measure', 'no kills (reference)', 'SIGKILL', 'SIGTERM (graceful leave)'];
  const w = header.map((h, i) => Math.max(...rows.map((r) => r[i]!.length), h.length));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  process.stdout.write([line(header), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:chaos failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
