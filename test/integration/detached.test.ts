/**
 * Detached jobs, with real processes: `dpl submit --detach` returns at once with the job's id;
 * the job runs on without its client, the head writing its outputs as parquet; `dpl job list`,
 * `status`, `logs [--follow]` and `stop`, and the same in the SDK.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@dpl/client';
import { readParquet, type OutputBatch } from '@dpl/core';

import { FIXTURES, killDplProcesses, runDpl, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'dpl-detached-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const jobIdOf = (stdout: string): string => /^job (\S+) runs on the head at/m.exec(stdout)?.[1] ?? '';

describe('a detached job', () => {
  it('runs on after its client exits, the head writing whole parquet files named as dpl submit -o names them; dpl job lists, shows and follows it', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const out = join(dir, 'out');
    const submitted = await runDpl(['submit', join(FIXTURES, 'ticking.ts'), '--address', head.address, '-n', '12', '-s', 'tick.kwargs.ms=150', '--detach', '-o', out]);
    expect(submitted.code).toBe(0); // the client has exited
    const id = jobIdOf(submitted.stdout);
    expect(id).not.toBe('');
    expect(submitted.stdout).toContain(`writing its outputs under ${out}`);
    // Running without its client: listed, and its output followed until it ends.
    const listed = await runDpl(['job', 'list', '--address', head.address]);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+running\\s+yes\\s`, 'm'));
    const followed = await runDpl(['job', 'logs', id, '--address', head.address, '--follow']);
    expect(followed.code).toBe(0);
    const ticks = followed.stdout.split('\n').filter((l) => /^\(task=tick worker=\S+\) tick \d+$/.test(l));
    expect(new Set(ticks.map((l) => l.split(' ').pop())).size).toBe(12); // every batch's line, each once
    const status = await runDpl(['job', 'status', id, '--address', head.address]);
    expect(status.stdout).toMatch(new RegExp(`^job ${id}: finished \\(detached\\)$`, 'm'));
    expect(status.stdout).toContain(`12 output batches, 12 rows, written under ${out}`);
    // The files: one per output, whole, with the ids 0-11.
    const files = readdirSync(out).sort();
    expect(files).toHaveLength(12);
    expect(files.every((f) => new RegExp(`^${id}-\\d+\\.parquet$`).test(f))).toBe(true);
    const ids = files.map((f) => Number(readParquet(readFileSync(join(out, f))).getChild('id')!.get(0))).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(readdirSync(out).some((f) => f.endsWith('.tmp'))).toBe(false);
  });

  it('is stopped by dpl job stop, and the SDK lists, follows and stops jobs too', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const job = await cluster.submitDetached(join(FIXTURES, 'ticking.ts'), { outDir: join(dir, 'sdk'), config: { 'tick.kwargs.ms': 100 }, onTaskOutput: false });
      expect((await cluster.jobs()).find((j) => j.id === job.id)).toMatchObject({ state: 'running', detached: true, outDir: join(dir, 'sdk') });
      // Endless (no maxBatches): follow a few lines, then stop it from the CLI.
      const seen: string[] = [];
      for await (const line of job.logs({ follow: true })) {
        seen.push(line);
        if (seen.length >= 3) break;
      }
      expect(seen[0]).toMatch(/^\(task=tick worker=\S+\) tick \d+$/);
      const stopped = await runDpl(['job', 'stop', job.id, '--address', head.address]);
      expect(stopped.code).toBe(0);
      expect(stopped.stdout.trim()).toBe(`job ${job.id}: cancelled`);
      await waitFor(async () => (await job.status()).state === 'cancelled', { what: 'the job to be cancelled' });
      expect(await job.stop()).toBe('cancelled'); // again: says how it ended
      await expect(cluster.job('nope').status()).rejects.toThrow('no job "nope" on the head at');
    } finally {
      await cluster.close();
    }
  });

  it('without -o holds its outputs for a client: each batch goes once, across attachments, and the rest waits for the next one', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '2']);
    await waitForWorkers(head.address, 1);
    const submitted = await runDpl(['submit', join(FIXTURES, 'ticking.ts'), '--address', head.address, '-n', '40', '-s', 'tick.kwargs.ms=20', '--detach', '-q']);
    expect(submitted.code).toBe(0);
    const id = jobIdOf(submitted.stdout);
    expect(submitted.stdout).toContain(`holding its outputs for a client (dpl job attach ${id} -o DIR)`);
    const cluster = await connect(head.address);
    const ids = (b: OutputBatch): number => Number(b.data.getChild('id')!.get(0));
    try {
      // With no client the job waits (16 outputs held), and does not finish.
      await new Promise((r) => setTimeout(r, 1_500));
      const waiting = await cluster.job(id).status();
      expect(waiting.state).toBe('running');
      expect(waiting.outputs).toBe(0);
      // A first client takes 10 and leaves; a second one at the same time is refused.
      const first = await cluster.job(id).attach({ onTaskOutput: false });
      await expect(cluster.job(id).attach({ onTaskOutput: false })).rejects.toThrow(`job ${id} already has a client attached; one at a time`);
      const taken: number[] = [];
      for await (const b of first) {
        taken.push(ids(b));
        if (taken.length === 10) break; // closes the run: what it did not take stays on the head
      }
      // The CLI takes the rest, into files.
      const out = join(dir, 'rest');
      const rest = await runDpl(['job', 'attach', id, '--address', head.address, '-o', out, '-q']);
      expect(rest.code).toBe(0);
      expect(rest.stdout).toContain(`took 30 batches of job ${id}, written under ${out}`);
      const files = readdirSync(out);
      const restIds = files.map((f) => Number(readParquet(readFileSync(join(out, f))).getChild('id')!.get(0)));
      expect([...taken, ...restIds].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
      await waitFor(async () => (await cluster.job(id).status()).state === 'finished', { what: 'the job to finish' });
      expect(await cluster.job(id).status()).toMatchObject({ outputs: 40, rows: 40 });
      await expect(cluster.job(id).attach()).rejects.toThrow(`job ${id} has ended (finished); nothing is left to attach to`);
    } finally {
      await cluster.close();
    }
  });

  it('is refused clearly: a folder the head cannot write, attaching to a job that streams to its client, an unknown job id', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const streaming = await cluster.submit(join(FIXTURES, 'ticking.ts'), { maxBatches: 3, onTaskOutput: false });
      const jobId = await streaming.accepted();
      await expect(cluster.job(jobId).attach()).rejects.toThrow('only a detached job without --out-dir can be attached to');
      for await (const _ of streaming) void _;
    } finally {
      await cluster.close();
    }
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const bad = await runDpl(['submit', join(FIXTURES, 'ticking.ts'), '--address', head.address, '--detach', '-o', join(file, 'out')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`the head cannot write a detached job's outputs under ${join(file, 'out')}`);
    expect(existsSync(join(file, 'out'))).toBe(false);
    const unknown = await runDpl(['job', 'status', 'nope', '--address', head.address]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('dpl: no job "nope" on the head at');
    const unknownLogs = await runDpl(['job', 'logs', 'nope', '--address', head.address]);
    expect(unknownLogs.code).toBe(1);
    expect(unknownLogs.stderr).toContain('dpl: no job "nope" on this head; dpl job list shows its jobs');
  });
});
