/**
 * The worker's data server: serves objects from its store to other workers and the head over the
 * data-plane protocol of `@dpl/wire` (a TCP stream; see data-plane.ts there). The stored bytes are
 * written as they are, without a copy.
 */
import { open, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import {
  ConnectionGuard,
  DATA_MAGIC,
  DataStatus,
  MAX_DATA_FIELD_BYTES,
  encodeDataResponseHeader,
  tokenMatches,
  type TlsMaterial,
} from '@dpl/wire';
import type { ObjectStore } from '../store/object-store';

export interface DataServer {
  readonly port: number;
  /** Bytes served so far (for tests and metrics). */
  readonly bytesServed: number;
  stop(): Promise<void>;
}

/** An authenticated connection that sends nothing for this long is closed. */
const IDLE_TIMEOUT_MS = 5 * 60_000;

/**
 * Serves `store` on `host`:`port` (0 picks a free port); with `tlsMaterial`, over TLS. A
 * connection must send an authenticated request within the guard's deadline, and the number of
 * connections is bounded, so a flood of connections cannot take the worker's descriptors.
 */
export async function startDataServer(
  store: ObjectStore,
  host: string,
  token: string | undefined,
  tlsMaterial?: TlsMaterial,
  port = 0,
): Promise<DataServer> {
  let served = 0;
  // Limits from the open-file limit (see ConnectionGuard).
  const guard = new ConnectionGuard();
  const onConnection = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => undefined); // a peer that goes away is not this worker's failure
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let authenticated = false;
    let pending: Buffer = Buffer.alloc(0);
    // Answers go out in request order, refusals too; a spilled object streams from its file
    // before the next.
    let answering: Promise<void> = Promise.resolve();
    const queue = (answer: () => void | Promise<void>): void => {
      answering = answering.then(answer).catch(() => void socket.destroy());
    };
    const refuse = (status: DataStatus, message: string): void =>
      queue(() => {
        reply(socket, status, message);
        socket.end();
      });
    const onData = (chunk: Buffer): void => {
      pending = pending.byteLength === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        const r = parseRequest(pending);
        if (r === undefined) return; // wait for more bytes
        if ('error' in r) {
          socket.off('data', onData);
          pending = Buffer.alloc(0);
          return refuse(DataStatus.BAD_REQUEST, r.error);
        }
        pending = pending.subarray(r.used);
        if (!tokenMatches(token, `Bearer ${r.token}`)) {
          socket.off('data', onData);
          return refuse(DataStatus.UNAUTHENTICATED, 'missing or wrong cluster token; pass the token the head was started with (--token-file, or DPL_TOKEN)');
        }
        if (!authenticated) {
          authenticated = true;
          guard.authenticatedPeer(peer);
        }
        const id = r.objectId;
        queue(async () => {
          const obj = store.open(id);
          if (obj === undefined) {
            reply(socket, DataStatus.NOT_FOUND, `object ${id} is not on this worker (released, or the worker restarted)`);
            return;
          }
          if ('path' in obj) {
            await streamFile(socket, obj.path, obj.size);
            served += obj.size;
            return;
          }
          // A view's rows are encoded into one stream here: the fetcher has not the objects it names.
          const bytes = 'bytes' in obj ? obj.bytes : await store.read(id);
          if (bytes === undefined) {
            reply(socket, DataStatus.NOT_FOUND, `object ${id} is not on this worker (released, or the worker restarted)`);
            return;
          }
          socket.write(encodeDataResponseHeader(DataStatus.OK, bytes.byteLength));
          socket.write(bytes);
          served += bytes.byteLength;
        });
      }
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        onData(chunk);
      } catch {
        socket.destroy(); // a request this server cannot read is the peer's problem
      }
    });
  };
  // Every raw TCP connection is counted and timed from its first moment, before any TLS; a
  // plain one is served as it comes, a TLS one once its handshake is done.
  const server =
    tlsMaterial === undefined ? net.createServer() : tls.createServer({ key: tlsMaterial.key, cert: tlsMaterial.cert }, onConnection);
  server.on('connection', (socket: net.Socket) => {
    socket.on('error', () => undefined);
    if (guard.admit(socket) && tlsMaterial === undefined) onConnection(socket);
  });
  // A client that fails the handshake is its own problem, not this worker's.
  server.on('tlsClientError', () => undefined);
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', (err: Error) => reject(new Error(`cannot start the data server on ${host}:${port}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    port: bound,
    get bytesServed() {
      return served;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        guard.destroyAll();
        server.close(() => resolve());
      }),
  };
}

/**
 * Sends an object from its file (spilled, or a task output in shared memory) in large reads,
 * the next read under way while the socket sends the last. Were the file to vanish or shrink
 * midway (released meanwhile), the connection is closed: the fetcher then reports the object lost.
 */
async function streamFile(socket: net.Socket, path: string, size: number): Promise<void> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch {
    reply(socket, DataStatus.NOT_FOUND, `object file ${path} is gone (the object was released)`);
    return;
  }
  let gone = false;
  const onClose = (): void => void (gone = true);
  socket.once('close', onClose);
  const readAt = async (at: number): Promise<Buffer | undefined> => {
    const n = Math.min(FILE_CHUNK_BYTES, size - at);
    const buf = Buffer.allocUnsafe(n);
    const { bytesRead } = await file.read(buf, 0, n, at);
    return bytesRead === n ? buf : undefined;
  };
  let next: Promise<Buffer | undefined> | undefined;
  try {
    socket.write(encodeDataResponseHeader(DataStatus.OK, size));
    let at = 0;
    next = size > 0 ? readAt(0) : undefined;
    while (next !== undefined && !gone) {
      const chunk = await next;
      if (chunk === undefined) throw new Error('the file is shorter than its object');
      at += chunk.byteLength;
      next = at < size ? readAt(at) : undefined;
      socket.write(chunk);
      // A few chunks queued keep the socket busy while the next is read; more would hold memory.
      if (socket.writableLength > 2 * FILE_CHUNK_BYTES && !gone) await drained(socket);
    }
  } catch {
    socket.destroy();
  } finally {
    socket.off('close', onClose);
    // A read still under way when the peer left ends before its file closes.
    await next?.catch(() => undefined);
    await file.close().catch(() => undefined);
  }
}

/** Resolves when the socket has sent what it queued, or closed. */
function drained(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/** Bytes per read of an object's file. */
const FILE_CHUNK_BYTES = 4 * 1024 * 1024;

function reply(socket: net.Socket, status: DataStatus, message: string): void {
  const body = Buffer.from(message);
  socket.write(encodeDataResponseHeader(status, body.byteLength));
  socket.write(body);
}

type Parsed = { token: string; objectId: string; used: number } | { error: string };

/** One request from the front of `buf`; undefined when it is not all there yet. */
function parseRequest(buf: Buffer): Parsed | undefined {
  const have = Math.min(buf.byteLength, 4);
  if (!buf.subarray(0, have).equals(DATA_MAGIC.subarray(0, have))) {
    return { error: 'not a dpl data-plane request (this port serves worker objects to dpl workers and heads)' };
  }
  if (buf.byteLength < 6) return undefined;
  const tokenBytes = buf.readUInt16BE(4);
  if (tokenBytes > MAX_DATA_FIELD_BYTES) return { error: `a token of ${tokenBytes} bytes is over the ${MAX_DATA_FIELD_BYTES}-byte limit` };
  if (buf.byteLength < 8 + tokenBytes) return undefined;
  const idBytes = buf.readUInt16BE(6 + tokenBytes);
  if (idBytes > MAX_DATA_FIELD_BYTES) return { error: `an object id of ${idBytes} bytes is over the ${MAX_DATA_FIELD_BYTES}-byte limit` };
  const used = 8 + tokenBytes + idBytes;
  if (buf.byteLength < used) return undefined;
  return {
    token: buf.toString('utf8', 6, 6 + tokenBytes),
    objectId: buf.toString('utf8', 8 + tokenBytes, used),
    used,
  };
}
