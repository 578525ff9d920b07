/**
 * Cluster benchmarks, each next to its reference measured in the same run:
 *  - transfer: a 64 MiB Arrow batch fetched from another process's dpl data server (the
 *    worker-to-worker path) against a raw TCP socket moving the same bytes between two processes,
 *    read three ways (Node 'data' events with a copy, Node `onread` straight into the
 *    destination, Python `recv_into` a preallocated buffer: the socket's limit here), and against
 *    Dask moving a pandas frame of the same size between its two worker processes;
 *  - dispatch: no-op task calls per second through head → worker → executor → back, against a
 *    bare grpc-js bidi echo with the same number of calls in flight;
 *  - makespan: a DAG of sleep tasks with mixed resource requests on 3 workers, against its lower
 *    bound (total work / capacity per resource, and the critical path).
 *
 *   npm run bench:cluster [-- --mib 64 --repeats 5 --calls 2000 --batches 60 --only transfer,dispatch,makespan]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { pythonPeer } from './lib';
import net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect } from '@dpl/client';
import { startHead } from '@dpl/head';
import { startWorker } from '@dpl/worker';
import { ObjectFetcher } from '@dpl/wire';
import { cpus } from 'node:os';

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

/** Starts a peer script and resolves with the words after "ready". */
function peer(script: string, args: string[]): Promise<{ child: ChildProcess; words: string[] }> {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'peer', script), ...args], {
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

function rawTcpFetch(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf: Uint8Array | undefined;
    let at = 0;
    let header = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (buf === undefined) {
        header = Buffer.concat([header, chunk]);
        if (header.length < 8) return;
        buf = new Uint8Array(Number(header.readBigUInt64LE(0)));
        chunk = header.subarray(8);
      }
      buf.set(chunk, at);
      at += chunk.length;
    });
    socket.on('end', () => resolve(at));
    socket.on('error', reject);
  });
}

/** Node's fastest read: `onread` with the destination's next slice, so no chunk is copied. */
function rawTcpOnread(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const scratch = Buffer.alloc(64 * 1024);
    let dest: Buffer | undefined;
    let at = 0;
    let header = Buffer.alloc(0);
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      onread: {
        buffer: () => (dest === undefined || at >= dest.byteLength ? scratch : dest.subarray(at)),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (dest === undefined) {
            header = Buffer.concat([header, buf.subarray(0, n)]);
            if (header.length < 8) return true;
            dest = Buffer.allocUnsafe(Number(header.readBigUInt64LE(0)));
            const rest = header.subarray(8);
            rest.copy(dest, 0);
            at = rest.length;
          } else at += n;
          return true;
        },
      },
    });
    socket.on('end', () => resolve(at));
    socket.on('error', reject);
  });
}

/** Runs a Python peer that prints one JSON line with `times_ms`, or says why it could not. */
async function pythonTimes(script: string, args: string[]): Promise<{ times: number[]; version?: string } | { skipped: string }> {
  try {
    const { json } = await pythonPeer<{ times_ms: number[]; version?: string }>(script, args);
    return { times: json.times_ms, version: json.version };
  } catch (e) {
    return { skipped: String((e as Error).message).split('\n')[0]!.slice(0, 120) };
  }
}

async function transfer(mib: number, repeats: number): Promise<string[][]> {
  const { child, words } = await peer('data-peer.js', [String(mib)]);
  const [dataPort, tcpPort, size, shm] = words.map(Number) as [number, number, number, number];
  const fetcher = new ObjectFetcher(undefined);
  const dpl: number[] = [];
  const dplShm: number[] = [];
  const tcp: number[] = [];
  const onread: number[] = [];
  let python: Awaited<ReturnType<typeof pythonTimes>>;
  try {
    for (let i = 0; i < repeats + 1; i++) {
      let t0 = performance.now();
      const got = await fetcher.fetch(`127.0.0.1:${dataPort}`, 'big');
      const a = performance.now() - t0;
      t0 = performance.now();
      const n = await rawTcpFetch(tcpPort);
      const b = performance.now() - t0;
      t0 = performance.now();
      const m = await rawTcpOnread(tcpPort);
      const c = performance.now() - t0;
      t0 = performance.now();
      const fromFile = shm === 1 ? await fetcher.fetch(`127.0.0.1:${dataPort}`, 'big-shm') : got;
      const d = performance.now() - t0;
      if (got.byteLength !== size || n !== size || m !== size || fromFile.byteLength !== size) throw new Error('short transfer');
      if (i > 0) {
        dpl.push(a);
        if (shm === 1) dplShm.push(d);
        tcp.push(b);
        onread.push(c);
      }
    }
    python = await pythonTimes('tcp_recv_into.py', ['--port', String(tcpPort), '--repeats', String(repeats)]);
  } finally {
    fetcher.close();
    child.stdin!.end();
  }
  const dask = await pythonTimes('dask_transfer.py', ['--mib', String(mib), '--repeats', String(repeats)]);
  const rate = (ms: number) => ((size / 1024 / 1024) / (ms / 1000)).toFixed(0);
  const row = (name: string, times: number[]) => [name, `${median(times).toFixed(1)} ms`, `${rate(median(times))} MiB/s`];
  const rows = [
    row(`transfer ${mib} MiB, dpl data plane (worker data server)`, dpl),
    ...(dplShm.length > 0 ? [row(`  the same, served from a shared-memory file (a task output)`, dplShm)] : []),
    row(`  raw TCP, Node 'data' events + copy`, tcp),
    row(`  raw TCP, Node onread into the destination`, onread),
  ];
  const limits = [median(tcp), median(onread)];
  if ('times' in python) {
    rows.push(row(`  raw TCP, Python recv_into a preallocated buffer (the socket's limit)`, python.times));
    limits.push(median(python.times));
  } else rows.push(['  raw TCP, Python recv_into', 'skipped', python.skipped]);
  const fastest = Math.min(...limits);
  rows.push(['ratio dpl / fastest raw TCP reader (goal >= 80%)', '', `${((fastest / median(dpl)) * 100).toFixed(0)}%`]);
  if ('times' in dask) {
    rows.push(row(`  Dask ${dask.version ?? ''}, pandas frame between its 2 worker processes`, dask.times));
    rows.push(['ratio dpl / Dask (goal >= 100%)', '', `${((median(dask.times) / median(dpl)) * 100).toFixed(0)}%`]);
  } else rows.push(['  Dask, 2 worker processes', 'skipped', dask.skipped]);
  return rows;
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
  const only = i >= 0 ? (process.argv[i + 1] ?? '').split(',') : ['transfer', 'dispatch', 'makespan'];
  const rows: string[][] = [];
  if (only.includes('transfer')) rows.push(...(await transfer(mib, repeats)));
  if (only.includes('dispatch')) rows.push(...(await dispatch(calls, Math.min(repeats, 3))));
  if (only.includes('makespan')) rows.push(...(await makespan(arg('batches', 60))));
  process.stdout.write(`${table(rows)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:cluster failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
