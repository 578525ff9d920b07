/**
 * Every example runs: the branching pipeline into hive folders, the bigdb pipeline against a real
 * DuckDB file that only the bigdb worker has, and the GPU example where a GPU is advertised (and
 * refused clearly where none is). The quick start is run by run-output.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { connect } from '@dpl/client';
import type { OutputBatch } from '@dpl/core';
import { REPO_ROOT, killDplProcesses, queryDuckDb, runDpl, sqlString, useTempDirs } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);
const tempDir = useTempDirs('dpl-examples-');
const example = (name: string): string => join(REPO_ROOT, 'examples', name);

describe('examples/branching.ts', () => {
  it('writes its two sinks to hive folders, each with its rows', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', example('branching.ts'), '-n', '100', '-o', out, '-q']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const rows = await queryDuckDb(
      `SELECT task, count(*)::INTEGER AS n, min(reading) AS low FROM read_parquet(${sqlString(join(out, '**', '*.parquet'))}, hive_partitioning = true, union_by_name = true) GROUP BY task ORDER BY task`,
    );
    expect(rows.map((x) => x.task)).toEqual(['flag', 'summarize']);
    expect(Number(rows[1]!.n)).toBe(4); // 100 rows in batches of 25
    expect(Number(rows[0]!.low)).toBeGreaterThan(0.75); // only readings over the threshold
  });
});

describe('examples/query.js', () => {
  it('reads what the quick start wrote, as the README says', async () => {
    const out = join(await tempDir(), 'out');
    expect((await runDpl(['run', example('quickstart.ts'), '-n', '20', '-o', out, '-q'])).code).toBe(0);
    const sql = `select count(*) as rows, count(residual) as residuals from '${out}/*.parquet'`;
    const printed = execFileSync(process.execPath, [example('query.js'), sql], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(printed).toMatch(/│ 0 +│ 20 +│ 20 +│/);
  });
});

describe('examples/bigdb.ts', () => {
  it('joins every batch with a DuckDB database that only the bigdb worker has', async () => {
    const db = join(await tempDir(), 'bigdb.duckdb');
    execFileSync(process.execPath, [example('make-bigdb.js'), db, '2000'], { cwd: REPO_ROOT });
    const head = await startHeadProcess();
    const plain = startWorkerProcess(head.address, ['--num-cpus', '2']);
    const big = startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"bigdb":1}']);
    await waitForWorkers(head.address, 2);
    const cluster = await connect(head.address);
    try {
      const out: OutputBatch[] = [];
      for await (const b of await cluster.submit(example('bigdb.ts'), { maxBatches: 8, context: { db_path: db } })) out.push(b);
      expect(out).toHaveLength(8);
      const rows = out.flatMap((b) => b.data.toArray().map((r) => r.toJSON() as { sample_id: bigint; label: string; weight: number; score: number }));
      expect(rows).toHaveLength(8 * 50);
      for (const r of rows) {
        const id = Number(r.sample_id);
        expect(r.label).toBe(`label-${id % 7}`);
        expect(r.weight).toBeCloseTo((id % 100) / 100);
      }
      // The lookups ran on the bigdb worker: its executors opened the database, the others never.
      expect(plain.stderr).not.toMatch(/bigdb|duckdb/i);
      expect(big.child.exitCode).toBeNull();
    } finally {
      await cluster.close();
    }
  });
});

describe('examples/gpu.ts', () => {
  it('runs where a GPU is advertised, with the GPU in CUDA_VISIBLE_DEVICES', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2', '--num-gpus', '1']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const gpus = new Set<string>();
      for await (const b of await cluster.submit(example('gpu.ts'), { maxBatches: 4 })) for (const g of b.data.getChild('gpu')!.toArray() as string[]) gpus.add(g);
      expect([...gpus]).toEqual(['0']);
    } finally {
      await cluster.close();
    }
  });

  it('is refused, naming the task and the GPU, where no GPU is advertised', async () => {
    const r = await runDpl(['run', example('gpu.ts'), '-n', '1', '--num-gpus', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/task "embed"/);
    expect(r.stderr).toMatch(/GPU/);
  });
});
