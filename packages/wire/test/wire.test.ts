import * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode, TaskError, isDplError } from '@dpl/core';
import {
  ChunkAssembler,
  chunksOf,
  errorFromProto,
  errorToProto,
  isHostPort,
  isLoopbackHost,
  loadDplProto,
  presentedToken,
  resourcesFromProto,
  resourcesToProto,
  statusFromProto,
  statusToProto,
  tokenMatches,
  tokenMetadata,
  type ClusterStatus,
} from '@dpl/wire';

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
    const status: ClusterStatus = {
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
    const type = loadDplProto().GetStatusResponse;
    expect(type).toBeDefined();
    expect(statusFromProto(statusToProto(status) as never)).toEqual(status);
  });
});

describe('loadDplProto', () => {
  it('loads the HeadService definition once', () => {
    const a = loadDplProto();
    expect(a).toBe(loadDplProto());
    expect(Object.keys(a.HeadService.service)).toEqual(['ConnectWorker', 'GetStatus', 'HasModule', 'UploadModule', 'FetchModule', 'StopJob', 'JobLogs', 'AttachJob', 'RunJob', 'UpdateWorker']);
    expect(grpc.status.UNAUTHENTICATED).toBe(16);
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
