/**
 * gRPC calls between parts of one process without a socket: a client whose calls run a
 * service's handlers directly. `dpl run` links its head, worker and client this way: the same
 * handlers and messages as over the network, with defaults and types exactly as grpc-js gives
 * them, but no HTTP/2, no loopback sockets and no wake-ups of the event loop per message. A
 * message of a dpl method is copied into the form the codec would give (`message-copy.ts`,
 * without encoding it); one the copy cannot make exactly, or of another service, is serialized
 * and parsed with the service's own codecs. Byte arrays of {@link BY_REFERENCE_MIN_BYTES} or
 * more (task outputs on their way to the client), and copied messages' 8-byte aligned ones,
 * cross by reference: the codec would copy each twice and hand the receiver a view at an odd
 * offset, which Arrow cannot read in place. The receiver gets a Buffer over the sender's memory;
 * neither side writes into a message's bytes once it is sent.
 *
 * Covered: unary, client-streaming, server-streaming and bidi calls as the dpl services use
 * them: `write`/`end`/`cancel`, `pause`/`resume` with backpressure (`write` returns false past
 * 16 undelivered messages, then `'drain'`), errors emitted by a handler as the client's
 * `ServiceError`, `'cancelled'` on the server when the client cancels or the client is closed.
 * Messages are delivered in order, on a later turn of the event loop, as from a network.
 * @internal
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { messageCopier, type MessageCopier } from './message-copy';
import { dplMethodTypes } from './proto';

/** Undelivered messages past which `write()` returns false (grpc-js's object-mode default). */
const HIGH_WATER_MARK = 16;

/** Byte arrays at least this long cross by reference, not through the codec. */
export const BY_REFERENCE_MIN_BYTES = 64 * 1024;

/** Where a large byte array sat in a message: the keys down to it. */
type Shared = { path: (string | number)[]; bytes: Uint8Array }[];

/** A message on its way: copied already, or encoded. */
type Msg = { kind: 'msg'; value: unknown; bytes: undefined; shared: undefined } | { kind: 'msg'; value: undefined; bytes: Buffer; shared: Shared | undefined };

type Item = Msg | { kind: 'end' } | { kind: 'error'; status: Partial<grpc.StatusObject> };

const EMPTY = new Uint8Array(0);

/**
 * Records the large byte arrays in `value` (to `depth` levels of objects and arrays). `path` is
 * the way down to `value`, one stack for the whole walk: copied only where an array is found.
 */
function findLarge(value: object, path: (string | number)[], found: Shared, depth: number): void {
  if (depth === 0) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v !== 'object' || v === null) continue;
      path.push(i);
      findLarge(v, path, found, depth - 1);
      path.pop();
    }
    return;
  }
  if (ArrayBuffer.isView(value)) return;
  for (const key of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[key];
    if (typeof v !== 'object' || v === null) continue;
    path.push(key);
    if (v instanceof Uint8Array) {
      if (v.byteLength >= BY_REFERENCE_MIN_BYTES) found.push({ path: [...path], bytes: v });
    } else findLarge(v, path, found, depth - 1);
    path.pop();
  }
}

/** Sets the value at `path` in `root`. */
function setAt(root: unknown, path: (string | number)[], value: unknown): void {
  let holder = root as Record<string | number, unknown>;
  for (let i = 0; i < path.length - 1; i++) holder = holder[path[i]!] as Record<string | number, unknown>;
  holder[path[path.length - 1]!] = value;
}

function getAt(root: unknown, path: (string | number)[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

/**
 * A message through the codec, its large byte arrays left out (empty while it is encoded, then
 * put back: encoding is synchronous, so nothing sees the message in between).
 */
function encode(serialize: grpc.serialize<unknown>, msg: unknown): Msg {
  const found: Shared = [];
  if (typeof msg === 'object' && msg !== null) findLarge(msg, [], found, 8);
  if (found.length === 0) return { kind: 'msg', value: undefined, bytes: serialize(msg), shared: undefined };
  for (const f of found) setAt(msg, f.path, EMPTY);
  try {
    return { kind: 'msg', value: undefined, bytes: serialize(msg), shared: found };
  } finally {
    for (const f of found) setAt(msg, f.path, f.bytes);
  }
}

/** The message the codec makes of `item`, with the large byte arrays put back where they were. */
function decode(deserialize: grpc.deserialize<unknown>, item: Msg & { bytes: Buffer }): unknown {
  const value = deserialize(item.bytes);
  for (const f of item.shared ?? []) {
    // Only where the codec kept a field of that name: a key the message type lacks stays out.
    const there = getAt(value, f.path);
    if (there instanceof Uint8Array && there.byteLength === 0) setAt(value, f.path, Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength));
  }
  return value;
}

/** How messages of one type cross: copied where the copy is exact, else through the codec. */
class Crossing {
  constructor(
    private readonly serialize: grpc.serialize<unknown>,
    private readonly deserialize: grpc.deserialize<unknown>,
    private readonly copy: MessageCopier | undefined,
  ) {}

  /** What the receiver will get, fixed now (the sender may change `msg` once this returns). */
  pack(msg: unknown): Msg {
    const value = this.copy?.(msg);
    if (value !== undefined) return { kind: 'msg', value, bytes: undefined, shared: undefined };
    return encode(this.serialize, msg);
  }

  unpack(item: Msg): unknown {
    return item.bytes === undefined ? item.value : decode(this.deserialize, item);
  }
}

/** How a method's requests and responses cross. */
interface Crossings {
  request: Crossing;
  response: Crossing;
}

function crossings(def: grpc.MethodDefinition<unknown, unknown>): Crossings {
  const types = dplMethodTypes(def.path);
  return {
    request: new Crossing(def.requestSerialize, def.requestDeserialize, types && messageCopier(types.request, BY_REFERENCE_MIN_BYTES)),
    response: new Crossing(def.responseSerialize, def.responseDeserialize, types && messageCopier(types.response, BY_REFERENCE_MIN_BYTES)),
  };
}

/**
 * One direction of a call: what the sender wrote, delivered to the receiver in order on a
 * later turn, held back while the receiver is paused.
 */
class Pipe {
  private readonly items: Item[] = [];
  private scheduled = false;
  private paused = false;
  private full = false;
  private done = false;

  constructor(
    private readonly deliver: (item: Item) => void,
    private readonly drained: () => void,
  ) {}

  get pending(): number {
    return this.items.length;
  }

  push(item: Item): boolean {
    if (this.done) return false;
    if (item.kind !== 'msg') this.done = true;
    this.items.push(item);
    this.schedule();
    if (this.items.length >= HIGH_WATER_MARK) this.full = true;
    return !this.full;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  /** Nothing more is delivered (the call is over). */
  close(): void {
    this.done = true;
    this.items.length = 0;
  }

  private schedule(): void {
    if (this.scheduled || this.items.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      while (this.items.length > 0 && !(this.paused && this.items[0]!.kind === 'msg')) this.deliver(this.items.shift()!);
      if (this.full && this.items.length < HIGH_WATER_MARK) {
        this.full = false;
        this.drained();
      }
    });
  }
}

function serviceError(status: Partial<grpc.StatusObject>): grpc.ServiceError {
  const code = status.code ?? grpc.status.UNKNOWN;
  const details = status.details ?? '';
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: status.metadata ?? new grpc.Metadata(),
  });
}

/** The status of an error a handler emits or passes to its callback. */
function statusOf(e: unknown): Partial<grpc.StatusObject> {
  const o = (e ?? {}) as Partial<grpc.StatusObject> & { message?: string };
  return { code: typeof o.code === 'number' ? o.code : grpc.status.UNKNOWN, details: o.details ?? o.message ?? '', metadata: o.metadata };
}

/** The handler's side of one call. */
class ServerCall extends EventEmitter {
  cancelled = false;
  writableEnded = false;
  request: unknown;
  /** Client → handler. */
  readonly inbound: Pipe;

  constructor(
    readonly metadata: grpc.Metadata,
    private readonly cross: Crossings,
    private readonly toClient: Pipe,
  ) {
    super();
    this.inbound = new Pipe(
      (item) => {
        if (item.kind === 'msg') this.emit('data', cross.request.unpack(item));
        else if (item.kind === 'end') this.emit('end');
      },
      () => undefined,
    );
    // As in grpc-js: an error the handler emits ends the call with its status.
    this.on('error', (e: unknown) => {
      if (this.writableEnded) return;
      this.writableEnded = true;
      this.toClient.push({ kind: 'error', status: statusOf(e) });
    });
  }

  getPeer(): string {
    return 'in-process';
  }

  write(msg: unknown): boolean {
    if (this.writableEnded || this.cancelled) return false;
    return this.toClient.push(this.cross.response.pack(msg));
  }

  end(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    if (!this.cancelled) this.toClient.push({ kind: 'end' });
  }

  /** The client went away. */
  cancel(): void {
    if (this.cancelled || this.writableEnded) return;
    this.cancelled = true;
    this.inbound.close();
    this.emit('cancelled');
  }
}

/** The client's side of one call. */
class ClientCall extends EventEmitter {
  /** Handler → client. */
  readonly fromServer: Pipe;
  server: ServerCall | undefined;
  private over = false;

  constructor(
    private readonly cross: Crossings,
    onMessage?: (value: unknown) => void,
    onStatus?: (err: grpc.ServiceError | null) => void,
  ) {
    super();
    this.fromServer = new Pipe(
      (item) => {
        if (item.kind === 'msg') {
          const value = cross.response.unpack(item);
          if (onMessage !== undefined) onMessage(value);
          else this.emit('data', value);
          return;
        }
        this.over = true;
        if (item.kind === 'end') {
          onStatus?.(null);
          this.emit('end');
          this.emit('status', { code: grpc.status.OK, details: 'OK', metadata: new grpc.Metadata() });
        } else {
          const err = serviceError(item.status);
          if (onStatus !== undefined) onStatus(err);
          else this.emit('error', err);
          this.emit('status', { code: err.code, details: err.details, metadata: err.metadata });
        }
        this.emit('close');
      },
      () => this.server?.emit('drain'),
    );
  }



  write(msg: unknown): boolean {
    const server = this.server;
    if (server === undefined || this.over) return false;
    return server.inbound.push(this.cross.request.pack(msg));
  }

  end(): void {
    this.server?.inbound.push({ kind: 'end' });
  }

  pause(): this {
    this.fromServer.pause();
    return this;
  }

  resume(): this {
    this.fromServer.resume();
    return this;
  }

  /** Cancels the call: the handler sees 'cancelled', this side an error with CANCELLED. */
  cancel(): void {
    if (this.over) return;
    this.server?.cancel();
    this.fromServer.close();
    this.over = true;
    setImmediate(() => {
      this.emit('error', serviceError({ code: grpc.status.CANCELLED, details: 'Cancelled on client' }));
      this.emit('close');
    });
  }
}

/** Methods of a client made by {@link inProcessClient}, plus `close()`. */
export interface InProcessClient {
  close(): void;
  [method: string]: unknown;
}

/**
 * A client of `service` whose calls run `handlers` in this process. Cast it to the service's
 * generated client type; it has the same methods (with the argument shapes dpl uses: request,
 * metadata, options and callback for unary calls).
 */
export function inProcessClient(service: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation): InProcessClient {
  let closed = false;
  const client: InProcessClient = {
    /** Like grpc-js: calls under way go on; new ones fail. */
    close() {
      closed = true;
    },
  };
  for (const [name, def] of Object.entries(service) as [string, grpc.MethodDefinition<unknown, unknown>][]) {
    const handler = handlers[name] as ((call: ServerCall, callback?: grpc.sendUnaryData<unknown>) => void) | undefined;
    if (handler === undefined) continue;
    const cross = crossings(def);
    client[name] = (...args: unknown[]): ClientCall => {
      // Arguments as grpc-js takes them: [request,] [metadata,] [options,] [callback].
      const callback = typeof args[args.length - 1] === 'function' ? (args.pop() as (e: grpc.ServiceError | null, v?: unknown) => void) : undefined;
      const request = def.requestStream ? undefined : args.shift();
      const metadata = args[0] instanceof grpc.Metadata ? args[0].clone() : new grpc.Metadata();
      let reply: unknown;
      const call = new ClientCall(
        cross,
        callback === undefined ? undefined : (v) => (reply = v),
        callback === undefined ? undefined : (err) => callback(err, err === null ? reply : undefined),
      );
      const server = new ServerCall(metadata, cross, call.fromServer);
      call.server = server;
      if (closed) {
        call.fromServer.push({ kind: 'error', status: { code: grpc.status.UNAVAILABLE, details: 'the in-process channel is closed' } });
        return call;
      }
      // The request crosses like any message.
      if (!def.requestStream) server.request = cross.request.unpack(cross.request.pack(request));
      setImmediate(() => {
        if (call.server?.cancelled) return;
        try {
          if (def.responseStream) handler(server);
          else {
            handler(server, (err, value) => {
              if (server.writableEnded) return;
              if (err) server.emit('error', err);
              else {
                server.write(value);
                server.end();
              }
            });
          }
        } catch (e) {
          server.emit('error', { code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) });
        }
      });
      return call;
    };
  }
  return client;
}
