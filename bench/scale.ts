/**
 * The scale simulation: N simulated workers (in this process, speaking the real protocol over
 * gRPC: register, heartbeat every second, answer no-op task calls) join one head (a real `dpl
 * head start` process), for N = 10, 100 and 1,000. For each N it reports the head's CPU and
 * memory while the workers only heartbeat, the heartbeats it handled per second, and placement
 * latency (p50/p99, from the head's own histogram) while a job of no-op calls runs.
 *
 *   npm run bench:scale [-- --sizes 10,100,1000 --calls 3000 --idle-s 5]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect, tokenFor } from '@dpl/client';
import {
  CHANNEL_OPTIONS,
  loadDplProto,
  resourcesToProto,
  tokenMetadata,
  type ConnectWorkerRequest__Input,
  type ConnectWorkerResponse,
  type HeadServiceClient,
} from '@dpl/wire';
import { dashboardAddress, prometheusSamples } from '../test/helpers/metrics';

const ROOT = join(__dirname, '..');
const DPL = join(ROOT, 'packages', 'cli', 'bin', 'dpl.js');
const TICKS_PER_S = 100; // Linux USER_HZ

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

function startHead(): Promise<{ child: ChildProcess; address: string; dashboard: string }> {
  const child = spawn(process.execPath, [DPL, 'head', 'start', '--port', '0', '--dashboard-port', '0', '-v', 'error'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const a = /dpl head listening on (\S+)/.exec(out);
      if (a && /status API: /.test(out)) resolve({ child, address: a[1]!, dashboard: dashboardAddress(out) });
    });
    child.on('exit', (code) => reject(new Error(`the head exited with ${code}`)));
  });
}

/** CPU seconds (user + system) and resident MiB of a process. */
function usage(pid: number): { cpuS: number; rssMib: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuS, rssMib: Number(rss?.[1] ?? NaN) / 1024 };
}

/** A simulated worker: registers, heartbeats every second, answers every call at once. */
function simulateWorker(client: HeadServiceClient, k: number, token: string | undefined): { registered: Promise<void>; stop: () => void } {
  const session: grpc.ClientDuplexStream<ConnectWorkerRequest__Input, ConnectWorkerResponse> = client.ConnectWorker(tokenMetadata(token));
  let beat: NodeJS.Timeout | undefined;
  let seq = 0;
  const registered = new Promise<void>((resolve, reject) => {
    session.on('data', (m: ConnectWorkerResponse) => {
      if (m.msg === 'registered') {
        // Spread the heartbeats over the second, as real workers started at different times are.
        setTimeout(() => {
          beat = setInterval(() => session.write({ heartbeat: { seq: String(++seq), sent_at_ms: String(Date.now()) } }), m.registered!.heartbeat_interval_ms);
        }, Math.random() * m.registered!.heartbeat_interval_ms);
        resolve();
      } else if (m.msg === 'assign_batch') {
        // No-op tasks: each output is its (inline) input; the answers of a batch go together.
        const done = m.assign_batch!.calls.map((a) => {
          const input = a.inputs[0]!.inline_ipc;
          return { call_id: a.call_id, job_id: a.job_id, output_id: '', rows: a.inputs[0]!.rows, bytes: String(input.byteLength), inline_ipc: input, assignment: a.assignment };
        });
        session.write({ results: { done, failed: [] } });
      }
    });
    session.on('error', (e) => reject(e));
  });
  session.write({
    register: { data_address: `10.0.${Math.floor(k / 250)}.${k % 250}:7000`, hostname: `sim-${k}`, pid: k, resources: resourcesToProto({ CPU: 1 }), version: 'sim' },
  });
  return {
    registered,
    stop: () => {
      clearInterval(beat);
      session.cancel();
    },
  };
}

/** Samples of the head's Prometheus text, by series. */
async function scrape(dashboard: string, token: string | undefined): Promise<Map<string, number>> {
  const headers = token === undefined ? undefined : { authorization: `Bearer ${token}` };
  return prometheusSamples(await (await fetch(`http://${dashboard}/metrics`, { headers })).text());
}

/** A quantile from cumulative histogram buckets, interpolated linearly inside its bucket. */
function quantile(m: Map<string, number>, name: string, q: number): number {
  const buckets = [...m]
    .filter(([k]) => k.startsWith(`${name}_bucket{le="`))
    .map(([k, v]) => ({ le: k.includes('+Inf') ? Infinity : Number(/le="([^"]+)"/.exec(k)![1]), n: v }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.n ?? 0;
  const want = q * total;
  let prevLe = 0;
  let prevN = 0;
  for (const b of buckets) {
    if (b.n >= want) {
      if (b.le === Infinity) return prevLe;
      return prevLe + ((want - prevN) / Math.max(1, b.n - prevN)) * (b.le - prevLe);
    }
    prevLe = b.le;
    prevN = b.n;
  }
  return prevLe;
}

async function measure(n: number, calls: number, idleS: number): Promise<string[]> {
  const head = await startHead();
  const { HeadService } = loadDplProto();
  // Simulated workers share a few connections (as many workers behind one NAT would not, but the
  // head's cost per worker is per stream, which this keeps).
  const channels = Array.from({ length: Math.ceil(n / 100) }, (_, i) => new HeadService(head.address, grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, 'grpc.channel_id': i }));
  const base = usage(head.child.pid!);
  // The token of the head this user just started here (from its record, as any local client).
  const token = tokenFor(head.address, undefined);
  const workers = Array.from({ length: n }, (_, k) => simulateWorker(channels[k % channels.length]!, k, token));
  try {
    await Promise.all(workers.map((w) => w.registered));
    await new Promise((r) => setTimeout(r, 1500)); // every worker is heartbeating
    const m0 = await scrape(head.dashboard, token);
    const u0 = usage(head.child.pid!);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, idleS * 1000));
    const u1 = usage(head.child.pid!);
    const m1 = await scrape(head.dashboard, token);
    const idleSeconds = (performance.now() - t0) / 1000;
    const beats = (m1.get('dpl_heartbeat_latency_seconds_count') ?? 0) - (m0.get('dpl_heartbeat_latency_seconds_count') ?? 0);

    const cluster = await connect(head.address);
    const j0 = performance.now();
    let got = 0;
    for await (const _ of await cluster.submit(join(ROOT, 'bench', 'pipelines', 'noop.ts'), { maxBatches: calls })) got++;
    const jobS = (performance.now() - j0) / 1000;
    await cluster.close();
    if (got !== calls) throw new Error(`got ${got} of ${calls} outputs`);
    const m2 = await scrape(head.dashboard, token);
    const p50 = quantile(m2, 'dpl_placement_seconds', 0.5) * 1e6;
    const p99 = quantile(m2, 'dpl_placement_seconds', 0.99) * 1e6;
    return [
      String(n),
      `${(((u1.cpuS - u0.cpuS) / idleSeconds) * 100).toFixed(1)} %`,
      `${u1.rssMib.toFixed(1)} MiB`,
      `${((u1.rssMib - base.rssMib) * 1024 / n).toFixed(1)} KiB`,
      `${(beats / idleSeconds).toFixed(0)} /s`,
      `${p50.toFixed(1)} µs`,
      `${p99.toFixed(1)} µs`,
      `${(calls / jobS).toFixed(0)} /s`,
    ];
  } finally {
    for (const w of workers) w.stop();
    for (const c of channels) c.close();
    head.child.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  const sizes = arg('sizes', '10,100,1000').split(',').map(Number);
  const calls = Number(arg('calls', '3000'));
  const idleS = Number(arg('idle-s', '5'));
  process.stdout.write(`bench:scale: simulated workers (1 CPU each, heartbeat 1 s) on one head process; ${calls} no-op calls per size\n\n`);
  const header = ['workers', 'head CPU (heartbeats only)', 'head RSS', 'RSS per worker', 'heartbeats handled', 'placement p50', 'placement p99 (goal < 1 ms at 1,000)', 'no-op calls'];
  const rows: string[][] = [];
  for (const n of sizes) rows.push(await measure(n, calls, idleS));
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  process.stdout.write([line(header), `|${w.map((k) => '-'.repeat(k + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n');
  process.stdout.write('\nRSS per worker: (head RSS with N workers - head RSS before any) / N.\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:scale failed: ${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
