/**
 * What a short command costs from its start to its end, whole process: the part of every
 * `dpl run` and every daemon's start that is not its work. Each line runs `--repeats` times,
 * alternating with the others, and prints its median and range next to the floor of its
 * language measured in the same run (`node -e 0`, `python3 -c pass`) and the peers doing the
 * same one-batch run: dplutils' LocalSerialExecutor (a checkout of ssec-jhu/dplutils, Debian's
 * python3-pandas) and Dask distributed (a LocalCluster of 2 worker processes, Debian's
 * python3-distributed), each skipped with a message where missing.
 *
 *   npm run bench:startup -- [--repeats 7] [--dplutils PATH] [--dpl PATH/TO/packages/cli/bin/dpl.js]
 *
 * `--dpl` adds the same lines for another checkout (an earlier commit, built) as a before column.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PYTHON, arg, median, pythonHas, table } from './lib';

const ROOT = join(__dirname, '..');
const QUICKSTART = join(ROOT, 'examples', 'quickstart.ts');

interface Line {
  label: string;
  /** Runs once; resolves to the seconds it took. */
  run: () => Promise<number>;
}

/** Runs a command to its exit (stdout and stderr dropped); seconds, or a failure naming it. */
function timed(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve((performance.now() - t0) / 1000);
      else reject(new Error(`${argv.join(' ')} exited ${code}:\n${err.slice(-2000)}`));
    });
  });
}

/** Seconds from starting `dpl head start` to its "listening" line; the head is then stopped. */
function headReady(dpl: string, runDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [dpl, 'head', 'start', '--port', '0', '--dashboard-port', '0'], {
      env: { ...process.env, DPL_RUN_DIR: runDir },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    let ready = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!ready && /dpl head listening on /.test(out)) {
        ready = true;
        const s = (performance.now() - t0) / 1000;
        child.once('exit', () => resolve(s));
        child.kill('SIGINT');
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!ready) reject(new Error(`dpl head start exited ${code} before listening:\n${out}`));
    });
  });
}

/** The dpl lines for the checkout whose bin/dpl.js is `dpl`. */
function dplLines(dpl: string, tag: string, runDir: string): Line[] {
  const node = (args: string[]) => () => timed([process.execPath, dpl, ...args], { ...process.env, DPL_RUN_DIR: runDir });
  return [
    { label: `dpl --version${tag}`, run: node(['--version']) },
    { label: `dpl run quickstart -n 1 (embedded head + worker)${tag}`, run: node(['run', QUICKSTART, '-n', '1', '-q']) },
    { label: `dpl run quickstart -n 1 --in-process${tag}`, run: node(['run', QUICKSTART, '-n', '1', '-q', '--in-process']) },
    { label: `dpl head start, to listening${tag}`, run: () => headReady(dpl, runDir) },
  ];
}

/** A checkout's commit (short), from its bin/dpl.js; its path where git cannot tell. */
function checkoutName(dpl: string): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dirname(dpl), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return dpl;
  }
}

async function main(): Promise<void> {
  const repeats = Number(arg('repeats', '7'));
  const dplutilsPath = arg('dplutils') ?? process.env.DPLUTILS_PATH;
  const other = arg('dpl');
  const runDir = mkdtempSync(join(tmpdir(), 'dpl-bench-startup-'));
  const lines: Line[] = [{ label: 'node -e 0 (the floor)', run: () => timed([process.execPath, '-e', '0']) }];
  lines.push(...dplLines(join(ROOT, 'packages', 'cli', 'bin', 'dpl.js'), '', runDir));
  if (other !== undefined) {
    if (!existsSync(other)) throw new Error(`--dpl ${other} does not exist; pass the bin/dpl.js of a built checkout`);
    lines.push(...dplLines(other, ` [${checkoutName(other)}]`, runDir));
  }
  lines.push({ label: 'python3 -c pass (the floor)', run: () => timed([PYTHON, '-c', 'pass']) });
  if (dplutilsPath === undefined) process.stdout.write('dplutils peer skipped: pass --dplutils PATH (a checkout of ssec-jhu/dplutils) or set DPLUTILS_PATH\n');
  else if (!existsSync(join(dplutilsPath, 'dplutils', '__init__.py'))) process.stdout.write(`dplutils peer skipped: ${dplutilsPath} is not a dplutils checkout\n`);
  else if (!(await pythonHas('pandas'))) process.stdout.write(`dplutils peer skipped: ${PYTHON} has no pandas (apt-get install python3-pandas python3-networkx python3-yaml)\n`);
  else {
    const script = join(__dirname, 'peer', 'dplutils_local.py');
    lines.push({
      label: 'dplutils LocalSerialExecutor, README pipeline, 1 batch',
      run: () => timed([PYTHON, script, '--dplutils', dplutilsPath, '--batches', '1', '--repeats', '1', '--warmup', '0']),
    });
  }
  if (!(await pythonHas('distributed'))) process.stdout.write(`Dask peer skipped: ${PYTHON} has no distributed (apt-get install python3-distributed)\n`);
  else {
    const script = join(__dirname, 'peer', 'dask_peer.py');
    lines.push({
      label: 'Dask distributed, 2 worker processes, README pipeline, 1 batch',
      run: () => timed([PYTHON, script, '--pipeline', 'readme', '--batches', '1', '--workers', '2']),
    });
  }

  const times = lines.map(() => [] as number[]);
  try {
    for (let r = 0; r < repeats; r++) {
      // Alternate the order, so that no line always follows the same one.
      const order = r % 2 === 0 ? lines.map((_, i) => i) : lines.map((_, i) => lines.length - 1 - i);
      for (const i of order) times[i]!.push(await lines[i]!.run());
    }
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
  const nodeFloor = median(times[0]!);
  const pythonAt = lines.findIndex((l) => l.label.startsWith('python3 -c pass'));
  const pythonFloor = median(times[pythonAt]!);
  const s = (x: number): string => x.toFixed(3);
  const rows = lines.map((l, i) => {
    const m = median(times[i]!);
    const floor = i >= pythonAt ? pythonFloor : nodeFloor;
    return [l.label, s(m), `${s(Math.min(...times[i]!))}–${s(Math.max(...times[i]!))}`, `${(m - floor).toFixed(3)}`, `${(m / floor).toFixed(2)}x`];
  });
  process.stdout.write(`bench:startup: ${cpus().length} cores (${cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? '?'}), node ${process.version}; medians of ${repeats}, whole process\n\n`);
  process.stdout.write(`${table(['command', 'median s', 'min–max s', 'over its floor s', 'vs its floor'], rows)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:startup: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
