/**
 * What an attacker on this machine (another local user, or anyone who can open a connection)
 * tried against real heads and workers, each as a test: requests meant to crash the head,
 * another user reaching a token-less head, a poisoned module cache, planted daemon records, the
 * token read by task code, connection floods, and numbers that overflow. The cases that need a
 * second local user run a client as uid 65534 (root only) and are skipped, saying why, otherwise.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { connect, tokenFor } from '@dpl/client';
import { column, isDplError, type OutputBatch } from '@dpl/core';
import { FIXTURES, killDplProcesses, runDpl, startDpl, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';
import { dashboardAddress } from '../helpers/metrics';
import { rejectionOf } from '../helpers/errors';

afterEach(killDplProcesses);
const tempDir = useTempDirs('dpl-attack-');

const isRoot = process.getuid?.() === 0;
const asRoot = isRoot ? it : it.skip;
if (!isRoot) console.warn('attack tests as another local user skipped: they need root (to run a client as uid 65534)');

/** Sends raw bytes to `port` and resolves with what came back before the connection closed (or 2 s). */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const done = (): void => {
      socket.destroy();
      resolve(got);
    };
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', done);
    socket.on('close', done);
    setTimeout(done, 2_000).unref();
  });
}

/**
 * Opens `n` TCP connections to `port` that send nothing, in waves of 250 (a burst of thousands
 * of SYNs would overflow the listen queue, and the kernel's retries take seconds); resolves once
 * all have connected or failed.
 */
async function flood(port: number, n: number): Promise<{ sockets: net.Socket[]; closed: () => number }> {
  const sockets: net.Socket[] = [];
  let closed = 0;
  for (let at = 0; at < n; at += 250) {
    await Promise.all(
      Array.from(
        { length: Math.min(250, n - at) },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect(port, '127.0.0.1');
            sockets.push(s);
            s.on('connect', () => resolve());
            s.on('error', () => resolve());
            s.on('close', () => {
              closed++;
              resolve();
            });
          }),
      ),
    );
  }
  return { sockets, closed: () => closed };
}

const portOf = (address: string): number => Number(address.split(':').pop());
const text = (b: OutputBatch, name: string): string => String(column(b.data, name).get(0));

describe('requests meant to crash the head', () => {
  it('answers a malformed cookie, a broken request line and other junk with 4xx while its jobs run on', async () => {
    const head = await startHeadProcess();
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2,"taker":2}']);
    await waitForWorkers(head.address, 1);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 20 });
      const out: OutputBatch[] = [];
      const drained = (async () => {
        for await (const b of run) out.push(b);
      })();
      const port = portOf(dashboard);
      const host = `Host: 127.0.0.1:${port}\r\n`;
      const cookie = await fetch(`http://${dashboard}/api/status`, { headers: { cookie: 'dpl_token=%E0%A4%A' } });
      expect(cookie.status).toBe(401);
      expect(await rawExchange(port, `GET http://[::1 HTTP/1.1\r\n${host}\r\n`)).toMatch(/^HTTP\/1\.1 400 /);
      expect(await rawExchange(port, 'NOT A REQUEST\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
      expect(await rawExchange(port, `GET / HTTP/1.1\r\n${host}X: ${'a'.repeat(64 * 1024)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 4\d\d /);
      expect(await rawExchange(port, `POST /api/status HTTP/1.1\r\n${host}content-length: 3\r\n\r\nabc`)).toMatch(/^HTTP\/1\.1 405 /);
      expect(await rawExchange(port, `GET /%E0%A4%A HTTP/1.1\r\n${host}\r\n`)).toMatch(/^HTTP\/1\.1 (401|404) /);
      await drained;
      expect(out).toHaveLength(20);
      expect((await cluster.status()).jobs.at(-1)?.state).toBe('finished');
      expect(head.process.child.exitCode).toBeNull();
    } finally {
      await cluster.close();
    }
  });

  it('serves its pages with a strict policy, and only to requests that name this machine when on loopback', async () => {
    const head = await startHeadProcess();
    const dashboard = dashboardAddress(head.process.stdout);
    const port = portOf(dashboard);
    const token = tokenFor(head.address, undefined)!;
    const page = await fetch(`http://${dashboard}/`);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'sha256-[^']+'; .*frame-ancestors 'none'/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    // DNS rebinding: a page of attacker.example whose name now points at 127.0.0.1 is refused,
    // even with the token in hand; the names of this machine are served.
    const rebound = await rawExchange(port, `GET /api/status HTTP/1.1\r\nHost: attacker.example:${port}\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    expect(rebound).toMatch(/^HTTP\/1\.1 403 /);
    expect(rebound).toContain('is not this head');
    for (const name of ['127.0.0.1', 'localhost', '[::1]']) {
      const ok = await rawExchange(port, `GET /api/status HTTP/1.1\r\nHost: ${name}:${port}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    }
  });
});

describe('many viewers at once', () => {
  it('share one dashboard payload a second: 1,000 concurrent requests do not stall the head into losing its workers', async () => {
    const head = await startHeadProcess(['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500']);
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    const before = await waitForWorkers(head.address, 1);
    const auth = { headers: { authorization: `Bearer ${tokenFor(head.address, undefined)}` } };
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: 1_000 }, () =>
          fetch(`http://${dashboard}/api/dashboard`, auth).then(
            async (r) => (await r.arrayBuffer(), r.status),
            () => 0, // shed at the connection limits
          ),
        ),
      );
      expect(answers.filter((c) => c !== 0 && c !== 200)).toEqual([]);
      // Right after the burst the head answers again.
      await waitFor(async () => (await fetch(`http://${dashboard}/api/dashboard`, auth).catch(() => undefined))?.status === 200, {
        timeoutMs: 5_000,
        what: 'the dashboard to answer after the burst',
      });
    }
    const after = await statusOf(head.address);
    expect(after.workers.map((w) => [w.id, w.state])).toEqual([[before.workers[0]!.id, 'alive']]);
  });
});

describe('a head with no token given', () => {
  it('has one all the same: the user\'s own, found by the user\'s clients and workers here and by no one else', async () => {
    // A run folder of this test's own: `dpl status` with no flags picks the only head in it.
    const env = { DPL_TOKEN: undefined, DPL_ADDRESS: undefined, DPL_RUN_DIR: await tempDir() };
    const head = await startHeadProcess([], env);
    expect(head.process.stdout).toMatch(/token: yours, in \S+token/);
    startWorkerProcess(head.address, ['--num-cpus', '1'], env); // finds it by itself
    const token = (await runDpl(['head', 'token'], { env })).stdout.trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await waitForWorkers(head.address, 1, token);
    const status = await runDpl(['status', '--json'], { env });
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { workers: unknown[] }).workers).toHaveLength(1);
    // Someone without it is refused.
    const e = await rejectionOf(connect(head.address, { token: 'guess', timeoutMs: 2_000 }));
    expect(isDplError(e, 'UNAUTHENTICATED')).toBe(true);
  });

  asRoot('refuses another local user (uid 65534) who found the port, and runs nothing for them', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: undefined });
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const marker = join(await tempDir(), 'ran');
    const r = spawnSync(process.execPath, [join(FIXTURES, 'other-user-client.js'), head.address, join(FIXTURES, 'marks.ts'), marker], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const out = JSON.parse(r.stdout) as { uid: number; error?: { code: string; message: string }; ran?: boolean };
    expect(out.uid).toBe(65534);
    expect(out.error?.code).toBe('UNAUTHENTICATED');
    expect(out.ran).toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });

  asRoot("refuses another local user who found the port of the owner's `dpl run`", async () => {
    // dpl run's embedded head takes a fresh token; its address shows in the info log.
    const run = startDpl(['run', join(FIXTURES, 'relay.ts'), '-v', 'info', '-q', '--resources', '{"maker":1,"taker":1}'], { timeoutMs: 60_000 });
    let address = '';
    await waitFor(
      () => {
        address = /"address":"([^"]+)"[^\n]*"msg":"head listening"/.exec(run.stderr)?.[1] ?? '';
        return address !== '';
      },
      { timeoutMs: 15_000, what: "dpl run's head" },
    );
    const marker = join(await tempDir(), 'ran');
    const r = spawnSync(process.execPath, [join(FIXTURES, 'other-user-client.js'), address, join(FIXTURES, 'marks.ts'), marker], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const out = JSON.parse(r.stdout) as { uid: number; error?: { code: string } };
    expect(out).toMatchObject({ uid: 65534, error: { code: 'UNAUTHENTICATED' } });
    expect(existsSync(marker)).toBe(false);
    run.child.kill('SIGINT');
    await run.exited;
  });
});

describe('private folders', () => {
  asRoot('refuses a dpl folder planted by another user, naming it and the next step', async () => {
    const home = await tempDir();
    const planted = join(home, '.dpl');
    mkdirSync(planted);
    chmodSync(planted, 0o777);
    chownSync(planted, 65534, 65534);
    const r = await runDpl(['run', join(FIXTURES, 'marks.ts'), '-n', '1'], { env: { HOME: home } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`refusing to use ${planted}: it belongs to uid 65534, not to you (uid 0)`);
    expect(r.stderr).toMatch(/Remove it .*chmod 700/);
  });

  it('never imports a cached bundle whose content was swapped between runs', async () => {
    const home = await tempDir();
    const dir = await tempDir();
    const args = ['run', join(FIXTURES, 'marks.ts'), '-n', '1', '-s', `mark.kwargs.path=${join(dir, 'good')}`];
    expect((await runDpl(args, { env: { HOME: home } })).code).toBe(0);
    // Swap every cached copy (the client's and the worker's) for code that leaves a mark.
    const evil = join(dir, 'evil');
    const caches = ['bundles', 'worker-modules'].map((c) => join(home, '.dpl', c));
    for (const cache of caches) {
      for (const f of readdirSync(cache)) writeFileSync(join(cache, f), `require('node:fs').writeFileSync(${JSON.stringify(evil)}, 'x'); export default 1;`);
    }
    const again = await runDpl(args, { env: { HOME: home } });
    expect(again.code).toBe(0);
    expect(existsSync(evil)).toBe(false);
    expect(readFileSync(join(dir, 'good'), 'utf8')).toMatch(/^ran as uid/);
    for (const cache of caches) for (const f of readdirSync(cache)) expect(readFileSync(join(cache, f), 'utf8')).not.toContain(evil);
  });
});

describe('daemon records', () => {
  let bystander: ChildProcess | undefined;
  afterEach(() => void bystander?.kill('SIGKILL'));

  /** Writes a record as dpl would, for a process dpl did not start. */
  function plant(runDir: string, pid: number, startTime: string): void {
    const file = join(runDir, `worker-${pid}.json`);
    writeFileSync(file, JSON.stringify({ pid, startTime, kind: 'worker', address: '127.0.0.1:1', startedAt: new Date().toISOString() }), { mode: 0o600 });
  }

  const startTimeOf = (pid: number): string => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]!;

  it('never lead dpl stop to signal a process it did not start', async () => {
    const runDir = await tempDir();
    bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
    await waitFor(() => existsSync(`/proc/${bystander!.pid}/stat`), { what: 'sleep to start' });
    plant(runDir, bystander.pid!, '1'); // its PID, not its start time
    const r = await runDpl(['stop'], { env: { DPL_RUN_DIR: runDir } });
    expect(r.stdout.trim()).toBe(`no dpl daemons of yours are running on this machine (records in ${runDir})`);
    expect(bystander.exitCode).toBeNull();
    expect(readdirSync(runDir)).toEqual([]); // the stale record is gone
  });

  asRoot("never lead dpl stop to signal another user's process, even with its true start time", async () => {
    const runDir = await tempDir();
    bystander = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
    await waitFor(() => existsSync(`/proc/${bystander!.pid}/stat`) && readFileSync(`/proc/${bystander!.pid}/status`, 'utf8').includes('Uid:\t65534'), {
      what: 'sleep to run as nobody',
    });
    plant(runDir, bystander.pid!, startTimeOf(bystander.pid!));
    const r = await runDpl(['stop'], { env: { DPL_RUN_DIR: runDir } });
    expect(r.stdout.trim()).toBe(`no dpl daemons of yours are running on this machine (records in ${runDir})`);
    expect(bystander.exitCode).toBeNull();
  });

  it('are refused from a folder others can write into', async () => {
    const runDir = await tempDir();
    chmodSync(runDir, 0o777);
    const r = await runDpl(['stop'], { env: { DPL_RUN_DIR: runDir } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`refusing to use ${runDir}: others may write into it (mode 777)`);
  });
});

describe('the token and task code', () => {
  it('is in no daemon\'s command line or environment once read, so task code finds it nowhere', async () => {
    const token = 'peek-a-boo-token-0123456789';
    const file = join(await tempDir(), 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const head = await startHeadProcess(['--token-file', file], { DPL_TOKEN: undefined });
    // One worker given --token on its command line (warned), one DPL_TOKEN in its environment.
    const flagged = startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"a":1}', '--token', token], { DPL_TOKEN: undefined });
    const env = startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"b":1}'], { DPL_TOKEN: token });
    await waitForWorkers(head.address, 2, token);
    expect(flagged.stderr).toMatch(/warning: --token on the command line is visible to every user of this machine/);
    for (const p of [head.process, flagged, env]) {
      const pid = p.child.pid!;
      expect(readFileSync(`/proc/${pid}/cmdline`, 'latin1')).not.toContain(token);
      expect(readFileSync(`/proc/${pid}/environ`, 'latin1')).not.toContain(token);
    }
    expect(readFileSync(`/proc/${flagged.child.pid}/cmdline`, 'latin1')).toContain('--token\0***');
    const cluster = await connect(head.address, { token });
    try {
      for (const resource of ['a', 'b']) {
        const run = await cluster.submit(join(FIXTURES, 'peek-parent.ts'), { config: { 'peek.resources': { [resource]: 1 } }, maxBatches: 1 });
        const out: OutputBatch[] = [];
        for await (const b of run) out.push(b);
        expect(out).toHaveLength(1);
        const seen = ['parent_cmdline', 'parent_environ', 'own_environ'].map((c) => text(out[0]!, c));
        expect(seen[0]).toContain('worker\0start'); // it did read its parent, the worker
        for (const s of seen) expect(s).not.toContain(token);
        expect(text(out[0]!, 'own_env_token')).toBe('undefined');
      }
    } finally {
      await cluster.close();
    }
  });
});

describe('connection floods', () => {
  const floods: Awaited<ReturnType<typeof flood>>[] = [];
  afterEach(() => {
    for (const f of floods.splice(0)) for (const s of f.sockets) s.destroy();
  });

  it('leave the head and a worker with few file descriptors serving: sessions kept, data moving, idle connections shed', async () => {
    const FAST = ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1500'];
    const head = await startHeadProcess(FAST);
    const dashboard = dashboardAddress(head.process.stdout);
    // The maker runs with 256 open files at most; 2,000 connections would take them all.
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"maker":1}'], undefined, ['prlimit', '--nofile=256:256']);
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"taker":1}']);
    const before = await waitForWorkers(head.address, 2);
    const maker = before.workers.find((w) => w.resources.total.maker === 1)!;

    floods.push(await flood(portOf(maker.address), 2_000), await flood(portOf(dashboard), 2_000), await flood(portOf(head.address), 2_000));
    // Past the limits, connections are shed at once.
    await waitFor(() => floods.every((f) => f.closed() > 0), { timeoutMs: 4_000, what: 'connections past the limits to be shed' });
    // Longer than the heartbeat timeout: every session survives, and a job moves data between them.
    await new Promise((r) => setTimeout(r, 2_000));
    const during = await statusOf(head.address);
    expect(during.workers.filter((w) => w.state === 'alive').map((w) => w.id).sort()).toEqual(before.workers.map((w) => w.id).sort());
    const cluster = await connect(head.address);
    try {
      const out: OutputBatch[] = [];
      for await (const b of await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 5 })) out.push(b);
      expect(out.map((b) => Number(column(b.data, 'rows').get(0)))).toEqual([2000, 2000, 2000, 2000, 2000]);
    } finally {
      await cluster.close();
    }
    // Connections that never authenticate are closed within seconds.
    await waitFor(() => floods.every((f) => f.closed() === 2_000), { timeoutMs: 15_000, what: 'the idle connections to be closed' });
    const token = tokenFor(head.address, undefined);
    expect((await fetch(`http://${dashboard}/api/status`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});

describe('numbers that overflow', () => {
  it('are refused before any state changes, by the CLI, the SDK and the head, and the head goes on', async () => {
    const head = await startHeadProcess();
    const start = await runDpl(['worker', 'start', '--address', head.address, '--num-cpus', '1e308']);
    expect(start.code).toBe(2);
    expect(start.stderr).toContain('--num-cpus must be at most 1000000, got 1e+308');
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":1,"taker":1}']);
    const status = await waitForWorkers(head.address, 1);
    const id = status.workers[0]!.id;
    const update = await runDpl(['worker', 'update', '--address', head.address, '--worker', id, '--num-cpus', '1e308']);
    expect(update.code).toBe(2);
    expect(update.stderr).toContain('--num-cpus must be at most 1000000');
    const cluster = await connect(head.address);
    try {
      const e = await rejectionOf(cluster.updateWorker(id, { CPU: 1e308 }));
      expect(isDplError(e, 'VALIDATION')).toBe(true);
      expect((e as Error).message).toContain('resources.CPU must be at most 1000000, got 1e+308');
      expect((await cluster.status()).workers[0]!.resources.total).toEqual({ CPU: 2, maker: 1, taker: 1 });
      let n = 0;
      for await (const _ of await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 3 })) n++;
      expect(n).toBe(3);
    } finally {
      await cluster.close();
    }
  });

  it('from task code do not break the metrics or the dashboard: non-finite values are dropped', async () => {
    const head = await startHeadProcess();
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    const token = tokenFor(head.address, undefined);
    const cluster = await connect(head.address);
    try {
      const run = await cluster.submit(join(FIXTURES, 'overflowing.ts'), { maxBatches: 2 });
      for await (const _ of run) {
        // drain
      }
      const auth = { headers: { authorization: `Bearer ${token}` } };
      const metrics = await fetch(`http://${dashboard}/metrics`, auth);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain(`dpl_observed_total{job="${run.jobId}",name="huge"} 1e+308`);
      const d = (await (await fetch(`http://${dashboard}/api/dashboard`, auth)).json()) as {
        jobs: { id: string; observed: Record<string, number>; params: Record<string, string> }[];
      };
      const job = d.jobs.find((j) => j.id === run.jobId)!;
      expect(job.observed).toEqual({ huge: 1e308, fine: 1.5 });
      expect(job.params.long).toHaveLength(1_000);
    } finally {
      await cluster.close();
    }
  });
});
