/**
 * The data plane: how one process fetches an object (Arrow IPC bytes) from a worker's store.
 *
 * A plain TCP stream rather than gRPC: measured on this machine, grpc-js moved a 64 MiB batch at
 * 41–66 % of a raw socket's rate, and this protocol is a raw socket with a few header bytes
 * (see bench/cluster.ts). One request at a time per connection; connections are kept for reuse.
 *
 * Request:  "DPL1" · u16 token length · token (UTF-8) · u16 id length · object id (UTF-8)
 * Response: u8 status · u64 length · that many bytes (the object when OK, else a UTF-8 message)
 */
import net from 'node:net';
import tls from 'node:tls';
import { DplError, DplErrorCode } from '@dpl/core';
import type { TlsMaterial } from './tls';

export const DATA_MAGIC = Buffer.from('DPL1');

export enum DataStatus {
  OK = 0,
  NOT_FOUND = 1,
  UNAUTHENTICATED = 2,
  BAD_REQUEST = 3,
}

/** Longest token or object id a request may carry, in bytes. */
export const MAX_DATA_FIELD_BYTES = 4096;

/** A request's bytes. */
export function encodeDataRequest(token: string | undefined, objectId: string): Buffer {
  const t = Buffer.from(token ?? '');
  const id = Buffer.from(objectId);
  if (t.byteLength > MAX_DATA_FIELD_BYTES || id.byteLength > MAX_DATA_FIELD_BYTES) {
    throw new RangeError(`a data-plane token or object id is limited to ${MAX_DATA_FIELD_BYTES} bytes`);
  }
  const out = Buffer.allocUnsafe(4 + 2 + t.byteLength + 2 + id.byteLength);
  DATA_MAGIC.copy(out, 0);
  out.writeUInt16BE(t.byteLength, 4);
  t.copy(out, 6);
  out.writeUInt16BE(id.byteLength, 6 + t.byteLength);
  id.copy(out, 8 + t.byteLength);
  return out;
}

/** A response header's bytes. */
export function encodeDataResponseHeader(status: DataStatus, length: number): Buffer {
  const out = Buffer.allocUnsafe(9);
  out.writeUInt8(status, 0);
  out.writeBigUInt64BE(BigInt(length), 1);
  return out;
}

/** The largest object a fetch accepts (Node's largest typed array). */
const MAX_OBJECT_BYTES = 2 ** 32;

/** How long a fetch waits on a peer that sends nothing before it fails as lost. @default 60 s */
export const DEFAULT_FETCH_IDLE_TIMEOUT_MS = 60_000;

/** Idle connections kept per peer. */
const MAX_IDLE_PER_PEER = 4;

/** How a response failed, for the error message. */
const STATUS_WORDS: Record<number, string> = {
  [DataStatus.NOT_FOUND]: 'not found',
  [DataStatus.UNAUTHENTICATED]: 'refused',
  [DataStatus.BAD_REQUEST]: 'bad request',
};

/** What a connection is reading now: the response of one request. */
interface Response {
  header: Buffer;
  status: DataStatus | -1;
  body: Uint8Array | undefined;
  at: number;
  /** Called once: with an error, or with nothing when the response is whole. */
  readonly done: (err?: Error) => void;
  /** The error for this fetch failing because of `why`. */
  readonly lost: (why: string) => DplError;
}

/** One connection to a data server, reused for one request after another. */
interface Conn {
  socket: net.Socket;
  /** The response being read, undefined while idle. */
  response: Response | undefined;
}

/** Where a plain TCP connection reads the header and small responses (bodies go straight to their buffer). */
const SCRATCH_BYTES = 64 * 1024;

type LocalReader = (objectId: string) => Promise<Uint8Array | undefined>;

/** The object stores of the workers that run in this process, by the data address they advertise. */
const localStores = new Map<string, LocalReader>();

/**
 * Lets every fetcher in this process read the objects of a worker that runs in it (the embedded
 * cluster of `dpl run`: head, worker and client in one process) from its store, instead of over a
 * loopback connection to its own data server. The bytes are the store's: read them, never write.
 * Returns the function that ends it (when the worker stops).
 */
export function serveInProcess(address: string, read: LocalReader): () => void {
  localStores.set(address, read);
  return () => {
    if (localStores.get(address) === read) localStores.delete(address);
  };
}

/**
 * Fetches objects from workers' data servers into 8-byte aligned buffers (so Arrow reads them in
 * place), keeping a few idle connections per peer. Over plain TCP the socket reads a body
 * straight into its destination (`onread` with the destination's next slice): no chunks, no
 * copies, the rate of the best reader Node has (bench:cluster). TLS reads through 'data' events.
 */
export class ObjectFetcher {
  private fetched = 0;
  private readonly idle = new Map<string, Conn[]>();
  private closed = false;

  /**
   * With `tls`, connections are TLS and the worker's certificate is checked against its CA.
   * A peer that sends nothing for `idleTimeoutMs` while a fetch waits on it (it accepted the
   * request and hangs) fails the fetch as lost.
   */
  constructor(
    private readonly token: string | undefined,
    private readonly tls?: TlsMaterial,
    private readonly idleTimeoutMs = DEFAULT_FETCH_IDLE_TIMEOUT_MS,
  ) {}

  /**
   * The object's bytes.
   * @throws DplError(OBJECT_LOST) when the owner is unreachable or no longer has it;
   *   DplError(UNAUTHENTICATED) when it refuses the token.
   */
  async fetch(address: string, objectId: string): Promise<Uint8Array> {
    const local = localStores.get(address);
    if (local !== undefined) {
      const bytes = await local(objectId);
      if (bytes !== undefined && bytes.byteOffset % 8 === 0) {
        this.fetched += bytes.byteLength;
        return bytes;
      }
      // Not there (released meanwhile): the data server gives the answer and its error.
    }
    const reused = this.idle.get(address)?.pop();
    if (reused !== undefined) {
      reused.socket.ref();
      try {
        return await this.request(reused, address, objectId);
      } catch (e) {
        // The peer may have closed a kept connection meanwhile: then try a new one.
        if (!(e instanceof StaleConnection)) throw e;
      }
    }
    try {
      return await this.request(this.open(address), address, objectId);
    } catch (e) {
      throw e instanceof StaleConnection ? e.error : e;
    }
  }

  /** Bytes fetched so far. */
  get bytesFetched(): number {
    return this.fetched;
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
  }

  private open(address: string): Conn {
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(i + 1));
    const conn: Conn = { socket: undefined as unknown as net.Socket, response: undefined };
    if (this.tls === undefined) {
      const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
      conn.socket = net.connect({
        host,
        port,
        noDelay: true,
        onread: {
          // The next read lands in the body being read, else in the scratch buffer.
          buffer: () => {
            const r = conn.response;
            return r?.body !== undefined && r.at < r.body.byteLength ? r.body.subarray(r.at) : scratch;
          },
          callback: (n: number, buf: Uint8Array): boolean => {
            received(conn, n, buf);
            return true;
          },
        },
      });
    } else {
      conn.socket = tls.connect({ host, port, ca: this.tls.ca, servername: net.isIP(host) === 0 ? host : undefined }).setNoDelay(true);
      conn.socket.on('data', (chunk: Buffer) => received(conn, chunk.byteLength, chunk));
    }
    const socket = conn.socket;
    socket.setKeepAlive(true, 10_000);
    // While idle, a connection that fails or closes leaves the idle list (requests listen too).
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const list = this.idle.get(address);
      const k = list?.indexOf(conn) ?? -1;
      if (k >= 0) list!.splice(k, 1);
    });
    return conn;
  }

  private request(conn: Conn, address: string, objectId: string): Promise<Uint8Array> {
    const { socket } = conn;
    return new Promise<Uint8Array>((resolve, reject) => {
      const lost = (why: string) => new DplError(DplErrorCode.OBJECT_LOST, `cannot fetch object ${objectId} from ${address}: ${why}`);
      const response: Response = {
        header: EMPTY,
        status: -1,
        body: undefined,
        at: 0,
        lost,
        done: (err?: Error): void => {
          conn.response = undefined;
          socket.setTimeout(0);
          socket.off('timeout', onTimeout);
          socket.off('error', onError);
          socket.off('close', onClose);
          if (err !== undefined) {
            socket.destroy();
            reject(err);
            return;
          }
          this.keep(address, conn);
          const body = response.body!;
          if (response.status === DataStatus.OK) {
            this.fetched += body.byteLength;
            resolve(body);
            return;
          }
          const message = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
          reject(
            response.status === DataStatus.UNAUTHENTICATED
              ? new DplError(DplErrorCode.UNAUTHENTICATED, `worker ${address} refused the fetch of object ${objectId}: ${message}`)
              : lost(`${STATUS_WORDS[response.status] ?? `status ${response.status}`}: ${message}`),
          );
        },
      };
      const onError = (e: Error): void =>
        response.done(response.body === undefined ? new StaleConnection(lost(e.message)) : lost(e.message));
      const onClose = (): void =>
        response.done(
          response.body === undefined
            ? new StaleConnection(lost('the connection closed'))
            : lost(`the connection closed after ${response.at} of ${response.body.byteLength} bytes`),
        );
      const idleS = this.idleTimeoutMs / 1000;
      const onTimeout = (): void => response.done(lost(`the worker sent nothing for ${idleS} s while the fetch waited (it hangs, or the network does)`));
      conn.response = response;
      socket.on('error', onError);
      socket.on('close', onClose);
      // Inactivity, not length: a large object arriving steadily never times out.
      socket.on('timeout', onTimeout);
      socket.setTimeout(this.idleTimeoutMs);
      socket.write(encodeDataRequest(this.token, objectId));
    });
  }

  private keep(address: string, conn: Conn): void {
    const list = this.idle.get(address) ?? [];
    if (this.closed || list.length >= MAX_IDLE_PER_PEER) {
      conn.socket.destroy();
      return;
    }
    list.push(conn);
    this.idle.set(address, list);
    conn.socket.unref(); // an idle connection does not keep the process alive
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * `n` bytes arrived in `buf`: the body's own slice (read in place), or the scratch buffer or a
 * TLS chunk, whose bytes are the header or go into the body.
 */
function received(conn: Conn, n: number, buf: Uint8Array): void {
  const r = conn.response;
  if (r === undefined) {
    // Bytes no request asked for: the peer does not speak the protocol.
    conn.socket.destroy();
    return;
  }
  const lost = r.lost;
  let chunk = buf.subarray(0, n);
  if (r.body !== undefined && chunk.buffer === r.body.buffer && chunk.byteOffset === r.body.byteOffset + r.at) {
    r.at += n; // read in place
  } else {
    if (r.body === undefined) {
      r.header = r.header.byteLength === 0 ? Buffer.from(chunk) : Buffer.concat([r.header, chunk]);
      if (r.header.byteLength < 9) return;
      r.status = r.header.readUInt8(0);
      const length = r.header.readBigUInt64BE(1);
      if (length > BigInt(MAX_OBJECT_BYTES)) return r.done(lost(`the worker announced ${length} bytes, over the ${MAX_OBJECT_BYTES}-byte limit`));
      r.body = new Uint8Array(Number(length));
      chunk = r.header.subarray(9);
    }
    const take = Math.min(chunk.byteLength, r.body.byteLength - r.at);
    r.body.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), r.at);
    r.at += take;
    if (take < chunk.byteLength) return r.done(lost('the worker sent more bytes than it announced'));
  }
  if (r.at === r.body.byteLength) r.done();
}

/** A failure before any response byte: the connection, not the object, may be the problem. */
class StaleConnection extends Error {
  constructor(readonly error: DplError) {
    super(error.message);
  }
}
