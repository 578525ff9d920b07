import net from 'node:net';
import { DplErrorCode } from '@dpl/core';
import { DataStatus, ObjectFetcher, encodeDataRequest, serveInProcess } from '@dpl/wire';
import { ObjectStore } from '../src/store/object-store';
import { startDataServer, type DataServer } from '../src/data/data-server';
import { rejectionOf } from '../../../test/helpers/errors';
import { waitFor } from '../../../test/helpers/cli';

/** What a raw client gets back for the bytes it sends: the status and the message. */
function rawExchange(port: number, bytes: Buffer): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.byteLength >= 9 && got.byteLength >= 9 + Number(got.readBigUInt64BE(1))) {
        socket.destroy();
        resolve({ status: got.readUInt8(0), message: got.toString('utf8', 9) });
      }
    });
    socket.on('error', reject);
    socket.write(bytes);
  });
}

describe('the data plane', () => {
  let store: ObjectStore;
  let server: DataServer;
  let fetcher: ObjectFetcher;
  let address: string;

  beforeEach(async () => {
    store = new ObjectStore();
    server = await startDataServer(store, '127.0.0.1', 'sesame');
    address = `127.0.0.1:${server.port}`;
    fetcher = new ObjectFetcher('sesame');
  });

  afterEach(async () => {
    fetcher.close();
    await server.stop();
  });

  it('fetches objects byte for byte into 8-byte aligned buffers, many at once and over kept connections', async () => {
    const objects = Array.from({ length: 12 }, (_, i) => Uint8Array.from({ length: 1000 * i + 3 }, (_, k) => (k * 7 + i) % 256));
    objects.forEach((o, i) => store.put(`j/o${i}`, o));
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all(objects.map((_, i) => fetcher.fetch(address, `j/o${i}`)));
      got.forEach((g, i) => {
        expect(Buffer.from(g).equals(Buffer.from(objects[i]!))).toBe(true);
        expect(g.byteOffset % 8).toBe(0);
      });
    }
    const total = objects.reduce((n, o) => n + o.byteLength, 0);
    expect(fetcher.bytesFetched).toBe(2 * total);
    expect(server.bytesServed).toBe(2 * total);
  });

  it('fetches an empty object and a 24 MiB one', async () => {
    store.put('empty', new Uint8Array(0));
    const big = new Uint8Array(24 * 1024 * 1024).fill(9);
    big[big.length - 1] = 1;
    store.put('big', big);
    expect((await fetcher.fetch(address, 'empty')).byteLength).toBe(0);
    const got = await fetcher.fetch(address, 'big');
    expect(got.byteLength).toBe(big.byteLength);
    expect(got[got.length - 1]).toBe(1);
  });

  it('reports an object the worker does not hold as lost, naming it, and keeps serving', async () => {
    store.put('here', Uint8Array.of(1, 2, 3));
    const e = await rejectionOf(fetcher.fetch(address, 'job-1/gone'));
    expect(e).toMatchObject({ code: DplErrorCode.OBJECT_LOST });
    expect(e.message).toContain('job-1/gone');
    expect(e.message).toContain('not on this worker');
    expect([...(await fetcher.fetch(address, 'here'))]).toEqual([1, 2, 3]);
  });

  it('refuses a missing or wrong token', async () => {
    store.put('x', Uint8Array.of(1));
    for (const token of [undefined, 'wrong']) {
      const other = new ObjectFetcher(token);
      const e = await rejectionOf(other.fetch(address, 'x'));
      other.close();
      expect(e).toMatchObject({ code: DplErrorCode.UNAUTHENTICATED });
      expect(e.message).toContain('--token');
    }
  });

  it('answers malformed requests with a clear refusal and goes on serving', async () => {
    store.put('x', Uint8Array.of(5));
    const http = await rawExchange(server.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(http.status).toBe(DataStatus.BAD_REQUEST);
    expect(http.message).toContain('not a dpl data-plane request');
    const long = encodeDataRequest('sesame', 'x');
    long.writeUInt16BE(60_000, 4); // a token length far over the limit
    const tooLong = await rawExchange(server.port, long);
    expect(tooLong.status).toBe(DataStatus.BAD_REQUEST);
    expect(tooLong.message).toContain('4096-byte limit');
    expect([...(await fetcher.fetch(address, 'x'))]).toEqual([5]);
  });

  it('reports a worker that is gone as a lost object', async () => {
    await server.stop();
    const e = await rejectionOf(fetcher.fetch(address, 'x'));
    expect(e).toMatchObject({ code: DplErrorCode.OBJECT_LOST });
    expect(e.message).toContain(address);
    server = await startDataServer(store, '127.0.0.1', 'sesame'); // for afterEach
  });

  it('gives up on a peer that takes the request and sends nothing, as a lost object, and keeps using kept connections', async () => {
    const silent = net.createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const hung = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const f = new ObjectFetcher('sesame', undefined, 300);
    try {
      const e = await rejectionOf(f.fetch(hung, 'x'));
      expect(e).toMatchObject({ code: DplErrorCode.OBJECT_LOST });
      expect(e.message).toBe(`cannot fetch object x from ${hung}: the worker sent nothing for 0.3 s while the fetch waited (it hangs, or the network does)`);
      // A kept connection fetching many objects, each quickly: no timeout, no listener left behind.
      store.put('k', new Uint8Array(64).fill(3));
      for (let i = 0; i < 20; i++) expect((await f.fetch(address, 'k')).byteLength).toBe(64);
      await new Promise((r) => setTimeout(r, 400)); // longer than the timeout, while idle: nothing happens
      expect((await f.fetch(address, 'k')).byteLength).toBe(64);
      const kept = (f as unknown as { idle: Map<string, { socket: net.Socket }[]> }).idle.get(address)!;
      expect(kept.every((c) => c.socket.listenerCount('timeout') === 0)).toBe(true);
    } finally {
      f.close();
      silent.close();
    }
  });

  it('refuses a peer that sends more bytes than it announced, or closes before the end', async () => {
    /** A fake data server answering each request with `reply` (after the request's bytes). */
    const fake = async (reply: Buffer, close: boolean): Promise<{ address: string; stop(): void }> => {
      const srv = net.createServer((socket) => {
        socket.once('data', () => (close ? socket.end(reply) : socket.write(reply)));
        socket.on('error', () => undefined);
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      return { address: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, stop: () => srv.close() };
    };
    const header = (n: number): Buffer => {
      const h = Buffer.alloc(9);
      h.writeUInt8(DataStatus.OK, 0);
      h.writeBigUInt64BE(BigInt(n), 1);
      return h;
    };
    // Small and big bodies: one read into the scratch buffer, and reads in place into the body.
    for (const n of [16, 3 << 20]) {
      const extra = await fake(Buffer.concat([header(n), Buffer.alloc(n + 5, 7)]), false);
      const short = await fake(Buffer.concat([header(n), Buffer.alloc(n >> 1, 7)]), true);
      const f = new ObjectFetcher(undefined);
      try {
        if (n === 16) {
          const a = await rejectionOf(f.fetch(extra.address, 'x'));
          expect(a.message).toContain('the worker sent more bytes than it announced');
        } else {
          // A big body is read in place up to its announced end and is whole; the surplus then
          // arrives with no request, and the connection is dropped, not kept for the next one.
          expect((await f.fetch(extra.address, 'x')).byteLength).toBe(n);
          await waitFor(() => (f as unknown as { idle: Map<string, unknown[]> }).idle.get(extra.address)?.length === 0, {
            timeoutMs: 5_000,
            what: 'the connection that sent a surplus to be dropped',
          });
        }
        const b = await rejectionOf(f.fetch(short.address, 'x'));
        expect(b).toMatchObject({ code: DplErrorCode.OBJECT_LOST });
        expect(b.message).toContain(`the connection closed after ${n >> 1} of ${n} bytes`);
      } finally {
        f.close();
        extra.stop();
        short.stop();
      }
    }
  });
});

describe('objects of a worker in the same process', () => {
  it('are read from its store, not over its data server, until it stops serving them; a released one gets the server’s answer', async () => {
    const store = new ObjectStore();
    const server = await startDataServer(store, '127.0.0.1', 'sesame');
    const address = `127.0.0.1:${server.port}`;
    const fetcher = new ObjectFetcher('sesame');
    const stop = serveInProcess(address, (id) => store.read(id));
    try {
      const bytes = new Uint8Array(4096).fill(3);
      store.put('o', bytes);
      const got = await fetcher.fetch(address, 'o');
      expect(got).toBe(bytes); // the store's own bytes, no copy
      expect(server.bytesServed).toBe(0);
      expect(fetcher.bytesFetched).toBe(4096);
      store.delete('o');
      expect((await rejectionOf(fetcher.fetch(address, 'o'))).message).toContain('o');
      store.put('p', bytes);
      stop();
      const over = await fetcher.fetch(address, 'p');
      expect(over).not.toBe(bytes);
      expect([...over]).toEqual([...bytes]);
      expect(server.bytesServed).toBe(4096);
    } finally {
      stop();
      fetcher.close();
      await server.stop();
    }
  });
});
