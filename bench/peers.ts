/**
 * dpl next to its peers on the same pipelines, all in one run, each as its users run it and each
 * as a whole process (start to exit) and as its own time (from the run's start to its last
 * batch):
 *
 * - `dpl run` (the embedded default), `dpl run --in-process`, and `dpl submit` to a head and one
 *   worker started beforehand as their own processes (`dpl head start`, `dpl worker start`),
 *   timed after one unmeasured job on them (a long-lived cluster's case);
 * - dplutils' LocalSerialExecutor (a checkout of ssec-jhu/dplutils, Debian's python3-pandas);
 * - Dask distributed with 2 worker processes (Debian's python3-distributed), futures and
 *   as_completed.
 *
 * Pipelines: `readme` (dplutils' README pipeline, examples/quickstart.ts, 2,000 source batches),
 * `noop` (one task returning its input, 20,000 batches) and `chain` (three map tasks in a chain,
 * bench/pipelines/chain.ts, 5,000 batches; with a `dpl run --no-fuse-tasks` row: the head fuses
 * the chain into one call per batch unless told not to) and `rows` (200 batches of 100,000 rows:
 * make, compute, filter half; bench/pipelines/rows.ts, also with `--no-fuse-tasks`) and `words`
 * (200 batches of 20,000 rows with a string column: make names, derive a string column, keep a
 * tenth; bench/pipelines/words.ts, also with `--no-fuse-tasks`).
 *
 *   npm run bench:peers -- [--dplutils PATH] [--repeats 3] [--only readme,noop,chain,rows,words]
 *
 * A peer that is not installed is skipped with a message. Figures are medians of the repeats.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PEER_PIPELINES, PYTHON, arg, median, pythonHas, pythonPeer, table, type Pipeline } from './lib';

const ROOT = join(__dirname, '..');
const DPL = join(ROOT, 'packages', 'cli', 'bin', 'dpl.js');

/** bench:peers' pipelines, their modules as absolute paths in this checkout. */
const PIPELINES: Pipeline[] = PEER_PIPELINES.map((p) => ({ ...p, module: join(ROOT, p.module) }));

interface Sample {
  wholeS: number;
  ownS: number;
}

interface Row {
  name: string;
  samples: Sample[];
  note?: string;
}

/** Runs a command to its end; returns its stdout and the wall time. */
async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; wallS: number }> {
  const t0 = performance.now();
  const { stdout } = await promisify(execFile)(cmd, args, { env, maxBuffer: 16 << 20 });
  return { stdout, wallS: (performance.now() - t0) / 1000 };
}

/** `run … finished in 1.23 s: N batches, R rows` → seconds, after checking the rows. */
function dplOwn(stdout: string, p: Pipeline): number {
  const m = /finished in ([\d.]+) s: \d+ batches, (\d+) rows/.exec(stdout);
  if (m === null) throw new Error(`no summary line in dpl's output:\n${stdout}`);
  if (Number(m[2]) !== p.rows) throw new Error(`dpl delivered ${m[2]} rows, expected ${p.rows}`);
  return Number(m[1]);
}

async function dplRun(p: Pipeline, extra: string[], env?: NodeJS.ProcessEnv): Promise<Sample> {
  const { stdout, wallS } = await timed(process.execPath, [DPL, ...extra, p.module, '-n', String(p.batches), '-q'], env);
  return { wholeS: wallS, ownS: dplOwn(stdout, p) };
}

/** A head and one worker (all cores) as their own processes, on loopback. */
async function startCluster(runDir: string): Promise<{ address: string; stop(): void }> {
  const env = { ...process.env, DPL_RUN_DIR: runDir };
  const head = spawn(process.execPath, [DPL, 'head', 'start', '--port', '0', '--dashboard-port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  head.stdout.on('data', (d: Buffer) => (out += d.toString()));
  head.stderr.on('data', () => undefined);
  const address = await new Promise<string>((resolve, reject) => {
    const check = setInterval(() => {
      const m = /dpl head listening on (\S+)/.exec(out);
      if (m !== null) {
        clearInterval(check);
        resolve(m[1]!);
      } else if (head.exitCode !== null) {
        clearInterval(check);
        reject(new Error(`the head did not start:\n${out}`));
      }
    }, 50);
  });
  const worker = spawn(process.execPath, [DPL, 'worker', 'start', '--address', address], { env, stdio: 'ignore' });
  // Ready when the status lists it.
  for (let i = 0; i < 200; i++) {
    const { stdout } = await timed(process.execPath, [DPL, 'status', '--address', address, '--json'], env).catch(() => ({ stdout: '{}', wallS: 0 }));
    if ((JSON.parse(stdout) as { workers?: { state: string }[] }).workers?.some((w) => w.state === 'alive')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address,
    stop: () => {
      worker.kill('SIGINT');
      head.kill('SIGINT');
    },
  };
}

interface PeerJson {
  version: string | null;
  python: string;
  pandas: string;
  rows: number;
  own_s?: number;
  times_s?: number[];
}

const python = (script: string, args: string[]) => pythonPeer<PeerJson>(script, args);

async function benchPipeline(p: Pipeline, repeats: number, dplutils: string | undefined, hasDask: boolean): Promise<void> {
  const rows: Row[] = [];
  const add = async (name: string, one: () => Promise<Sample>, note?: string, warmups = 0): Promise<void> => {
    const samples: Sample[] = [];
    for (let i = 0; i < warmups; i++) await one();
    for (let i = 0; i < repeats; i++) samples.push(await one());
    rows.push({ name, samples, note });
  };
  await add('dpl run (embedded head + worker)', () => dplRun(p, ['run']));
  await add('dpl run --in-process', () => dplRun(p, ['run', '--in-process']));
  if (p.unfused === true) await add('dpl run --no-fuse-tasks', () => dplRun(p, ['run', '--no-fuse-tasks']));
  const runDir = mkdtempSync(join(tmpdir(), 'dpl-bench-run-'));
  const cluster = await startCluster(runDir);
  try {
    // A cluster that has run a job before, as a long-lived one has: the first job on new daemons
    // pays for their warm-up (its executors start and compile arrow's code; 2.1 s against ~0.5
    // for the README pipeline), which `dpl run` pays every time and is measured with.
    await add('dpl submit (head + 1 worker processes, after one job)', () => dplRun(p, ['submit', '--address', cluster.address], { ...process.env, DPL_RUN_DIR: runDir }), undefined, 1);
  } finally {
    cluster.stop();
    rmSync(runDir, { recursive: true, force: true });
  }
  let peerNote = '';
  if (dplutils !== undefined) {
    let version = '';
    await add('dplutils LocalSerialExecutor', async () => {
      const { json, wallS } = await python('dplutils_local.py', ['--dplutils', dplutils, '--pipeline', p.name, '--batches', String(p.batches), '--repeats', '1', '--warmup', '0']);
      version = `dplutils ${json.version ?? '?'}, python ${json.python}, pandas ${json.pandas}`;
      return { wholeS: wallS, ownS: json.times_s![0]! };
    });
    peerNote += `${version}. `;
  }
  if (hasDask) {
    let version = '';
    await add('Dask distributed, 2 worker processes', async () => {
      const { json, wallS } = await python('dask_peer.py', ['--pipeline', p.name, '--batches', String(p.batches), '--workers', '2']);
      if (json.rows !== p.rows) throw new Error(`dask delivered ${json.rows} rows, expected ${p.rows}`);
      version = `distributed ${json.version ?? '?'}`;
      return { wholeS: wallS, ownS: json.own_s! };
    });
    peerNote += `${version}.`;
  }
  const ref = median(rows[1]!.samples.map((s) => s.ownS));
  process.stdout.write(
    `\n${p.name}: ${p.batches} source batches (${p.module.replace(`${ROOT}/`, '')}), medians of ${repeats}\n\n` +
      `${table(
        ['implementation', 'whole process s', 'own s', 'batches/s (own)', 'own vs dpl --in-process'],
        rows.map((r) => {
          const own = median(r.samples.map((s) => s.ownS));
          return [r.name, median(r.samples.map((s) => s.wholeS)).toFixed(2), own.toFixed(2), (p.batches / own).toFixed(0), `${(own / ref).toFixed(2)}x`];
        }),
      )}\n` +
      (peerNote === '' ? '' : `\npeers: ${peerNote}\n`),
  );
}

async function main(): Promise<void> {
  const repeats = Number(arg('repeats', '3'));
  const only = arg('only')?.split(',');
  const dplutilsPath = arg('dplutils') ?? process.env.DPLUTILS_PATH;
  process.stdout.write(`bench:peers: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}\n`);
  let dplutils: string | undefined;
  if (dplutilsPath === undefined) process.stdout.write('dplutils peer skipped: pass --dplutils PATH (a checkout of ssec-jhu/dplutils) or set DPLUTILS_PATH\n');
  else if (!existsSync(join(dplutilsPath, 'dplutils', '__init__.py'))) process.stdout.write(`dplutils peer skipped: ${dplutilsPath} is not a dplutils checkout\n`);
  else if (!(await pythonHas('pandas'))) process.stdout.write(`dplutils peer skipped: ${PYTHON} has no pandas (apt-get install python3-pandas python3-networkx python3-yaml)\n`);
  else dplutils = dplutilsPath;
  const hasDask = await pythonHas('distributed');
  if (!hasDask) process.stdout.write(`Dask peer skipped: ${PYTHON} has no distributed (apt-get install python3-distributed)\n`);
  for (const p of PIPELINES) {
    if (only !== undefined && !only.includes(p.name)) continue;
    await benchPipeline(p, repeats, dplutils, hasDask);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:peers failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
