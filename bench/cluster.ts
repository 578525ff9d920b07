/**
 * Cluster benchmarks, each next to its reference measured in the same run:
 *  - transfer: a 64 MiB Arrow batch fetched from another process's dpl data server (the
 *    worker-to-worker path) against a raw TCP socket moving the same bytes between two processes,
 *    read three ways (Node 'data' events with a copy, Node `onread` straight into the
 *    destination, Python `recv_into` a preallocated buffer: the socket's limit here), and against
 *    Dask moving a pandas frame of the same size between its two worker processes;
 *  - hosts: the same transfer across hosts, each end in a network namespace of its own (veth
 *    pairs on a bridge; needs root, else skipped with the reason);
 *  - dispatch: no-op task calls per second through head → worker → executor → back, against a
 *    bare grpc-js bidi echo with the same number of calls in flight;
 *  - makespan: a DAG of sleep tasks with mixed resource requests on 3 workers, against its lower
 *    bound (total work / capacity per resource, and the critical path);
 *  - outputs: what an executor does with a task's output that concatenates its large inputs, or
 *    slices one (encoded from the inputs' buffers and written to a file in shared memory),
 *    against writing the same bytes as they are (what splicing the inputs' messages would write).
 *
 *   npm run bench:cluster [-- --mib 64 --repeats 5 --calls 2000 --batches 60 --only transfer,hosts,dispatch,makespan,outputs]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { makeHosts, type TestNetwork } from '../test/helpers/netns';
import { pythonPeer } from './lib';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect } from '@dpl/client';
import { startHead } from '@dpl/head';
import { startWorker } from '@dpl/worker';
import { cpus } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tableFromArrays } from 'apache-arrow';
import { concatTables, decodeIpc, encodeIpc, ipcStreamParts } from '@dpl/core';
import { writeAllSync } from '../packages/worker/src/executor/write-all';

const ROOT = join(__dirname, '..');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Starts a peer script and resolves with the words after "ready". `via` runs it through another
 * command (`ip netns exec HOST`: in a network namespace).
 */
function peer(script: string, args: string[], via: string[] = []): Promise<{ child: ChildProcess; words: string[] }> {
  const argv = [...via, process.execPath, join(ROOT, 'bench', 'peer', script), ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (.*)\n/.exec(out);
      if (m) resolve({ child, words: m[1]!.split(' ') });
    });
    child.on('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

/** Runs a Python peer that prints one JSON line with `times_ms`, or says why it could not. */
async function pythonTimes(script: string, args: string[], via: string[] = []): Promise<{ times: number[]; version?: string } | { skipped: string }> {
  try {
    const { json } = await pythonPeer<{ times_ms: number[]; version?: string }>(script, args, via);
    return { times: json.times_ms, version: json.version };
  } catch (e) {
    return { skipped: String((e as Error).message).split('\n')[0]!.slice(0, 120) };
  }
}

/** Where a transfer's two ends run: the serving end listens on `serverHost`. */
interface Ends {
  title: string;
  serverHost: string;
  serverVia: string[];
  readerVia: string[];
}

/**
 * One transfer table: bench/peer/data-peer.js serves the bytes (a dpl data server, and raw TCP);
 * bench/peer/fetch-peer.js and bench/peer/tcp_recv_into.py read them at the other end.
 */
async function transferBetween(mib: number, repeats: number, ends: Ends): Promise<{ rows: string[][]; dplMs: number }> {
  const { child, words } = await peer('data-peer.js', [String(mib), ends.serverHost], ends.serverVia);
  const [dataPort, tcpPort, size, shm] = words.map(Number) as [number, number, number, number];
  let reads: { dpl: number[]; dpl_shm: number[]; data: number[]; onread: number[] };
  let python: Awaited<ReturnType<typeof pythonTimes>>;
  try {
    const argv = [...ends.readerVia, process.execPath, join(ROOT, 'bench', 'peer', 'fetch-peer.js')];
    const { stdout } = await promisify(execFile)(argv[0]!, [
      ...argv.slice(1),
      ...['--data', `${ends.serverHost}:${dataPort}`, '--tcp', `${ends.serverHost}:${tcpPort}`, '--bytes', String(size), '--shm', String(shm), '--repeats', String(repeats)],
    ], { cwd: ROOT });
    reads = JSON.parse(stdout.trim().split('\n').pop()!) as typeof reads;
    python = await pythonTimes('tcp_recv_into.py', ['--host', ends.serverHost, '--port', String(tcpPort), '--repeats', String(repeats)], ends.readerVia);
  } finally {
    child.stdin!.end();
  }
  const rate = (ms: number) => ((size / 1024 / 1024) / (ms / 1000)).toFixed(0);
  const row = (name: string, times: number[]) => [name, `${median(times).toFixed(1)} ms`, `${rate(median(times))} MiB/s`];
  const rows = [
    row(`${ends.title}: dpl data plane (worker data server)`, reads.dpl),
    ...(reads.dpl_shm.length > 0 ? [row(`  the same, served from a shared-memory file (a task output)`, reads.dpl_shm)] : []),
    row(`  raw TCP, Node 'data' events + copy`, reads.data),
    row(`  raw TCP, Node onread into the destination`, reads.onread),
  ];
  const limits = [median(reads.data), median(reads.onread)];
  if ('times' in python) {
    rows.push(row(`  raw TCP, Python recv_into a preallocated buffer (the socket's limit)`, python.times));
    limits.push(median(python.times));
  } else rows.push(['  raw TCP, Python recv_into', 'skipped', python.skipped]);
  const fastest = Math.min(...limits);
  rows.push(['ratio dpl / fastest raw TCP reader (goal >= 80%)', '', `${((fastest / median(reads.dpl)) * 100).toFixed(0)}%`]);
  return { rows, dplMs: median(reads.dpl) };
}

/** On this host, over loopback, with Dask moving the same bytes between its two workers. */
async function transfer(mib: number, repeats: number): Promise<string[][]> {
  const { rows, dplMs } = await transferBetween(mib, repeats, { title: `transfer ${mib} MiB on one host`, serverHost: '127.0.0.1', serverVia: [], readerVia: [] });
  const dask = await pythonTimes('dask_transfer.py', ['--mib', String(mib), '--repeats', String(repeats)]);
  if ('times' in dask) {
    const size = mib * 1024 * 1024;
    rows.push([`  Dask ${dask.version ?? ''}, pandas frame between its 2 worker processes`, `${median(dask.times).toFixed(1)} ms`, `${((size / 1024 / 1024) / (median(dask.times) / 1000)).toFixed(0)} MiB/s`]);
    rows.push(['ratio dpl / Dask (goal >= 100%)', '', `${((median(dask.times) / dplMs) * 100).toFixed(0)}%`]);
  } else rows.push(['  Dask, 2 worker processes', 'skipped', dask.skipped]);
  return rows;
}

/**
 * Across hosts: each end in a network namespace of its own, joined by veth pairs on a bridge
 * (a real network path through the kernel's network stack, not loopback). Needs root.
 */
async function transferAcrossHosts(mib: number, repeats: number): Promise<string[][]> {
  let net: TestNetwork;
  try {
    net = makeHosts(2);
  } catch (e) {
    return [[`transfer ${mib} MiB across hosts`, 'skipped', String((e as Error).message).slice(0, 120)]];
  }
  try {
    const [a, b] = net.hosts as [TestNetwork['hosts'][0], TestNetwork['hosts'][0]];
    const { rows } = await transferBetween(mib, repeats, {
      title: `transfer ${mib} MiB across hosts (network namespaces, veth + bridge)`,
      serverHost: a.ip,
      serverVia: ['ip', 'netns', 'exec', a.name],
      readerVia: ['ip', 'netns', 'exec', b.name],
    });
    return rows;
  } finally {
    net.destroy();
  }
}

/** The same raw-bytes bidi method as bench/peer/echo-peer.js. */
const ECHO_SERVICE: grpc.ServiceDefinition = {
  Echo: {
    path: '/bench.Echo/Echo',
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

async function echoRate(calls: number, inFlight: number): Promise<number> {
  const { child, words } = await peer('echo-peer.js', []);
  const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
  const client = new Client(`127.0.0.1:${words[0]}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Echo: () => grpc.ClientDuplexStream<Buffer, Buffer>;
  };
  try {
    const stream = client.Echo();
    const msg = Buffer.alloc(64, 1);
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let sent = 0;
      let got = 0;
      stream.on('data', () => {
        got++;
        if (got === calls) resolve();
        else if (sent < calls) {
          sent++;
          stream.write(msg);
        }
      });
      for (; sent < inFlight; sent++) stream.write(msg);
    });
    const s = (performance.now() - t0) / 1000;
    await new Promise<void>((resolve) => {
      stream.on('error', () => resolve()); // the peer closing is not a failure of the measure
      stream.on('end', () => resolve());
      stream.on('status', () => resolve());
      stream.end();
    });
    return calls / s;
  } finally {
    client.close();
    child.stdin!.end();
  }
}

async function dispatch(calls: number, repeats: number): Promise<string[][]> {
  const workerCpus = arg('in-flight', 4);
  const head = await startHead({ port: 0 });
  const { token } = head;
  const worker = await startWorker({ address: head.address, token, numCpus: workerCpus });
  await worker.registered();
  const cluster = await connect(head.address, { token: head.token });
  const rates: number[] = [];
  try {
    for (let i = 0; i < repeats + 1; i++) {
      const run = await cluster.submit(join(ROOT, 'bench', 'pipelines', 'noop.ts'), { maxBatches: calls });
      const t0 = performance.now();
      let n = 0;
      for await (const _ of run) n++;
      const s = (performance.now() - t0) / 1000;
      if (n !== calls) throw new Error(`got ${n} outputs`);
      if (i > 0) rates.push(calls / s);
    }
  } finally {
    await cluster.close();
    await worker.stop();
    await head.stop();
  }
  const echo: number[] = [];
  for (let i = 0; i < repeats; i++) echo.push(await echoRate(calls, workerCpus));
  return [
    [`no-op tasks through head → worker → executor, ${workerCpus} in flight`, '', `${median(rates).toFixed(0)} tasks/s`],
    [`bare grpc-js bidi echo, ${workerCpus} in flight (reference)`, '', `${median(echo).toFixed(0)} msgs/s`],
    ['ratio dpl / echo (goal: >= 10,000 tasks/s)', '', `${((median(rates) / median(echo)) * 100).toFixed(1)}%`],
  ];
}

/**
 * Makespan of the sleepy DAG over `batches` source batches on 3 workers, against its lower
 * bound: the larger of (a) each resource's total busy time divided by the cluster's amount of
 * it, and (b) the critical path of one batch.
 */
async function makespan(batches: number): Promise<string[][]> {
  const head = await startHead({ port: 0 });
  const workers = await Promise.all([
    startWorker({ address: head.address, token: head.token, numCpus: 4, numGpus: 1 }),
    startWorker({ address: head.address, token: head.token, numCpus: 4 }),
    startWorker({ address: head.address, token: head.token, numCpus: 2, numGpus: 1 }),
  ]);
  await Promise.all(workers.map((w) => w.registered()));
  const cluster = await connect(head.address, { token: head.token });
  const times: number[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      const run = await cluster.submit(join(ROOT, 'bench', 'pipelines', 'sleepy.ts'), { maxBatches: batches });
      const t0 = performance.now();
      let n = 0;
      for await (const _ of run) n++;
      if (n !== 2 * batches) throw new Error(`got ${n} outputs`); // merge runs once per input: 2 per batch
      if (i > 0) times.push(performance.now() - t0); // the first run warms up executors
    }
  } finally {
    await cluster.close();
    await Promise.all(workers.map((w) => w.stop()));
    await head.stop();
  }
  // Per batch: prep 40 ms × 1 CPU; embed 60 ms × 1 GPU; score 50 ms × 2 CPU; merge 2 × 20 ms × 1 CPU.
  // A resource's work cannot start before the earliest task that needs it can (its head: the
  // critical path before it) nor end later than the shortest path after it allows (its tail), so
  // head + work / capacity + tail bounds the makespan from below, as does the critical path.
  const cpuMs = batches * (40 * 1 + 50 * 2 + 2 * 20 * 1);
  const gpuMs = batches * 60;
  const simple = Math.max(cpuMs / 10, gpuMs / 2, 40 + 60 + 20);
  const bound = Math.max(0 + cpuMs / 10 + 0, 40 + gpuMs / 2 + 20, 40 + 60 + 20);
  const measured = median(times);
  return [
    [`makespan, sleep DAG × ${batches} batches on 3 workers (10 CPU, 2 GPU)`, `${measured.toFixed(0)} ms`, ''],
    ['lower bound: max(work / capacity per resource, critical path)', `${simple.toFixed(0)} ms`, ''],
    ['ratio makespan / that bound (goal <= 1.10)', '', `${(measured / simple).toFixed(2)}x`],
    ['tighter lower bound: max over resources of head + work / capacity + tail', `${bound.toFixed(0)} ms`, ''],
    ['ratio makespan / tighter bound', '', `${(measured / bound).toFixed(2)}x`],
  ];
}

/**
 * A concatenation of four inputs of `mib / 4` MiB each and a slice of half of one, encoded and
 * written as an executor writes an output to shared memory, next to a write of the same bytes.
 */
function outputs(mib: number, repeats: number): string[][] {
  const rowsPer = Math.floor((mib / 4) * 1024 * 1024 / 12); // a float64 and an int32 column
  const inputs = Array.from({ length: 4 }, (_, k) =>
    encodeIpc(tableFromArrays({ x: Float64Array.from({ length: rowsPer }, (_, i) => i + k), y: Int32Array.from({ length: rowsPer }, (_, i) => i) })),
  );
  const dir = mkdtempSync('/dev/shm/dpl-bench-');
  let n = 0;
  const timed = (write: () => Uint8Array[]): number => {
    const t0 = performance.now();
    const parts = write();
    const file = join(dir, String(++n));
    writeAllSync(file, parts);
    const ms = performance.now() - t0;
    rmSync(file);
    return ms;
  };
  const cat: number[] = [], catRaw: number[] = [], slice: number[] = [], sliceRaw: number[] = [];
  try {
    for (let r = 0; r <= repeats; r++) {
      const tables = inputs.map((b) => decodeIpc(b)); // as the executor reads them: views on the bytes
      const keep = r > 0; // the first round warms up
      const a = timed(() => ipcStreamParts(concatTables(tables))!.parts);
      const b = timed(() => inputs);
      const c = timed(() => ipcStreamParts(tables[0]!.slice(rowsPer / 4, (3 * rowsPer) / 4))!.parts);
      const d = timed(() => [inputs[0]!.subarray(0, inputs[0]!.byteLength / 2)]);
      if (keep) {
        cat.push(a);
        catRaw.push(b);
        slice.push(c);
        sliceRaw.push(d);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const total = inputs.reduce((t, b) => t + b.byteLength, 0) / 1024 / 1024;
  const row = (name: string, times: number[], size: number) => [name, `${median(times).toFixed(1)} ms`, `${(size / (median(times) / 1000)).toFixed(0)} MiB/s`];
  return [
    [`outputs made of ${mib} MiB of inputs, written to /dev/shm`, '', ''],
    row('  concatenation of 4 inputs, encoded from their buffers (what an executor does)', cat, total),
    row('  the 4 inputs\' bytes written as they are (what splicing would write)', catRaw, total),
    row('  half of one input (a slice), encoded from its buffers', slice, total / 8),
    row('  as many bytes written as they are', sliceRaw, total / 8),
  ];
}

function table(rows: string[][]): string {
  const header = ['measure', 'median time', 'median rate'];
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  return [line(header), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const mib = arg('mib', 64);
  const repeats = arg('repeats', 5);
  const calls = arg('calls', 2000);
  process.stdout.write(`bench:cluster: ${repeats} timed repeats after 1 warm-up; ${cpus().length} cores (${cpus()[0]?.model ?? '?'})\n\n`);
  const i = process.argv.indexOf('--only');
  const only = i >= 0 ? (process.argv[i + 1] ?? '').split(',') : ['transfer', 'hosts', 'dispatch', 'makespan', 'outputs'];
  const rows: string[][] = [];
  if (only.includes('transfer')) rows.push(...(await transfer(mib, repeats)));
  if (only.includes('hosts')) rows.push(...(await transferAcrossHosts(mib, repeats)));
  if (only.includes('dispatch')) rows.push(...(await dispatch(calls, Math.min(repeats, 3))));
  if (only.includes('makespan')) rows.push(...(await makespan(arg('batches', 60))));
  if (only.includes('outputs')) rows.push(...outputs(mib, repeats));
  process.stdout.write(`${table(rows)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:cluster failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
