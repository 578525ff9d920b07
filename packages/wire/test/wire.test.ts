import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { DplError, DplErrorCode, TaskError, isDplError } from '@dpl/core';
import {
  ChunkAssembler,
  chunksOf,
  errorFromProto,
  errorToProto,
  isHostPort,
  isLoopbackHost,
  loadDplProto,
  PROTO_DIR,
  PROTO_LOADER_OPTIONS,
  presentedToken,
  resourcesFromProto,
  resourcesToProto,
  statusFromProto,
  statusToProto,
  tokenMatches,
  tokenMetadata,
  type ClusterStatus,
} from '@dpl/wire';

/** A cluster status with every kind of field set. */
const STATUS: ClusterStatus = {
  version: '1.2.3',
  jobs: [{ id: 'j1', state: 'running', startedAtMs: 5, endedAtMs: undefined, outputs: 2, rows: 20, error: undefined, detached: true, outDir: '/data/out' }],
  workers: [
    {
      id: 'w1',
      address: '10.0.0.1:7000',
      hostname: 'a',
      state: 'draining',
      resources: { total: { CPU: 4, bigdb: 1 }, available: { CPU: 1.5 } },
      lastHeartbeatMs: 1_700_000_000_123,
      registeredAtMs: 1_700_000_000_000,
      objectStore: { memoryBytes: 10, peakMemoryBytes: 20, diskBytes: 30, spills: 2, objects: 3, budgetBytes: 1024, views: 4 },
    },
    {
      id: 'w2',
      address: '10.0.0.2:7000',
      hostname: 'b',
      state: 'alive',
      resources: { total: { CPU: 1 }, available: { CPU: 1 } },
      lastHeartbeatMs: 1,
      registeredAtMs: 1,
      objectStore: { memoryBytes: 0, peakMemoryBytes: 0, diskBytes: 0, spills: 0, objects: 0, budgetBytes: -1, views: 0 },
    },
  ],
  demand: { waiting: [{ resources: { CPU: 1, bigdb: 1 }, calls: 3 }], resources: { CPU: 5.5, bigdb: 3 }, pending: { CPU: 3, bigdb: 3 } },
};

describe('token metadata', () => {
  it('carries the token as a bearer header and matches only the same token', () => {
    const md = tokenMetadata('s3cret');
    expect(presentedToken(md)).toBe('Bearer s3cret');
    expect(tokenMatches('s3cret', presentedToken(md))).toBe(true);
    expect(tokenMatches('s3cret', 'Bearer s3cre')).toBe(false);
    expect(tokenMatches('s3cret', 's3cret')).toBe(false); // no Bearer prefix
    expect(tokenMatches('s3cret', undefined)).toBe(false);
  });

  it('lets everything through when no token is set, and sends none', () => {
    expect(tokenMatches(undefined, undefined)).toBe(true);
    expect(presentedToken(tokenMetadata(undefined))).toBeUndefined();
    expect(presentedToken(tokenMetadata(''))).toBeUndefined();
  });
});

describe('codecs', () => {
  it('round-trips resource maps, fractions included', () => {
    expect(resourcesFromProto(resourcesToProto({ CPU: 2, GPU: 0.25, bigdb: 1 }) as never)).toEqual({ CPU: 2, GPU: 0.25, bigdb: 1 });
    expect(resourcesFromProto(null)).toEqual({});
  });

  it('round-trips a task failure with its task, batch, attempt and stack', () => {
    const err = new TaskError('round', 'round#3', 2, 'task "round" failed', { remoteStack: 'Error: x\n    at f (p.ts:1:1)' });
    const back = errorFromProto(errorToProto(err) as never);
    expect(back).toBeInstanceOf(TaskError);
    expect(back).toMatchObject({ task: 'round', batchId: 'round#3', attempt: 2, message: 'task "round" failed', code: 'TASK_FAILED' });
    expect((back as TaskError).remoteStack).toContain('p.ts:1:1');
  });

  it('keeps the code of other errors and maps unknown codes and plain errors to INTERNAL', () => {
    const back = errorFromProto(errorToProto(new DplError(DplErrorCode.INFEASIBLE, 'no gpu')) as never);
    expect(isDplError(back, 'INFEASIBLE')).toBe(true);
    expect(back.retryable).toBe(false);
    expect(errorFromProto(errorToProto(new Error('plain')) as never).code).toBe('INTERNAL');
    expect(errorFromProto({ code: 'BOGUS', message: 'm', stack: '', task: '', batch_id: '', attempt: 0, retryable: false }).code).toBe('INTERNAL');
  });

  it('round-trips the cluster status through its proto message', () => {
    // Through bytes, as the GetStatus call carries it.
    const method = loadDplProto().HeadService.service.GetStatus;
    const bytes = method.responseSerialize(statusToProto(STATUS) as never);
    expect(statusFromProto(method.responseDeserialize(bytes))).toEqual(STATUS);
  });
});

describe('loadDplProto', () => {
  it('loads the HeadService definition once', () => {
    const a = loadDplProto();
    expect(a).toBe(loadDplProto());
    expect(Object.keys(a.HeadService.service)).toEqual(['ConnectWorker', 'GetStatus', 'HasModule', 'UploadModule', 'FetchModule', 'StopJob', 'JobLogs', 'AttachJob', 'RunJob', 'UpdateWorker']);
    expect(grpc.status.UNAUTHENTICATED).toBe(16);
  });

  // The services are built from the build's JSON of the protos, not by @grpc/proto-loader: they
  // must be what proto-loader makes of the same .proto files with the same options.
  it("has proto-loader's methods, encodings and decodings", () => {
    const reference = grpc.loadPackageDefinition(
      loadSync(['dpl/v1/head.proto'], { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_DIR] }),
    ) as unknown as { dpl: { v1: { HeadService: { service: grpc.ServiceDefinition } } } };
    const theirs = reference.dpl.v1.HeadService.service;
    const ours = loadDplProto().HeadService.service as unknown as grpc.ServiceDefinition;
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    for (const name of Object.keys(theirs)) {
      const [a, b] = [ours[name]!, theirs[name]!];
      expect({ name, path: a.path, requestStream: a.requestStream, responseStream: a.responseStream, originalName: a.originalName }).toEqual({
        name,
        path: b.path,
        requestStream: b.requestStream,
        responseStream: b.responseStream,
        originalName: b.originalName,
      });
      // An empty message both ways, and its defaults as decoded.
      expect(a.requestSerialize({})).toEqual(b.requestSerialize({}));
      expect(a.responseDeserialize(Buffer.alloc(0))).toEqual(b.responseDeserialize(Buffer.alloc(0)));
    }
    // A message with every kind of field: nested, repeated, maps, 64-bit integers, enums as names.
    const bytes = ours.GetStatus!.responseSerialize(statusToProto(STATUS));
    expect(bytes).toEqual(theirs.GetStatus!.responseSerialize(statusToProto(STATUS)));
    expect(ours.GetStatus!.responseDeserialize(bytes)).toEqual(theirs.GetStatus!.responseDeserialize(bytes));
    // The worker stream's busiest messages, bytes fields and 64-bit integers in them.
    const messages: [string, 'request' | 'response', object][] = [
      ['ConnectWorker', 'response', { assign_batch: { calls: [{ call_id: '7', job_id: 'j', task: 'round', attempt: 2, assignment: '18446744073709551615', inputs: [{ object_id: 'o1', offset: '2', rows: '3', inline_ipc: Buffer.from([1, 2, 3]) }] }], release: ['o0'] } }],
      ['ConnectWorker', 'request', { results: { done: [{ call_id: '7', job_id: 'j', output_id: 'o2', rows: '10', inline_ipc: Buffer.from([4]), stage_rows: ['1', '2'], run_us: '99' }] } }],
      ['ConnectWorker', 'request', { heartbeat: { seq: '3', sent_at_ms: '-5', object_store: { memory_bytes: '1', views: '2' } } }],
    ];
    for (const [name, dir, message] of messages) {
      const ser = (d: grpc.MethodDefinition<object, object>) => (dir === 'request' ? d.requestSerialize : d.responseSerialize);
      const de = (d: grpc.MethodDefinition<object, object>) => (dir === 'request' ? d.requestDeserialize : d.responseDeserialize);
      const encoded = ser(theirs[name]!)(message);
      expect(encoded.length).toBeGreaterThan(4);
      expect(ser(ours[name]!)(message)).toEqual(encoded);
      expect(de(ours[name]!)(encoded)).toEqual(de(theirs[name]!)(encoded));
    }
    expect(() => ours.GetStatus!.requestSerialize([] as never)).toThrow(/GetStatusRequest to send is an array/);
  });
});

describe('chunks', () => {
  it('round-trips bytes through chunks of any size, into an aligned buffer', () => {
    const bytes = Uint8Array.from({ length: 10_007 }, (_, i) => i % 251);
    for (const size of [1, 7, 1024, 10_007, 20_000]) {
      for (const known of [true, false]) {
        const a = new ChunkAssembler(known ? bytes.byteLength : undefined);
        for (const c of chunksOf(bytes, size)) a.add(c);
        const out = a.finish();
        expect(out.byteOffset % 8).toBe(0);
        expect(Buffer.from(out).equals(Buffer.from(bytes))).toBe(true);
      }
    }
    expect([...chunksOf(new Uint8Array(0))]).toHaveLength(1);
    const short = new ChunkAssembler(10);
    short.add(new Uint8Array(4));
    expect(() => short.finish()).toThrow('expected 10 bytes, received 4');
  });
});

describe('addresses', () => {
  it('tells host:port and loopback hosts', () => {
    expect([isHostPort('127.0.0.1:6380'), isHostPort('[::1]:1'), isHostPort('host'), isHostPort(1)]).toEqual([true, true, false, false]);
    for (const h of ['127.0.0.1', '127.0.0.1:6380', 'localhost', '::1', '[::1]', '[::1]:6380']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['10.0.0.1', '0.0.0.0:6380', '::', 'example']) expect(isLoopbackHost(h)).toBe(false);
  });
});
