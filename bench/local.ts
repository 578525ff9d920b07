/**
 * The quickstart pipeline (generate → round(batchSize 10) → resid) over N generator batches:
 * dpl's LocalExecutor next to dplutils' LocalSerialExecutor, measured in the same run.
 *
 *   npm run bench:local -- --dplutils /path/to/dplutils-checkout [--batches 2000] [--repeats 5]
 *
 * The dplutils peer runs under Debian's python3 (python3-pandas, -numpy, -networkx, -yaml) from a
 * local checkout of ssec-jhu/dplutils that is never part of this repository; without
 * --dplutils (or DPLUTILS_PATH) the peer is skipped with a message.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { arg, median, table } from './lib';
import { cpus } from 'node:os';
import { LocalExecutor } from '@dpl/core';
import quickstart from '../examples/quickstart';

interface Result {
  name: string;
  version: string;
  times: number[];
  outputs: number;
  rows: number;
}

async function benchDpl(batches: number, repeats: number, warmup: number): Promise<Result> {
  const times: number[] = [];
  let outputs = 0;
  let rows = 0;
  for (let i = 0; i < warmup + repeats; i++) {
    const executor = new LocalExecutor(quickstart, { maxBatches: batches }).setConfig('round.kwargs.decimals', 2);
    outputs = 0;
    rows = 0;
    const t0 = performance.now();
    for await (const batch of executor.run()) {
      outputs++;
      rows += batch.data.numRows;
    }
    const seconds = (performance.now() - t0) / 1000;
    if (rows !== batches) throw new Error(`dpl produced ${rows} rows, expected ${batches}`);
    if (i >= warmup) times.push(seconds);
  }
  return { name: 'dpl LocalExecutor', version: `node ${process.version}`, times, outputs, rows };
}

async function benchDplutils(path: string, batches: number, repeats: number, warmup: number): Promise<Result> {
  const script = join(__dirname, 'peer', 'dplutils_local.py');
  const python = process.env.DPL_BENCH_PYTHON ?? '/usr/bin/python3';
  const { stdout } = await promisify(execFile)(
    python,
    [script, '--dplutils', path, '--batches', String(batches), '--repeats', String(repeats), '--warmup', String(warmup)],
    { maxBuffer: 1 << 20 },
  );
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as {
    version: string | null;
    python: string;
    pandas: string;
    times_s: number[];
    outputs: number;
    rows: number;
  };
  return {
    name: 'dplutils LocalSerialExecutor',
    version: `${r.version ?? '?'} (python ${r.python}, pandas ${r.pandas})`,
    times: r.times_s,
    outputs: r.outputs,
    rows: r.rows,
  };
}

async function main(): Promise<void> {
  const batches = Number(arg('batches', '2000'));
  const repeats = Number(arg('repeats', '5'));
  const warmup = Number(arg('warmup', '1'));
  const peerPath = arg('dplutils') ?? process.env.DPLUTILS_PATH;
  process.stdout.write(
    `bench:local: quickstart pipeline, ${batches} batches, ${repeats} timed runs after ${warmup} warm-up; ` +
      `${cpus().length} cores (${cpus()[0]?.model ?? '?'})\n\n`,
  );
  const results: Result[] = [await benchDpl(batches, repeats, warmup)];
  if (peerPath === undefined) {
    process.stdout.write('dplutils peer skipped: pass --dplutils PATH (a checkout of ssec-jhu/dplutils) or set DPLUTILS_PATH\n\n');
  } else if (!existsSync(join(peerPath, 'dplutils', '__init__.py'))) {
    process.stdout.write(`dplutils peer skipped: ${peerPath} is not a dplutils checkout (no dplutils/__init__.py)\n\n`);
  } else {
    results.push(await benchDplutils(peerPath, batches, repeats, warmup));
  }
  process.stdout.write(
    `${table(
      ['implementation', 'version', 'outputs', 'rows', 'median s', 'min s', 'max s', 'µs / batch'],
      results.map((r) => [
        r.name,
        r.version,
        String(r.outputs),
        String(r.rows),
        median(r.times).toFixed(3),
        Math.min(...r.times).toFixed(3),
        Math.max(...r.times).toFixed(3),
        ((median(r.times) / batches) * 1e6).toFixed(0),
      ]),
    )}\n`,
  );
  if (results.length === 2) {
    const ratio = median(results[1]!.times) / median(results[0]!.times);
    process.stdout.write(`\ndpl is ${ratio.toFixed(1)}x faster than dplutils (ratio of medians; goal >= 5x)\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:local failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
