/**
 * Cluster membership with real processes: workers register their resources, heartbeat, and
 * leave the cluster when they die, stall or disconnect; the token is enforced.
 */
import { createServer } from 'node:net';
import { killDplProcesses, runDpl, useTempDirs, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';

afterEach(killDplProcesses);

const FAST_HEARTBEATS = ['--heartbeat-interval-ms', '100', '--heartbeat-timeout-ms', '800'];

/** How many times the head logged that it refused a worker session. */
const refusals = (log: string): number => log.match(/worker session refused/g)?.length ?? 0;

describe('a cluster of real processes', () => {
  it('lists each worker with the resources it advertised, free and total', async () => {
    const head = await startHeadProcess();
    const big = startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"bigdb":1}']);
    startWorkerProcess(head.address, ['--num-cpus', '1', '--num-gpus', '2', '--resources', 'ssd=0.5']);
    const status = await waitForWorkers(head.address, 2);
    const totals = status.workers.map((w) => w.resources.total).sort((a, b) => (a.CPU ?? 0) - (b.CPU ?? 0));
    expect(totals).toEqual([{ CPU: 1, GPU: 2, ssd: 0.5 }, { CPU: 2, bigdb: 1 }]);
    for (const w of status.workers) expect(w.resources.available).toEqual(w.resources.total);
    await waitFor(() => /dpl worker w\d+-\S+ joined the head at/.test(big.stdout), { what: 'the join line' });

    const text = await runDpl(['status', '--address', head.address]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/2 workers, 0 jobs/);
    expect(text.stdout).toMatch(/CPU 2\/2, bigdb 1\/1/);
    const json = await runDpl(['status', '--json'], { env: { DPL_ADDRESS: head.address } });
    expect(JSON.parse(json.stdout).workers).toHaveLength(2);
  });

  it('drops a killed worker at once (its connection closes)', async () => {
    const head = await startHeadProcess();
    const doomed = startWorkerProcess(head.address, ['--num-cpus', '1']);
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 2);
    doomed.child.kill('SIGKILL');
    const status = await waitForWorkers(head.address, 1, undefined, 5_000);
    expect(status.workers.filter((w) => w.state === 'dead')).toHaveLength(1);
    expect(status.workers.find((w) => w.state === 'dead')!.resources.available).toEqual({});
  });

  it('drops a stalled worker after missed heartbeats, and takes it back as a new worker', async () => {
    const head = await startHeadProcess(FAST_HEARTBEATS);
    const stalled = startWorkerProcess(head.address, ['--num-cpus', '1']);
    const before = await waitForWorkers(head.address, 1);
    const firstId = before.workers[0]!.id;
    stalled.child.kill('SIGSTOP');
    // Detected by missed heartbeats (its connection stays open while it is stopped).
    await waitForWorkers(head.address, 0, undefined, 10_000);
    stalled.child.kill('SIGCONT');
    const after = await waitForWorkers(head.address, 1, undefined, 10_000);
    const live = after.workers.find((w) => w.state === 'alive')!;
    expect(live.id).not.toBe(firstId);
    // The heartbeats it had queued while stopped are refused once, not once each.
    expect(refusals(head.process.stdout + head.process.stderr)).toBeLessThanOrEqual(1);
  });

  it('says once that a worker was dropped when the head itself was stopped and continued', async () => {
    const head = await startHeadProcess(FAST_HEARTBEATS);
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    head.process.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 3_000)); // ~30 heartbeats queue up in the socket
    head.process.child.kill('SIGCONT');
    // The head finds the worker silent for 3 s and drops it (its queued heartbeats, refused, make
    // it join again under a new id); or it reads them first and keeps it. Either way, one worker.
    await new Promise((r) => setTimeout(r, 2_000));
    await waitFor(async () => (await statusOf(head.address)).workers.filter((w) => w.state === 'alive').length === 1, {
      timeoutMs: 15_000,
      what: 'one live worker',
    });
    expect(refusals(head.process.stdout + head.process.stderr)).toBeLessThanOrEqual(1);
  });

  it('keeps workers reconnecting until a restarted head takes them back', async () => {
    const head = await startHeadProcess(FAST_HEARTBEATS);
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    head.process.child.kill('SIGTERM');
    await head.process.exited;
    await new Promise((r) => setTimeout(r, 1_500)); // several failed attempts
    const port = head.address.split(':').pop()!;
    const again = await startHeadProcess(['--port', port, ...FAST_HEARTBEATS]);
    await waitForWorkers(again.address, 1, undefined, 15_000);
    // Said once for the whole stretch, not once per attempt.
    expect(worker.stderr.match(/lost the head at 127\.0\.0\.1:\d+; retrying for up to 60 s/g)).toHaveLength(1);
  });

  const otherRunDir = useTempDirs('dpl-other-');

  it('refuses workers and clients without the token', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: 's3cret' });
    // Another user's worker: no token, and none to find in its own (empty) run folder.
    const intruder = startWorkerProcess(head.address, ['--num-cpus', '1'], { DPL_TOKEN: undefined, DPL_RUN_DIR: await otherRunDir() });
    startWorkerProcess(head.address, ['--num-cpus', '1', '--token', 's3cret']);
    await waitForWorkers(head.address, 1, 's3cret');
    await new Promise((r) => setTimeout(r, 500));
    expect((await statusOf(head.address, 's3cret')).workers.filter((w) => w.state === 'alive')).toHaveLength(1);
    expect(intruder.stderr).toMatch(/missing or wrong cluster token/);

    const wrong = await runDpl(['status', '--address', head.address, '--token', 'nope']);
    expect(wrong.stderr).toMatch(/warning: --token on the command line is visible to every user of this machine \(ps\); use --token-file/);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/\ndpl: the head at 127\.0\.0\.1:\d+ refused the token: missing or wrong cluster token/);
    const right = await runDpl(['status', '--address', head.address], { env: { DPL_TOKEN: 's3cret' } });
    expect(right.code).toBe(0);
  });
});

describe('bad input to the daemons', () => {
  it('starts a head without a token only with --insecure, and then says loudly what that means', async () => {
    const head = await startHeadProcess(['--insecure'], { DPL_TOKEN: undefined });
    await waitFor(() => head.process.stderr.includes('WARNING'), { what: 'the warning' });
    expect(head.process.stderr).toMatch(/WARNING: this head has no token \(--insecure\): anyone who can reach 127\.0\.0\.1:\d+ .*every user of this machine.*can run code as/);
    // And it does run without one.
    expect((await statusOf(head.address, undefined)).workers).toEqual([]);
  });

  it('says clearly when the head cannot be reached', async () => {
    const r = await runDpl(['status', '--address', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dpl: cannot reach the dpl head at 127\.0\.0\.1:1 .*is `dpl head start` running there/);
  });

  it('rejects malformed worker resources and a missing address as usage errors', async () => {
    const bad = await runDpl(['worker', 'start', '--address', '127.0.0.1:1', '--resources', '{"bigdb":-1}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--resources\.bigdb must be a number >= 0, got -1/);
    const none = await runDpl(['worker', 'start'], { env: { DPL_ADDRESS: undefined } });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--address HOST:PORT or DPL_ADDRESS/);
  });
});

describe('bad input to worker changes', () => {
  it('asks what to change when dpl worker update is given nothing, as a usage error', async () => {
    const r = await runDpl(['worker', 'update', '--address', '127.0.0.1:1', '--worker', 'w1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/say what to change: --resources '\{"bigdb":0\}', --num-cpus N or --num-gpus N/);
  });
});

describe('the head HTTP API', () => {
  it('serves GET /api/status with the shape of cluster.status(), behind the token', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: 'http-token' });
    startWorkerProcess(head.address, ['--num-cpus', '1', '--resources', '{"bigdb":1}'], { DPL_TOKEN: 'http-token' });
    await waitForWorkers(head.address, 1, 'http-token');
    const m = /status API: (http:\/\/\S+)/.exec(head.process.stdout);
    expect(m).not.toBeNull();
    const url = m![1]!;
    const denied = await fetch(url);
    expect(denied.status).toBe(401);
    const res = await fetch(url, { headers: { authorization: 'Bearer http-token' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Awaited<ReturnType<typeof statusOf>>;
    expect(body).toEqual(expect.objectContaining({ jobs: [], version: expect.any(String) }));
    expect(body.workers[0]!.resources.total).toEqual({ CPU: 1, bigdb: 1 });
    expect((await fetch(url.replace('/api/status', '/nope'), { headers: { authorization: 'Bearer http-token' } })).status).toBe(404);
  });
});

describe('dpl stop', () => {
  const runDir = useTempDirs('dpl-run-');

  it('says what it will stop, then stops the daemons started on this machine, workers first, each leaving cleanly', async () => {
    const dir = await runDir();
    const env = { DPL_RUN_DIR: dir, DPL_TOKEN: 'stop-token' };
    const head = await startHeadProcess([], env);
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1'], env);
    await waitForWorkers(head.address, 1, 'stop-token');
    const r = await runDpl(['stop'], { env });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toEqual([
      `stopping 2 dpl daemons of yours on this machine (records in ${dir}):`,
      expect.stringMatching(new RegExp(`^  worker ${worker.child.pid} \\(127\\.0\\.0\\.1:\\d+\\) of the head at ${head.address}$`)),
      `  head ${head.process.child.pid} (${head.address})`,
      expect.stringMatching(new RegExp(`^stopped worker ${worker.child.pid} \\(127\\.0\\.0\\.1:\\d+\\)$`)),
      `stopped head ${head.process.child.pid} (${head.address})`,
    ]);
    expect((await worker.exited).code).toBe(0);
    expect((await head.process.exited).code).toBe(0);
    const again = await runDpl(['stop'], { env });
    expect(again.stdout.trim()).toBe(`no dpl daemons of yours are running on this machine (records in ${dir})`);
  });

  it('stops only the head of --address and its workers, and says what it left running', async () => {
    const dir = await runDir();
    const env = { DPL_RUN_DIR: dir, DPL_TOKEN: 'stop-token' };
    const [a, b] = await Promise.all([startHeadProcess([], env), startHeadProcess([], env)]);
    const wa = startWorkerProcess(a.address, ['--num-cpus', '1'], env);
    const wb = startWorkerProcess(b.address, ['--num-cpus', '1'], env);
    await Promise.all([waitForWorkers(a.address, 1, 'stop-token'), waitForWorkers(b.address, 1, 'stop-token')]);
    const r = await runDpl(['stop', '--address', a.address], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`stopping 2 dpl daemons of yours on this machine for the head at ${a.address} (records in ${dir}):`);
    expect(r.stdout).toContain(`stopped head ${a.process.child.pid} (${a.address})`);
    expect(r.stdout).toContain('left running: 2 other dpl daemons of yours (dpl stop without --address stops them)');
    expect((await wa.exited).code).toBe(0);
    expect((await a.process.exited).code).toBe(0);
    expect(b.process.child.exitCode).toBeNull();
    expect(wb.child.exitCode).toBeNull();
    // Another folder of records holds none of these.
    const elsewhere = await runDpl(['stop', '--run-dir', await runDir()], { env });
    expect(elsewhere.stdout).toMatch(/^no dpl daemons of yours are running on this machine \(records in \S+\)$/m);
    expect(b.process.child.exitCode).toBeNull();
    const none = await runDpl(['stop', '--address', a.address], { env });
    expect(none.stdout.trim().split('\n')).toEqual([
      `no dpl daemons of yours are running on this machine for the head at ${a.address} (records in ${dir})`,
      expect.stringMatching(/^\(2 others are running: worker \d+ .* of the head at .*, head \d+ .*\)$|^\(2 others are running: head \d+ .*, worker \d+ .*\)$/),
    ]);
    const bad = await runDpl(['stop', '--address', 'nope'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--address must be host:port, e.g. --address 127.0.0.1:6380, got "nope"');
  });
});

describe('a worker that cannot join', () => {
  /** A loopback port nothing listens on (it was free a moment ago). */
  const deadAddress = (): Promise<string> =>
    new Promise((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(`127.0.0.1:${port}`));
      });
    });

  it('says once that no head answers, then gives up after --connect-timeout with exit code 1', async () => {
    const address = await deadAddress();
    const worker = startWorkerProcess(address, ['--num-cpus', '1', '--connect-timeout', '2']);
    const { code, stderr } = await worker.exited;
    expect(code).toBe(1);
    expect(stderr.match(/cannot reach the head at 127\.0\.0\.1:\d+ yet; retrying for up to 2 s \(--connect-timeout\)/g)).toHaveLength(1);
    expect(stderr).toMatch(/gave up: no head answered at 127\.0\.0\.1:\d+ for 2 s \(last error: connect ECONNREFUSED [^)]+\); start one there \(dpl head start\)/);
  });

  it('gives up at once when the head refuses its token, however long it may wait', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: 's3cret' });
    const worker = startWorkerProcess(head.address, ['--num-cpus', '1', '--connect-timeout', '0'], { DPL_TOKEN: 'wrong' });
    const { code, stderr } = await worker.exited;
    expect(code).toBe(1);
    expect(stderr).toMatch(/gave up: the head at 127\.0\.0\.1:\d+ refused this worker: missing or wrong cluster token; pass the token the head was started with/);
    expect(stderr).not.toMatch(/reconnecting|retrying/);
  });

  it('says what it stops on Ctrl-C while it waits for a head', async () => {
    const worker = startWorkerProcess(await deadAddress(), ['--num-cpus', '1', '--connect-timeout', '0']);
    await waitFor(() => /cannot reach the head/.test(worker.stderr), { what: 'the waiting line' });
    worker.child.kill('SIGINT');
    const { code, stdout, stderr } = await worker.exited;
    expect(code).toBe(0);
    expect(stdout).toMatch(/dpl worker stopping \(it had not joined the head at 127\.0\.0\.1:\d+\)/);
    expect(stderr).toMatch(/retrying until stopped/);
  });
});

describe('a head whose port is taken', () => {
  it('exits 1 at once, with the hint, when its dashboard port is taken (no half-started gRPC left running)', async () => {
    const taken = createServer();
    const port = await new Promise<number>((resolve) => taken.listen(0, '127.0.0.1', () => resolve((taken.address() as { port: number }).port)));
    try {
      const r = await runDpl(['head', 'start', '--port', '0', '--dashboard-port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`cannot serve the HTTP API on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\(is another head running\\? pick another --dashboard-port, 0 for a free one`));
      expect(r.stdout).not.toMatch(/listening/);
    } finally {
      taken.close();
    }
  });
});

