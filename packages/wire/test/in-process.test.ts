import * as grpc from '@grpc/grpc-js';
import {
  inProcessClient,
  loadDplProto,
  tokenMetadata,
  type HeadServiceClient,
  type RunJobResponse,
  type ConnectWorkerResponse,
} from '@dpl/wire';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A tiny HeadService whose handlers record what they see. */
function fakeHead() {
  const seen: { metadata?: string; cancelled: number; drains: number } = { cancelled: 0, drains: 0 };
  const handlers: Partial<grpc.UntypedServiceImplementation> = {
    GetStatus(call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      seen.metadata = String(call.metadata.get('authorization')[0] ?? '');
      cb(null, { version: '9.9.9', workers: [{ id: 'w1', address: 'a:1' }] });
    },
    HasModule(call: grpc.ServerUnaryCall<{ hash: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      if (call.request.hash === 'bad') cb({ code: grpc.status.NOT_FOUND, details: 'no such module' });
      else cb(null, { present: true, max_bytes: '12' });
    },
    ConnectWorker(call: grpc.ServerDuplexStream<{ msg: string; heartbeat?: { seq: string } }, unknown>) {
      call.on('data', (m: { msg: string; heartbeat?: { seq: string } }) => {
        if (m.msg === 'heartbeat') call.write({ heartbeat_ack: { seq: m.heartbeat!.seq } });
        else call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `no ${m.msg}` });
      });
      call.on('end', () => call.end());
    },
    RunJob(call: grpc.ServerDuplexStream<unknown, unknown>) {
      call.on('cancelled', () => seen.cancelled++);
      call.on('drain', () => seen.drains++);
      call.on('data', () => {
        // Writes until the client's buffer is full, then the rest on 'drain'.
        let i = 0;
        const more = (): void => {
          while (i < 40) {
            const ok = call.write({ notice: { message: `n${i++}` } });
            if (!ok) return void call.once('drain', more);
          }
          call.end();
        };
        more();
      });
    },
  };
  const client = inProcessClient(loadDplProto().HeadService.service, handlers as grpc.UntypedServiceImplementation) as unknown as HeadServiceClient;
  return { client, seen };
}

describe('inProcessClient', () => {
  it('gives a message only the codec converts exactly (a Long in a 64-bit field) what the codec gives', async () => {
    const handlers: Partial<grpc.UntypedServiceImplementation> = {
      HasModule(_call: unknown, cb: grpc.sendUnaryData<unknown>) {
        cb(null, { present: true, max_bytes: { low: 5, high: 1, unsigned: true } });
      },
    };
    const client = inProcessClient(loadDplProto().HeadService.service, handlers as grpc.UntypedServiceImplementation) as unknown as HeadServiceClient;
    const res = await new Promise<unknown>((resolve, reject) => client.HasModule({ hash: 'h' }, (e, r) => (e ? reject(e) : resolve(r))));
    expect(res).toEqual({ present: true, max_bytes: String(2 ** 32 + 5) });
  });

  it('runs unary calls through the codecs, with metadata, values and errors', async () => {
    const { client, seen } = fakeHead();
    const status = await new Promise<unknown>((resolve, reject) =>
      client.GetStatus({}, tokenMetadata('secret'), { deadline: Date.now() + 1000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    // Defaults are filled as when parsed from the network.
    expect(status).toEqual({ version: '9.9.9', jobs: [], demand: null, workers: [expect.objectContaining({ id: 'w1', address: 'a:1', hostname: '', state: 'WORKER_STATE_UNSPECIFIED' })] });
    expect(seen.metadata).toContain('secret');
    const err = await new Promise<grpc.ServiceError | null>((resolve) => client.HasModule({ hash: 'bad' }, new grpc.Metadata(), (e) => resolve(e)));
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.details).toBe('no such module');
    client.close();
  });

  it('carries a bidi stream both ways in order, and an error the handler emits', async () => {
    const { client } = fakeHead();
    const call = client.ConnectWorker(new grpc.Metadata());
    const got: string[] = [];
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (m: ConnectWorkerResponse) => got.push(m.heartbeat_ack!.seq));
    for (let i = 1; i <= 3; i++) call.write({ heartbeat: { seq: String(i) } });
    call.write({ register: {} });
    const err = await ended;
    expect(got).toEqual(['1', '2', '3']);
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('no register');
  });

  it('applies backpressure while the client is paused, and drains when it resumes', async () => {
    const { client, seen } = fakeHead();
    const call = client.RunJob(new grpc.Metadata());
    const got: string[] = [];
    call.on('data', (m: RunJobResponse) => got.push(m.notice!.message));
    const end = new Promise<void>((r) => call.on('end', () => r()));
    call.pause();
    call.write({ start: {} });
    for (let i = 0; i < 5; i++) await turn();
    expect(got).toEqual([]);
    call.resume();
    await end;
    expect(got).toEqual(Array.from({ length: 40 }, (_, i) => `n${i}`));
    expect(seen.drains).toBeGreaterThan(0);
  });

  it('tells the handler when the client cancels', async () => {
    const { client, seen } = fakeHead();
    const call = client.RunJob(new grpc.Metadata());
    const err = new Promise<grpc.ServiceError>((r) => call.on('error', r));
    call.pause();
    call.write({ start: {} });
    await turn();
    await turn();
    call.cancel();
    expect((await err).code).toBe(grpc.status.CANCELLED);
    expect(seen.cancelled).toBe(1);
  });

  it('hands large and aligned byte arrays over by reference, as sent, and small misaligned ones as aligned copies', async () => {
    // An 8-byte aligned view at a non-zero offset, as Arrow wants it; the codec would copy it twice.
    const memory = new ArrayBuffer(200 * 1024);
    const big = new Uint8Array(memory, 8, 128 * 1024).fill(7);
    const small = Uint8Array.from([0, 1, 2, 3]).subarray(1);
    const aligned = Uint8Array.from([4, 5, 6]);
    const sent = { outputs: { chunks: [{ batch_id: 'b1', task: 't', chunk: big, last: true }, { batch_id: 'b2', task: 't', chunk: small, last: true }, { batch_id: 'b3', task: 't', chunk: aligned, last: true }], bogus: big } };
    const handlers: Partial<grpc.UntypedServiceImplementation> = {
      RunJob(call: grpc.ServerDuplexStream<unknown, unknown>) {
        call.on('data', () => {
          call.write(sent);
          call.end();
        });
      },
    };
    const client = inProcessClient(loadDplProto().HeadService.service, handlers as grpc.UntypedServiceImplementation) as unknown as HeadServiceClient;
    const call = client.RunJob(new grpc.Metadata());
    const got = new Promise<RunJobResponse>((resolve) => call.on('data', resolve));
    call.write({ start: {} });
    const m = await got;
    const [b1, b2, b3] = m.outputs!.chunks;
    expect(Buffer.isBuffer(b1!.chunk)).toBe(true);
    expect(b1!.chunk.buffer).toBe(memory);
    expect(b1!.chunk.byteOffset).toBe(8);
    expect(b1!.chunk.byteLength).toBe(128 * 1024);
    expect(b2!.chunk.buffer).not.toBe(small.buffer);
    expect(b2!.chunk.byteOffset % 8).toBe(0);
    expect([...b2!.chunk]).toEqual([1, 2, 3]);
    expect(Buffer.isBuffer(b3!.chunk)).toBe(true);
    expect(b3!.chunk.buffer).toBe(aligned.buffer);
    // A key the message type does not have stays out, as the codec leaves it out.
    expect(m.outputs).not.toHaveProperty('bogus');
    // The sender's message is as it was.
    expect(sent.outputs.chunks[0]!.chunk).toBe(big);
    expect(sent.outputs.bogus).toBe(big);
    client.close();
  });
});
