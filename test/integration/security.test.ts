/**
 * Who gets in: the token on every RPC of every service (head gRPC, the workers' data plane, the
 * HTTP API), and TLS end to end (clients, workers, worker-to-worker data, HTTPS).
 */
import { get as httpsGet } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect } from '@dpl/client';
import { DplErrorCode, type OutputBatch } from '@dpl/core';
import { ObjectFetcher, loadDplProto, tokenMetadata } from '@dpl/wire';
import { FIXTURES, killDplProcesses, runDpl } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';
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
    const codes = {
      GetStatus: await unary((cb) => client.GetStatus({}, md, cb)),
      HasModule: await unary((cb) => client.HasModule({ hash: 'x' }, md, cb)),
      UploadModule: await unary((cb) => {
        const up = client.UploadModule(md, cb);
        up.write({ hash: 'x', size: '1', chunk: Buffer.from('a') });
        up.end();
      }),
      FetchModule: await streamed(client.FetchModule({ hash: 'x' }, md)),
      ConnectWorker: await connectWorkerCode,
      RunJob: await runJobCode,
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
        ConnectWorker: UNAUTHENTICATED,
        RunJob: UNAUTHENTICATED,
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
    const dashboard = /status API: http:\/\/(\S+)\/api\/status/.exec(head.process.stdout)![1]!;
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
    const dashboard = /status API: https:\/\/(\S+)\/api\/status/.exec(head.process.stdout)![1]!;
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
