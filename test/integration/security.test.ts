/**
 * Who gets in: the token on every RPC of every service (head gRPC, the workers' data plane, the
 * HTTP API), and TLS end to end (clients, workers, worker-to-worker data, HTTPS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { get as httpsGet } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import * as grpc from '@grpc/grpc-js';
import { connect, tokenFor } from '@dpl/client';
import { DplErrorCode, type OutputBatch } from '@dpl/core';
import { ObjectFetcher, loadDplProto, tokenMetadata } from '@dpl/wire';
import { FIXTURES, REPO_ROOT, killDplProcesses, runDpl, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, statusOf, waitForWorkers } from '../helpers/cluster';
import { dashboardAddress } from '../helpers/metrics';
import { rejectionOf } from '../helpers/errors';

afterEach(killDplProcesses);

const TLS = join(FIXTURES, 'tls');
const tlsArgs = ['--tls-cert', join(TLS, 'node.pem'), '--tls-key', join(TLS, 'node-key.pem'), '--tls-ca', join(TLS, 'ca.pem')];

/** The gRPC status code each HeadService method answers with the given metadata. */
async function codesOf(address: string, md: grpc.Metadata): Promise<Record<string, number>> {
  const { HeadService } = loadDplProto();
  const client = new HeadService(address, grpc.credentials.createInsecure());
  const unary = (fn: (cb: (e: grpc.ServiceError | null) => void) => void) =>
    new Promise<number>((resolve) => fn((e) => resolve(e === null ? 0 : e.code)));
  const streamed = (call: grpc.ClientReadableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>) =>
    new Promise<number>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(e.code));
      call.on('status', (s: grpc.StatusObject) => resolve(s.code));
    });
  try {
    const connectWorker = client.ConnectWorker(md);
    const connectWorkerCode = streamed(connectWorker);
    connectWorker.write({ heartbeat: { seq: '1', sent_at_ms: '0' } });
    const runJob = client.RunJob(md);
    const runJobCode = streamed(runJob);
    runJob.write({});
    const attachJob = client.AttachJob(md);
    const attachJobCode = streamed(attachJob);
    attachJob.write({ start: { job_id: 'none', have: [] } });
    const codes = {
      GetStatus: await unary((cb) => client.GetStatus({}, md, cb)),
      HasModule: await unary((cb) => client.HasModule({ hash: 'x' }, md, cb)),
      UploadModule: await unary((cb) => {
        const up = client.UploadModule(md, cb);
        up.write({ hash: 'x', size: '1', chunk: Buffer.from('a') });
        up.end();
      }),
      FetchModule: await streamed(client.FetchModule({ hash: 'x' }, md)),
      UpdateWorker: await unary((cb) => client.UpdateWorker({ worker_id: 'none', change_drain: true, drain: true }, md, cb)),
      StopJob: await unary((cb) => client.StopJob({ job_id: 'none' }, md, cb)),
      JobLogs: await streamed(client.JobLogs({ job_id: 'none', follow: true }, md)),
      ConnectWorker: await connectWorkerCode,
      RunJob: await runJobCode,
      AttachJob: await attachJobCode,
    };
    connectWorker.cancel();
    runJob.cancel();
    return codes;
  } finally {
    client.close();
  }
}

describe('the cluster token', () => {
  it('is required by every RPC of every service, and by the HTTP API', async () => {
    const head = await startHeadProcess([], { DPL_TOKEN: 'sesame' });
    startWorkerProcess(head.address, ['--num-cpus', '1'], { DPL_TOKEN: 'sesame' });
    const status = await waitForWorkers(head.address, 1, 'sesame');
    const UNAUTHENTICATED = grpc.status.UNAUTHENTICATED;
    for (const md of [new grpc.Metadata(), tokenMetadata('wrong')]) {
      expect(await codesOf(head.address, md)).toEqual({
        GetStatus: UNAUTHENTICATED,
        HasModule: UNAUTHENTICATED,
        UploadModule: UNAUTHENTICATED,
        FetchModule: UNAUTHENTICATED,
        UpdateWorker: UNAUTHENTICATED,
        StopJob: UNAUTHENTICATED,
        JobLogs: UNAUTHENTICATED,
        ConnectWorker: UNAUTHENTICATED,
        RunJob: UNAUTHENTICATED,
        AttachJob: UNAUTHENTICATED,
      });
    }
    // With the token the same calls get past the door (and fail, if at all, for their own reasons).
    const withToken = await codesOf(head.address, tokenMetadata('sesame'));
    expect(withToken.GetStatus).toBe(0);
    expect(Object.values(withToken)).not.toContain(UNAUTHENTICATED);

    // The worker's data plane.
    for (const token of [undefined, 'wrong']) {
      const fetcher = new ObjectFetcher(token);
      const e = await rejectionOf(fetcher.fetch(status.workers[0]!.address, 'any/object'));
      fetcher.close();
      expect(e).toMatchObject({ code: DplErrorCode.UNAUTHENTICATED });
    }

    // The HTTP API.
    const dashboard = dashboardAddress(head.process.stdout);
    expect((await fetch(`http://${dashboard}/api/status`)).status).toBe(401);
    expect((await fetch(`http://${dashboard}/api/status`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`http://${dashboard}/api/status`, { headers: { authorization: 'Bearer sesame' } })).status).toBe(200);
  });
});

describe('TLS', () => {
  it('runs a job end to end over TLS: clients, workers, worker-to-worker data and HTTPS', async () => {
    const head = await startHeadProcess(tlsArgs, { DPL_TOKEN: 'sesame' });
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}', ...tlsArgs], { DPL_TOKEN: 'sesame' });
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"taker":2}', ...tlsArgs], { DPL_TOKEN: 'sesame' });
    const ca = { ca: join(TLS, 'ca.pem') };
    const cluster = await connect(head.address, { token: 'sesame', tls: ca });
    try {
      await new Promise<void>((resolve, reject) => {
        const poll = async (): Promise<void> => {
          const s = await cluster.status();
          if (s.workers.filter((w) => w.state === 'alive').length === 2) resolve();
          else setTimeout(() => void poll().catch(reject), 100);
        };
        void poll().catch(reject);
      });
      const out: OutputBatch[] = [];
      for await (const b of await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 6 })) out.push(b);
      expect(out).toHaveLength(6);
      expect(out.every((b) => Number(b.data.getChild('rows')!.get(0)) === 2000)).toBe(true);
    } finally {
      await cluster.close();
    }

    // The CLI with the CA; without it, or with another CA, the head cannot be reached.
    const ok = await runDpl(['status', '--address', head.address, '--tls-ca', join(TLS, 'ca.pem')], { env: { DPL_TOKEN: 'sesame' } });
    expect(ok.code).toBe(0);
    for (const extra of [[], ['--tls-ca', join(TLS, 'other-ca.pem')]]) {
      const refused = await runDpl(['status', '--address', head.address, ...extra], { env: { DPL_TOKEN: 'sesame' } });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^dpl: cannot reach the dpl head at 127\.0\.0\.1:\d+/);
    }

    // HTTPS for the API, checked against the CA.
    expect(head.process.stdout).toMatch(/status API: https:\/\//);
    const dashboard = dashboardAddress(head.process.stdout);
    const code = await new Promise<number>((resolve, reject) => {
      httpsGet(`https://${dashboard}/api/status`, { ca: readFileSync(join(TLS, 'ca.pem')), headers: { authorization: 'Bearer sesame' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on('error', reject);
    });
    expect(code).toBe(200);
  });

  it('says which TLS flag is missing', async () => {
    const r = await runDpl(['head', 'start', '--port', '0', '--tls-cert', join(TLS, 'node.pem')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TLS needs --tls-cert, --tls-key and --tls-ca together \(missing --tls-key, --tls-ca\)/);
  });
});

describe('a rogue client', () => {
  /** One raw call of a HeadService method with bytes that are not its message. */
  function rawCall(address: string, method: string, bytes: Buffer[], streaming: boolean, md: grpc.Metadata): Promise<{ code: number; details: string }> {
    const codec = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
    return new Promise((resolve) => {
      const done = (e: grpc.ServiceError | null) => {
        client.close();
        resolve({ code: e?.code ?? 0, details: e?.details ?? '' });
      };
      const path = `/dpl.v1.HeadService/${method}`;
      if (!streaming) {
        client.makeUnaryRequest(path, codec.serialize, codec.deserialize, bytes[0]!, md, (e) => done(e));
        return;
      }
      const call = client.makeBidiStreamRequest(path, codec.serialize, codec.deserialize, md);
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => done(e));
      call.on('status', (s: grpc.StatusObject) => done(s.code === 0 ? null : (s as grpc.ServiceError)));
      for (const b of bytes) call.write(b);
    });
  }

  it('gets a clear refusal for malformed, out-of-order and oversized messages, and the head goes on', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await waitForWorkers(head.address, 1);
    // With the token (it is the messages that are wrong, not the door): the head's, from its record.
    const md = tokenMetadata(tokenFor(head.address, undefined));
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12]);
    const huge = Buffer.alloc(5 * 1024 * 1024, 1);
    for (const [method, streaming] of [['GetStatus', false], ['HasModule', false], ['ConnectWorker', true], ['RunJob', true]] as const) {
      const bad = await rawCall(head.address, method, [garbage], streaming, md);
      expect({ method, code: bad.code }).toEqual({ method, code: grpc.status.INTERNAL }); // cannot be parsed
      const big = await rawCall(head.address, method, [huge], streaming, md);
      expect({ method, code: big.code }).toEqual({ method, code: grpc.status.RESOURCE_EXHAUSTED });
    }

    const { HeadService } = loadDplProto();
    const client = new HeadService(head.address, grpc.credentials.createInsecure());
    const streamError = (call: grpc.ClientDuplexStream<unknown, unknown> | grpc.ClientReadableStream<unknown>) =>
      new Promise<grpc.ServiceError>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', resolve);
      });
    try {
      // A worker session that heartbeats before registering, or registers nonsense.
      const early = client.ConnectWorker(md);
      const earlyErr = streamError(early);
      early.write({ heartbeat: { seq: '1', sent_at_ms: '0' } });
      expect(await earlyErr).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'register before sending heartbeats' });
      const nonsense = client.ConnectWorker(md);
      const nonsenseErr = streamError(nonsense);
      nonsense.write({ register: { data_address: 'x', resources: { values: { CPU: -3 } } } });
      expect((await nonsenseErr).details).toMatch(/^invalid registration: /);
      const greedy = client.ConnectWorker(md);
      const greedyErr = streamError(greedy);
      greedy.write({ register: { data_address: '127.0.0.1:1', resources: { values: { CPU: 1e9 } } } });
      expect((await greedyErr).details).toBe('invalid registration: resources.CPU must be at most 1000000, got 1000000000');

      // A job stream that does not start with a spec, or names a module never uploaded.
      const noSpec = client.RunJob(md);
      const noSpecErr = streamError(noSpec);
      noSpec.write({});
      expect(await noSpecErr).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'a job stream takes exactly one start message' });
      const unknown = client.RunJob(md);
      unknown.on('error', () => undefined); // cancelled below
      const reply = new Promise<{ failed?: { message: string } }>((resolve) => unknown.on('data', resolve));
      unknown.write({ start: { module_hash: 'f'.repeat(64), tasks: [] } });
      expect((await reply).failed?.message).toMatch(/was not uploaded to the head; upload it first/);
      unknown.cancel();
      // A run id that cannot be a job id (the head takes the client's run id as the job's id).
      const badId = client.RunJob(md);
      badId.on('error', () => undefined); // cancelled below
      const badIdReply = new Promise<{ failed?: { message: string } }>((resolve) => badId.on('data', resolve));
      badId.write({ start: { module_hash: 'f'.repeat(64), tasks: [], run_id: '../../etc/passwd' } });
      expect((await badIdReply).failed?.message).toBe(
        'run id "../../etc/passwd" is not a valid job id: use 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit',
      );
      badId.cancel();
      // kwargs nested deeper than executors take: refused before any call runs.
      const bundle = Buffer.from('export default 1;');
      const hash = createHash('sha256').update(bundle).digest('hex');
      await new Promise<void>((resolve, reject) => {
        const up = client.UploadModule(md, (e) => (e ? reject(e) : resolve()));
        up.write({ hash, size: String(bundle.byteLength), chunk: bundle });
        up.end();
      });
      let deep: unknown = 1;
      for (let i = 0; i < 1000; i++) deep = [deep];
      const deepJob = client.RunJob(md);
      deepJob.on('error', () => undefined); // cancelled below
      const deepReply = new Promise<{ failed?: { code: string; message: string } }>((resolve) => deepJob.on('data', resolve));
      deepJob.write({ start: { module_hash: hash, tasks: [{ name: 't', num_cpus: 1, max_retries: 0, kwargs: serialize({ spec: deep }) }] } });
      expect((await deepReply).failed).toMatchObject({
        code: 'VALIDATION',
        message: expect.stringMatching(/^invalid job: kwarg "spec" of task "t" nests deeper than 64 levels .*pass a large structure as a file path/) as unknown,
      });
      deepJob.cancel();

      // A module upload over the limit, stated with its size.
      const upload = await new Promise<grpc.ServiceError | null>((resolve) => {
        const up = client.UploadModule(md, (e) => resolve(e));
        up.write({ hash: 'a'.repeat(64), size: String(200 * 1024 * 1024), chunk: Buffer.from('x') });
        up.end();
      });
      expect(upload).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      expect(upload!.details).toMatch(/^module bundle is 209715200 bytes; the head accepts at most \d+ bytes/);
      const missing = client.FetchModule({ hash: 'b'.repeat(64) }, md);
      expect(await streamError(missing)).toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }

    // Still serving: the worker is there and a job runs.
    const cluster = await connect(head.address);
    try {
      expect((await cluster.status()).workers.filter((w) => w.state === 'alive')).toHaveLength(1);
      let n = 0;
      for await (const _ of await cluster.submit(join(FIXTURES, 'misbehaving.ts'), { maxBatches: 3 })) n++;
      expect(n).toBe(3);
    } finally {
      await cluster.close();
    }
  });
});

describe('a worker that sends bytes that are not Arrow IPC', () => {
  /** Starts the rogue worker of test/fixtures/rogue-worker.js; resolves once it has joined. */
  async function startRogue(address: string, mode: 'inline' | 'served'): Promise<{ child: ChildProcess; id: string }> {
    const child = spawn(process.execPath, [join(FIXTURES, 'rogue-worker.js'), address, JSON.stringify({ CPU: 0, rogue: 1 })], {
      cwd: REPO_ROOT,
      env: { ...process.env, DPL_TOKEN: tokenFor(address, undefined), ROGUE_MODE: mode },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    rogues.push(child);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    let id = '';
    await waitFor(() => {
      id = /rogue registered as (\S+)/.exec(out)?.[1] ?? '';
      return id !== '';
    }, { what: 'the rogue worker to register' });
    return { child, id };
  }
  const rogues: ChildProcess[] = [];
  afterEach(() => {
    for (const c of rogues.splice(0)) c.kill('SIGKILL');
  });

  it('is named with the call it answered, where its answer arrives (the head), and the job fails without an arrow stack', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    const rogue = await startRogue(head.address, 'inline');
    await waitForWorkers(head.address, 2);
    const r = await runDpl(['submit', join(FIXTURES, 'rogue-pipeline.ts'), '--address', head.address, '-n', '1', '-q']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`worker ${rogue.id} answered call score#0 of task "score" with an output that is not an Arrow IPC stream \\(message 1 \\(at byte 0\\) claims \\d+ bytes of metadata, past the end of the 65 bytes\\)`),
    );
    expect(r.stderr).not.toMatch(/apache-arrow|^\s+at /m);
    // The head goes on, and the real worker too.
    expect((await statusOf(head.address)).workers.filter((w) => w.state === 'alive')).toHaveLength(2);
  });

  it('is named when another worker fetches the object it serves, and the task that reads it is not blamed by arrow', async () => {
    const head = await startHeadProcess();
    startWorkerProcess(head.address, ['--num-cpus', '1']);
    await startRogue(head.address, 'served');
    await waitForWorkers(head.address, 2);
    const r = await runDpl(['submit', join(FIXTURES, 'rogue-pipeline.ts'), '--address', head.address, '-n', '1', '-q']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the input of call tag#0 of task "tag", object \S+ fetched from the worker at 127\.0\.0\.1:\d+, is not an Arrow IPC stream \(message 1 \(at byte 0\) claims/);
    expect(r.stderr).not.toMatch(/apache-arrow|^\s+at /m);
  });
});
