/**
 * The multi-host path: a head and two workers, each on its own host (a network namespace with
 * its own address), and a client on a third host. Batches move between the workers over the
 * network; nothing relies on loopback. Skipped, saying why, where namespaces cannot be made.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { readParquet } from '@dpl/core';
import { DPL_MAIN, FIXTURES, REPO_ROOT, useTempDirs, waitFor } from '../helpers/cli';
import { makeHosts, type TestNetwork } from '../helpers/netns';

let net: TestNetwork | undefined;
let why = '';
try {
  net = makeHosts(6);
} catch (e) {
  why = (e as Error).message;
}
afterAll(() => net?.destroy());
const tempDir = useTempDirs('dpl-netns-');

type Host = TestNetwork['hosts'][number];

/** `dpl …` inside a host's namespace. */
const inHost = (host: string, args: string[]) => ['netns', 'exec', host, process.execPath, DPL_MAIN, ...args];

const maybe = net === undefined ? it.skip : it;
if (net === undefined) {
  console.warn(`multi-host test skipped: ${why}`);
}

describe('a cluster across network namespaces', () => {
  maybe('runs a pipeline whose batches cross hosts, with the head reachable only by its address', async () => {
    const [h, w1, w2, client] = net!.hosts as [Host, Host, Host, Host];
    const env = { DPL_TOKEN: 'multi-host-token' };
    const head = startIp(inHost(h.name, ['head', 'start', '--host', h.ip, '--port', '6380', '--dashboard-port', '0']), env);
    await waitFor(() => /dpl head listening on (\S+)/.test(head.out()), { timeoutMs: 15_000, what: 'the head' });
    const address = `${h.ip}:6380`;
    startIp(inHost(w1.name, ['worker', 'start', '--address', address, '--num-cpus', '1', '--resources', '{"maker":1}']), env);
    startIp(inHost(w2.name, ['worker', 'start', '--address', address, '--num-cpus', '1', '--resources', '{"shrinker":1}']), env);
    await waitFor(
      async () => {
        const r = await runIp(inHost(client.name, ['status', '--address', address, '--json']), env);
        if (r.code !== 0) return false;
        const s = JSON.parse(r.stdout) as { workers: { state: string; address: string }[] };
        return s.workers.filter((w) => w.state === 'alive').length === 2;
      },
      { timeoutMs: 20_000, intervalMs: 250, what: 'two workers' },
    );
    const status = JSON.parse((await runIp(inHost(client.name, ['status', '--address', address, '--json']), env)).stdout) as {
      workers: { address: string }[];
    };
    // Each worker advertises its own host's address for its data server, not loopback.
    expect(status.workers.map((w) => w.address.split(':')[0]).sort()).toEqual([w1.ip, w2.ip].sort());

    const dir = await tempDir();
    const r = await runIp(
      inHost(client.name, ['submit', join(FIXTURES, 'big-intermediate.ts'), '--address', address, '-n', '3', '-o', dir]),
      env,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/finished in .* s: 3 batches, 3 rows/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.parquet'))).toHaveLength(3);

    // Without the token, a client on another host is refused (its own, empty run folder: the
    // namespaces share this machine's files, other hosts would not).
    const intruder = await runIp(inHost(client.name, ['status', '--address', address]), { DPL_TOKEN: undefined, DPL_RUN_DIR: await tempDir() });
    expect(intruder.code).toBe(1);
    expect(intruder.stderr).toMatch(/refused the token/);
  });
});

describe('a cluster of five hosts', () => {
  maybe('runs a pipeline across a head and four workers, each on its own host and address', async () => {
    const [h, w1, w2, w3, w4, client] = net!.hosts as [Host, Host, Host, Host, Host, Host];
    const env = { DPL_TOKEN: 'scale-token' };
    startIp(inHost(h.name, ['head', 'start', '--host', h.ip, '--port', '6382', '--dashboard-port', '0']), env);
    const address = `${h.ip}:6382`;
    for (const w of [w1, w2, w3, w4]) {
      startIp(inHost(w.name, ['worker', 'start', '--address', address, '--num-cpus', '2', '--resources', '{"maker":1,"taker":1}']), env);
    }
    let workers: { address: string }[] = [];
    await waitFor(
      async () => {
        const r = await runIp(inHost(client.name, ['status', '--address', address, '--json']), env);
        if (r.code !== 0) return false;
        workers = (JSON.parse(r.stdout) as { workers: { state: string; address: string }[] }).workers.filter((w) => w.state === 'alive');
        return workers.length === 4;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: 'four workers' },
    );
    expect(workers.map((w) => w.address.split(':')[0]).sort()).toEqual([w1.ip, w2.ip, w3.ip, w4.ip].sort());
    const dir = await tempDir();
    const n = 24;
    const r = await runIp(inHost(client.name, ['submit', join(FIXTURES, 'relay.ts'), '--address', address, '-n', String(n), '-o', dir, '-q']), env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const makers = new Set<number>();
    const ids: number[] = [];
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.parquet'))) {
      const t = readParquet(await readFile(join(dir, f)));
      ids.push(Number(t.getChild('id')!.get(0)));
      makers.add(Number(t.getChild('maker_pid')!.get(0)));
    }
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    // Every worker made batches: the work spread over the four hosts.
    expect(makers.size).toBe(4);
  });
});

describe('a network partition', () => {
  maybe('detects a worker cut off mid-run within the heartbeat timeout, and still delivers every batch once', async () => {
    const [h, m1, m2, taker, client] = net!.hosts as [Host, Host, Host, Host, Host];
    const env = { DPL_TOKEN: 'partition-token' };
    const timeoutMs = 1500;
    startIp(
      inHost(h.name, ['head', 'start', '--host', h.ip, '--port', '6381', '--dashboard-port', '0', '--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', String(timeoutMs)]),
      env,
    );
    const address = `${h.ip}:6381`;
    const aliveWorkers = async (): Promise<number> => {
      const r = await runIp(inHost(client.name, ['status', '--address', address, '--json']), env);
      if (r.code !== 0) return -1;
      return (JSON.parse(r.stdout) as { workers: { state: string }[] }).workers.filter((w) => w.state === 'alive').length;
    };
    await waitFor(async () => (await aliveWorkers()) === 0, { timeoutMs: 15_000, intervalMs: 250, what: 'the head' });
    for (const m of [m1, m2]) startIp(inHost(m.name, ['worker', 'start', '--address', address, '--num-cpus', '2', '--resources', '{"maker":2}']), env);
    startIp(inHost(taker.name, ['worker', 'start', '--address', address, '--num-cpus', '2', '--resources', '{"taker":2}']), env);
    await waitFor(async () => (await aliveWorkers()) === 3, { timeoutMs: 20_000, intervalMs: 250, what: 'three workers' });

    const dir = await tempDir();
    const n = 40;
    const submit = runIp(inHost(client.name, ['submit', join(FIXTURES, 'relay.ts'), '--address', address, '-n', String(n), '-o', dir]), env);
    await waitFor(() => readdirSync(dir).filter((f) => f.endsWith('.parquet')).length >= 8, { timeoutMs: 30_000, what: 'the first outputs' });
    const cutAt = Date.now();
    net!.cut(m1.name);
    await waitFor(async () => (await aliveWorkers()) === 2, { timeoutMs: 20_000, intervalMs: 100, what: 'the head to notice the partition' });
    const detectedMs = Date.now() - cutAt;
    // Within the configured timeout, with room for the sweep period and a slow machine.
    expect(detectedMs).toBeLessThan(2 * timeoutMs + 1000);

    const r = await submit;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`finished in .* s: ${n} batches, ${n} rows`));
    const files = readdirSync(dir).filter((f) => f.endsWith('.parquet'));
    expect(files).toHaveLength(n);
    const ids: number[] = [];
    for (const f of files) {
      const t = readParquet(await readFile(join(dir, f)));
      ids.push(Number(t.getChild('id')!.get(0)));
      expect(Number(t.getChild('rows')!.get(0))).toBe(2000);
    }
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
  });
});

// `ip netns exec` processes, killed after each test.
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

function startIp(args: string[], env: Record<string, string | undefined>): { child: ChildProcess; out: () => string } {
  const full: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
  const child = spawnChild('ip', args, { cwd: REPO_ROOT, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  child.on('close', () => children.delete(child));
  return { child, out: () => out };
}

function runIp(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const full: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
  return new Promise((resolve) => {
    const child = spawnChild('ip', args, { cwd: REPO_ROOT, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}
