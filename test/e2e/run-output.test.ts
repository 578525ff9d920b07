/**
 * `dpl run` end to end: what it writes (-o), prints, and how -s, -c, -f and -n change a run.
 * Each test starts the built CLI (`npm run build` first) and reads its parquet output with DuckDB.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { join } from 'node:path';
import {
  DPL_MAIN,
  REPO_ROOT,
  UUID,
  fixture,
  killDplProcesses,
  queryDuckDb,
  runDpl,
  sqlString,
  startDpl,
  useTempDirs,
  waitFor,
  type DplResult,
} from '../helpers/cli';
import { schedBatchLauncher } from '@dpl/worker/fork';

const QUICKSTART = 'examples/quickstart.ts';
const tempDir = useTempDirs();
afterEach(killDplProcesses);

/** The run id from the summary line, checking the run ended as `how`. */
function runIdOf(r: DplResult, how: 'finished' | 'stopped' = 'finished'): string {
  const m = new RegExp(`^run (${UUID.source}) ${how} in `, 'm').exec(r.stdout);
  if (m === null) throw new Error(`no "run <id> ${how}" line in stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return m[1]!;
}

/** Fails with the process's output when it did not exit 0. */
function expectSuccess(r: DplResult): void {
  if (r.code !== 0) throw new Error(`dpl exited ${r.code} (${r.signal}):\n${r.stdout}\n${r.stderr}`);
}

/** Rows of every parquet file under `dir`, ordered by `orderBy`. */
function readParquet(dir: string, orderBy = 'id'): Promise<Record<string, unknown>[]> {
  return queryDuckDb(`SELECT * FROM read_parquet(${sqlString(join(dir, '*.parquet'))}) ORDER BY ${orderBy}`);
}

/** Row counts per file under `dir`. */
async function rowsPerFile(dir: string): Promise<number[]> {
  const rows = await queryDuckDb(
    `SELECT filename, count(*)::INTEGER AS n FROM read_parquet(${sqlString(join(dir, '*.parquet'))}, filename = true) GROUP BY filename`,
  );
  return rows.map((r) => Number(r.n));
}

/** Number of decimal places needed to write `v` (up to 12). */
function decimals(v: number): number {
  for (let d = 0; d <= 12; d++) {
    const scaled = v * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6) return d;
  }
  return Infinity;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('dpl run -o DIR', () => {
  it('writes one whole parquet file per output batch, named <runId>-<n>.parquet', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', QUICKSTART, '-n', '100', '-o', out]);
    expectSuccess(r);
    const runId = runIdOf(r);
    expect(r.stdout).toContain(`run ${runId} finished`);
    expect(r.stdout).toMatch(/: 10 batches, 100 rows$/m);
    expect(r.stdout).toContain(`wrote 10 parquet files to ${out}`);

    // Exactly the ten files, nothing else (no temporary files left behind).
    const names = (await readdir(out)).sort();
    expect(names).toEqual(range(10).map((n) => `${runId}-${n}.parquet`).sort());
    expect(await rowsPerFile(out)).toEqual(Array(10).fill(10));

    const rows = await readParquet(out);
    expect(rows).toHaveLength(100);
    expect(Object.keys(rows[0]!)).toEqual(['run_id', 'id', 'sample', 'rounded', 'residual']);
    expect(rows.map((row) => Number(row.id))).toEqual(range(100));
    for (const row of rows) {
      const { run_id, sample, rounded, residual } = row as { run_id: string; sample: number; rounded: number; residual: number };
      expect(run_id).toBe(runId);
      expect(residual).toBeCloseTo(rounded - sample, 12);
      // round's default kwargs: decimals = 1.
      expect(decimals(rounded)).toBeLessThanOrEqual(1);
      expect(Math.abs(rounded - sample)).toBeLessThanOrEqual(0.05 + 1e-9);
    }
  });

  it('rounds to the decimals set with -s round.kwargs.decimals=3', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', QUICKSTART, '-n', '100', '-o', out, '-s', 'round.kwargs.decimals=3']);
    expectSuccess(r);
    const rows = (await readParquet(out)) as { sample: number; rounded: number }[];
    expect(rows).toHaveLength(100);
    const places = rows.map((row) => decimals(row.rounded));
    expect(Math.max(...places)).toBe(3);
    for (const { sample, rounded } of rows) expect(Math.abs(rounded - sample)).toBeLessThanOrEqual(0.0005 + 1e-9);
  });

  it('cuts batches of the size set with -s round.batchSize=25', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', QUICKSTART, '-n', '100', '-o', out, '-s', 'round.batchSize=25']);
    expectSuccess(r);
    const runId = runIdOf(r);
    expect(r.stdout).toMatch(/: 4 batches, 100 rows$/m);
    expect((await readdir(out)).sort()).toEqual(range(4).map((n) => `${runId}-${n}.parquet`).sort());
    expect(await rowsPerFile(out)).toEqual([25, 25, 25, 25]);
    expect((await readParquet(out)).map((row) => Number(row.id))).toEqual(range(100));
  });

  it('writes each sink of a branching graph under hive-style task=<name>/ folders', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', fixture('branching.ts'), '-n', '10', '-o', out]);
    expectSuccess(r);
    const runId = runIdOf(r);
    expect((await readdir(out)).sort()).toEqual(['task=evens', 'task=odds']);
    const numbers: number[] = [];
    for (const task of ['evens', 'odds']) {
      const names = await readdir(join(out, `task=${task}`));
      expect(names).toHaveLength(5);
      for (const name of names) {
        const m = new RegExp(`^${runId}-(\\d+)\\.parquet$`).exec(name);
        expect(m).not.toBeNull();
        numbers.push(Number(m![1]));
      }
    }
    // The file numbers count the run's outputs, across sinks.
    expect(numbers.sort((a, b) => a - b)).toEqual(range(10));

    const rows = await queryDuckDb(
      `SELECT task, id FROM read_parquet(${sqlString(join(out, '**', '*.parquet'))}, hive_partitioning = true) ORDER BY id`,
    );
    expect(new Set(rows.map((row) => row.task))).toEqual(new Set(['evens', 'odds']));
    expect(rows.map((row) => Number(row.id))).toEqual(range(10));
    for (const row of rows) expect(row.task).toBe(Number(row.id) % 2 === 0 ? 'evens' : 'odds');
  });

  it('applies context: and config: from -f, and -c / -s override the file', async () => {
    const yaml = fixture('context-config.yaml');
    const fromFile = join(await tempDir(), 'file');
    expectSuccess(await runDpl(['run', fixture('context-pipeline.ts'), '-n', '5', '-o', fromFile, '-f', yaml]));
    const rows = await readParquet(fromFile);
    expect(rows.map((row) => Number(row.id))).toEqual(range(5));
    for (const row of rows) {
      expect(row.tag).toBe('from-yaml');
      expect(row.scaled).toBe(Number(row.id) * 10);
    }

    const overridden = join(await tempDir(), 'flags');
    expectSuccess(
      await runDpl([
        'run', fixture('context-pipeline.ts'), '-n', '5', '-o', overridden,
        '-f', yaml, '-s', 'label.kwargs.scale=100', '-c', 'label=from-flag',
      ]),
    );
    for (const row of await readParquet(overridden)) {
      expect(row.tag).toBe('from-flag');
      expect(row.scaled).toBe(Number(row.id) * 100);
    }
  });

  it('reads a module\'s generator and maxBatches, and -n overrides maxBatches', async () => {
    // The module yields 7 batches of 3 rows and exports maxBatches = 5.
    const byModule = join(await tempDir(), 'module');
    const r = await runDpl(['run', fixture('generator-pipeline.ts'), '-o', byModule]);
    expectSuccess(r);
    expect(r.stdout).toMatch(/: 5 batches, 15 rows$/m);
    expect(await rowsPerFile(byModule)).toEqual([3, 3, 3, 3, 3]);
    const rows = await readParquet(byModule, 'n');
    expect(rows.map((row) => row.n)).toEqual(range(15));
    for (const row of rows) {
      expect(row.doubled).toBe(2 * Number(row.n));
      expect(row.batch).toBe(Math.floor(Number(row.n) / 3));
    }

    // More than the module's maxBatches: the generator's end stops the run.
    const more = await runDpl(['run', fixture('generator-pipeline.ts'), '-n', '7']);
    expectSuccess(more);
    expect(more.stdout).toMatch(/: 7 batches, 21 rows$/m);
    // Far more: the head pulls a few batches ahead, and those past the generator's end are told
    // so (its process is not started again, no batch comes twice).
    const starts = join(await tempDir(), 'starts');
    const far = await runDpl(['run', fixture('generator-counted.ts'), '-n', '100'], { env: { DPL_TEST_GENERATOR_STARTS: starts } });
    expectSuccess(far);
    expect(far.stdout).toMatch(/: 3 batches, 3 rows$/m);
    expect(await readFile(starts, 'utf8')).toBe('started\n');

    const fewer = await runDpl(['run', fixture('generator-pipeline.ts'), '-n', '2']);
    expectSuccess(fewer);
    expect(fewer.stdout).toMatch(/: 2 batches, 6 rows$/m);
  });
});

describe('dpl run without -o', () => {
  it('prints a summary line and a preview of the first batch', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '100']);
    expectSuccess(r);
    const runId = runIdOf(r);
    expect(r.stdout).toMatch(new RegExp(`^run ${runId} finished in \\d+(\\.\\d+)? s: 10 batches, 100 rows$`, 'm'));
    expect(r.stdout).toMatch(/^resid\s+10\s+100$/m);
    const lines = r.stdout.split('\n');
    const at = lines.indexOf('first batch of resid:');
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]!.split(/\s+/)).toEqual(['run_id', 'id', 'sample', 'rounded', 'residual']);
    // Batches of 10 rows: 5 shown, then a note.
    const shown = lines.slice(at + 2, at + 7);
    for (const row of shown) expect(row.startsWith(runId)).toBe(true);
    expect(lines[at + 7]).toBe('... 5 more rows');
    expect(r.stderr).toBe('');
  });

  it('runs a plain .js module too', async () => {
    const r = await runDpl(['run', fixture('plain-js.js'), '-n', '3']);
    expectSuccess(r);
    expect(r.stdout).toMatch(/: 3 batches, 3 rows$/m);
    expect(r.stdout).toMatch(/^first batch of count:\nrun_id\s+id\s+rows$/m);
  });
});

describe('dpl run and the copies of arrow and dpl a module gets', () => {
  // The `dpl` process and its executors are built as single files (scripts/bundle.js) that hold
  // their own apache-arrow and @dpl/core: a module gets those, instead of loading second copies
  // from disk (~75 ms of every process's start).
  it.each([
    ['in executor processes', []],
    ['in the dpl process (--in-process)', ['--in-process']],
  ])("gives the module the process's own copies, %s", async (_how, flags) => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', fixture('shared-copies.ts'), '-n', '3', '-o', out, ...flags]);
    expectSuccess(r);
    const rows = await readParquet(out);
    expect(rows.map((row) => [Number(row.arrow_files), Number(row.core_files), Number(row.n)])).toEqual([
      [0, 0, 42],
      [0, 0, 42],
      [0, 0, 42],
    ]);
  });

  it('reports the version of its packages', async () => {
    const r = await runDpl(['--version']);
    expectSuccess(r);
    const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'packages', 'core', 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(version);
  });
});

describe('dpl run and the compile cache', () => {
  // Node 22.1+ keeps V8's compiled code on disk (module.enableCompileCache); Node 20 has none.
  const hasCache = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function';

  /** The folder the executor saw, and what the compile cache folder under `tmp` holds. */
  async function cacheOf(env: Record<string, string | undefined>): Promise<{ seen: string; entries: string[]; cache: string }> {
    const tmp = await tempDir();
    const out = join(tmp, 'out');
    const r = await runDpl(['run', fixture('compile-cache.ts'), '-n', '1', '-o', out], {
      env: { TMPDIR: tmp, NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined, ...env },
    });
    expectSuccess(r);
    const [row] = await readParquet(out, 'dir');
    const cache = join(tmp, 'node-compile-cache');
    return { seen: String(row!.dir), entries: existsSync(cache) ? readdirSync(cache) : [], cache };
  }

  it('keeps compiled code in a cache under the temporary folder, shared with its executors, where Node has one', async () => {
    const { seen, entries, cache } = await cacheOf({});
    if (hasCache) {
      expect(seen).toBe(cache);
      expect(entries.length).toBeGreaterThan(0); // a folder per Node version, written at exit
    } else {
      expect(seen).toBe('');
      expect(entries).toEqual([]);
    }
  });

  it('keeps none with NODE_DISABLE_COMPILE_CACHE=1', async () => {
    const { seen, entries } = await cacheOf({ NODE_DISABLE_COMPILE_CACHE: '1' });
    expect({ seen, entries }).toEqual({ seen: '', entries: [] });
  });
});

describe('dpl run and how its executors are scheduled', () => {
  async function policyOf(env: Record<string, string | undefined>): Promise<number> {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', fixture('sched-policy.ts'), '-n', '1', '-o', out], { env });
    expectSuccess(r);
    const [row] = await readParquet(out, 'policy');
    return Number(row!.policy);
  }

  // Linux with util-linux's chrt, as this project's CI machines: executors run as batch work.
  (process.platform === 'linux' && schedBatchLauncher() !== undefined ? it : it.skip)(
    'runs the executors under SCHED_BATCH, or the normal policy with DPL_EXECUTOR_SCHED=normal',
    async () => {
      expect(await policyOf({ DPL_EXECUTOR_SCHED: undefined })).toBe(3);
      expect(await policyOf({ DPL_EXECUTOR_SCHED: 'normal' })).toBe(0);
    },
  );

  it('refuses another DPL_EXECUTOR_SCHED, naming it and the words it takes', async () => {
    const r = await runDpl(['run', fixture('sched-policy.ts'), '-n', '1'], { env: { DPL_EXECUTOR_SCHED: 'fast' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('DPL_EXECUTOR_SCHED must be "batch" or "normal", got "fast"; unset it for the default (batch)');
  });
});

describe('dpl run interrupted', () => {
  it('stops on SIGINT, exits 130, and leaves only whole parquet files', async () => {
    const out = join(await tempDir(), 'out');
    // No -n: the default source is endless.
    const proc = startDpl(['run', QUICKSTART, '-o', out]);
    await waitFor(() => existsSync(out) && readdirSync(out).some((n) => n.endsWith('.parquet')), {
      timeoutMs: 20_000,
      what: `a parquet file in ${out}\n${proc.stderr}`,
    });
    proc.child.kill('SIGINT');
    const r = await proc.exited;

    expect(r.signal).toBeNull();
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/^dpl: stopping/m);
    const runId = runIdOf(r, 'stopped');
    const m = /: (\d+) batches, (\d+) rows$/m.exec(r.stdout);
    expect(m).not.toBeNull();
    const [batches, rowCount] = [Number(m![1]), Number(m![2])];
    expect(batches).toBeGreaterThan(0);
    expect(r.stdout).toContain(`wrote ${batches} parquet file`);

    const names = await readdir(out);
    expect(names.filter((n) => !new RegExp(`^${runId}-\\d+\\.parquet$`).test(n))).toEqual([]);
    expect(names).toHaveLength(batches);
    // DuckDB reads every file: none is partial.
    const perFile = await rowsPerFile(out);
    expect(perFile).toHaveLength(batches);
    expect(perFile.reduce((a, b) => a + b, 0)).toBe(rowCount);
    const ids = (await readParquet(out)).map((row) => Number(row.id));
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('dpl run into a closed pipe', () => {
  it('exits quietly when stdout closes early (dpl run … | head)', async () => {
    const child = spawn(process.execPath, [DPL_MAIN, 'run', QUICKSTART, '-n', '200'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => child.stdout.destroy()); // the reader goes away
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
  });
});
