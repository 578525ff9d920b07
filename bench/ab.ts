/**
 * Two builds of dpl side by side, run by run: `npm run bench:ab -- --base <rev>` builds <rev> in
 * a clone of its own (`npm ci` and the build, kept under the temporary folder for the next time)
 * and runs each pipeline's `dpl run` with that build and with this checkout's, alternating which
 * goes first, then prints medians of the run's own time, the whole process, and the CPU of the
 * dpl process and of its executors (read from /proc while they run; Linux only).
 *
 * On a shared machine whose speed drifts by a third within minutes, a change shows as a ratio of
 * alternated runs, read together with CPU time, or not at all. Without --base the checkout runs
 * against itself: the noise floor (two identical builds differ by that much).
 *
 *   npm run bench:ab -- [--base 88ceb31] [--pipelines readme,noop] [--runs 9] [--args "--in-process"]
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AB_PIPELINES, arg, median, table } from './lib';

const ROOT = join(__dirname, '..');

const PIPELINES = new Map(AB_PIPELINES.map((p) => [p.name, p]));

interface Build {
  label: string;
  /** The tree whose packages/cli/bin/dpl.js runs. */
  root: string;
}

interface Sample {
  ownS: number;
  wholeS: number;
  /** CPU seconds of the dpl process (all its threads) and of its descendants, where /proc has them. */
  dplCpuS: number | undefined;
  executorsCpuS: number | undefined;
}

const git = (args: string[], cwd = ROOT): string => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

/** `rev` built in a clone of its own (made once, then reused). */
function buildOf(rev: string): Build {
  let sha: string;
  try {
    sha = execFileSync('git', ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    throw new Error(`--base ${JSON.stringify(rev)} names no commit of this repository; give a commit, tag or branch (git log --oneline shows them)`);
  }
  const dir = join(tmpdir(), 'dpl-bench-ab', sha);
  const done = join(dir, '.dpl-bench-ab-built');
  if (!existsSync(done)) {
    process.stderr.write(`bench:ab: building ${rev} (${sha.slice(0, 10)}) in ${dir} (npm ci and the build, once)\n`);
    if (!existsSync(join(dir, '.git'))) {
      mkdirSync(join(tmpdir(), 'dpl-bench-ab'), { recursive: true });
      git(['clone', '--quiet', '--shared', '--no-checkout', ROOT, dir]);
    }
    git(['checkout', '--quiet', '--detach', sha], dir);
    execFileSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    writeFileSync(done, `${sha}\n`);
  }
  return { label: `${rev} (${sha.slice(0, 10)})`, root: dir };
}

const TICKS_PER_S = 100; // USER_HZ on Linux

/** CPU seconds of a process, all threads (utime + stime), or undefined once it is gone. */
function cpuOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(' ').map(Number));
    }
  } catch {
    // gone meanwhile
  }
  return out;
}

/**
 * One `dpl run` of `build`: its own time from the summary line, wall time, and CPU as /proc saw
 * it last. The pipeline is the build's own copy where it has one (its imports then resolve to
 * that build's packages), else this checkout's.
 */
function runOnce(build: Build, path: string, batches: number, extra: string[]): Promise<Sample> {
  const module = existsSync(join(build.root, path)) ? join(build.root, path) : join(ROOT, path);
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(build.root, 'packages', 'cli', 'bin', 'dpl.js'), 'run', module, '-n', String(batches), '-q', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const proc = process.platform === 'linux';
  let dplCpu: number | undefined;
  const seen = new Map<number, number>();
  const poll = (): void => {
    if (!proc || child.pid === undefined) return;
    dplCpu = cpuOf(child.pid) ?? dplCpu;
    const stack = childrenOf(child.pid);
    for (let pid = stack.pop(); pid !== undefined; pid = stack.pop()) {
      const c = cpuOf(pid);
      if (c !== undefined) seen.set(pid, c);
      stack.push(...childrenOf(pid));
    }
  };
  const timer = setInterval(poll, 5);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      const wholeS = (performance.now() - t0) / 1000;
      const m = /finished in ([\d.]+) s/.exec(stdout);
      if (code !== 0 || m === null) return reject(new Error(`dpl run with ${build.label} exited ${code}:\n${stderr || stdout}`));
      let executors = 0;
      for (const c of seen.values()) executors += c;
      resolve({ ownS: Number(m[1]), wholeS, dplCpuS: proc ? dplCpu : undefined, executorsCpuS: proc ? executors : undefined });
    });
  });
}

const s2 = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(2));
const spread = (xs: number[]): string => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
const medianOf = (xs: (number | undefined)[]): number | undefined => (xs.some((x) => x === undefined) ? undefined : median(xs as number[]));

async function main(): Promise<void> {
  const runs = Number(arg('runs', '9'));
  const names = arg('pipelines', 'readme,noop')!.split(',');
  const extra = (arg('args', '') ?? '').split(/\s+/).filter((a) => a !== '');
  for (const n of names) if (!PIPELINES.has(n)) throw new Error(`no pipeline named ${JSON.stringify(n)}; pipelines: ${[...PIPELINES.keys()].join(', ')}`);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number >= 1, got ${arg('runs')}`);
  const base = arg('base');
  const here: Build = { label: 'this checkout', root: ROOT };
  const builds: [Build, Build] = base === undefined ? [{ ...here, label: 'this checkout (A)' }, { ...here, label: 'this checkout (B)' }] : [buildOf(base), here];
  console.log(`bench:ab: ${cpus().length} cores, node ${process.version}; ${runs} runs of each, alternating which goes first${base === undefined ? '; no --base: the same build twice, the noise floor' : ''}${extra.length > 0 ? `; dpl run ${extra.join(' ')}` : ''}\n`);
  for (const name of names) {
    const p = PIPELINES.get(name)!;
    const samples: [Sample[], Sample[]] = [[], []];
    for (let i = 0; i < runs; i++) {
      for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) samples[k]!.push(await runOnce(builds[k]!, p.module, p.batches, extra));
    }
    const rows = builds.map((b, k) => {
      const s = samples[k]!;
      return [b.label, spread(s.map((x) => x.ownS)), spread(s.map((x) => x.wholeS)), s2(medianOf(s.map((x) => x.dplCpuS))), s2(medianOf(s.map((x) => x.executorsCpuS)))];
    });
    const ratio = (f: (x: Sample) => number | undefined): string => {
      const a = medianOf(samples[0].map(f));
      const b = medianOf(samples[1].map(f));
      return a === undefined || b === undefined || a === 0 ? '-' : `${(b / a).toFixed(3)}×`;
    };
    rows.push(['second / first', ratio((x) => x.ownS), ratio((x) => x.wholeS), ratio((x) => x.dplCpuS), ratio((x) => x.executorsCpuS)]);
    console.log(`${name}: ${p.batches} source batches (${p.module}), medians of ${runs}`);
    console.log(table(['build', 'own s (min–max)', 'whole process s (min–max)', 'dpl process CPU s', 'executors CPU s'], rows));
    console.log('');
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:ab: ${(e as Error).message}\n`);
  process.exit(1);
});
