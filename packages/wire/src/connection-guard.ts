/**
 * Limits on the connections a daemon's server accepts, so that a flood of connections (idle
 * ones, unauthenticated ones) cannot use up the daemon's file descriptors and cut it off from
 * its head, its peers or its clients.
 *
 * - At most `maxConnections` at once, and `maxPerPeer` from one remote address.
 * - A connection must authenticate within `authDeadlineMs` (the server calls
 *   {@link ConnectionGuard.authenticatedPeer} once a request carried the token), or it is closed.
 * - At the limit, a new connection takes the place of the oldest one that has not
 *   authenticated yet, if that one has had a second to do so; otherwise the new one is refused.
 *   So a flood of idle connections cannot keep the daemon's own peers out for long, and a burst
 *   of honest connections does not push its own members out before they could speak.
 *
 * The default limit follows the process's open-file limit (a quarter of it per server), since
 * the daemon needs descriptors for much else: its head session, executors, spill files.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

/** Options of a {@link ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Connections open at once. @default min(1024, a quarter of the open-file limit) */
  maxConnections?: number;
  /** Connections open at once from one remote address. @default min(256, maxConnections) */
  maxPerPeer?: number;
  /** Time a connection has to authenticate, in milliseconds. @default 5000 */
  authDeadlineMs?: number;
  /** Called when a connection is refused or closed by the guard (for a log line). */
  onRefused?: (reason: 'limit' | 'peer-limit' | 'auth-deadline' | 'evicted', peer: string) => void;
}

/** @default 5000 */
export const DEFAULT_AUTH_DEADLINE_MS = 5_000;
const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_PER_PEER = 256;
/** How long a new connection is safe from eviction: time to send its first request. */
const MIN_EVICTABLE_AGE_MS = 1_000;

interface Tracked {
  socket: Socket;
  /** The remote address. */
  peer: string;
  /** `remoteAddress:remotePort`, as gRPC names the peer (kept: a closed socket forgets its port). */
  key: string;
  /** When it was admitted (ms since the epoch). */
  since: number;
  timer: NodeJS.Timeout | undefined;
  /** Handed to a native owner (an HTTP/2 session): counted, but never closed by the guard. */
  handedOver: boolean;
}

/**
 * Closes a connection at once. (Not with `resetAndDestroy()`: libuv's close-with-reset never
 * completes on a socket that is already shutting down, and the process then spins at exit.)
 */
function cut(socket: Socket): void {
  socket.on('error', () => undefined);
  socket.destroy();
}

/** The soft limit on open files of this process (`/proc/self/limits`), or undefined. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null || m[1] === 'unlimited') return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Tracks a server's connections and enforces the limits above. */
export class ConnectionGuard {
  readonly maxConnections: number;
  readonly maxPerPeer: number;
  readonly authDeadlineMs: number;
  /** Connections in the order they came (Map keeps insertion order: the oldest first). */
  private readonly open = new Map<Socket, Tracked>();
  /** Connections by `remoteAddress:remotePort`. */
  private readonly byPeerPort = new Map<string, Tracked>();
  private readonly perPeer = new Map<string, number>();
  private refusedCount = 0;

  constructor(private readonly options: ConnectionGuardOptions = {}) {
    const fdLimit = openFileLimit();
    const fromFds = fdLimit === undefined ? DEFAULT_MAX_CONNECTIONS : Math.max(16, Math.floor(fdLimit / 4));
    this.maxConnections = options.maxConnections ?? Math.min(DEFAULT_MAX_CONNECTIONS, fromFds);
    this.maxPerPeer = options.maxPerPeer ?? Math.min(DEFAULT_MAX_PER_PEER, this.maxConnections);
    this.authDeadlineMs = options.authDeadlineMs ?? DEFAULT_AUTH_DEADLINE_MS;
  }

  /** Connections open now. */
  get size(): number {
    return this.open.size;
  }

  /** Connections refused or closed by the guard so far. */
  get refused(): number {
    return this.refusedCount;
  }

  /**
   * Takes a new connection, or destroys it when over a limit. Returns whether it was admitted;
   * an admitted connection is tracked until it closes.
   */
  admit(socket: Socket): boolean {
    const peer = socket.remoteAddress ?? 'unknown';
    if ((this.perPeer.get(peer) ?? 0) >= this.maxPerPeer && !this.evictUnauthenticated(peer)) {
      return this.refuse(socket, 'peer-limit', peer);
    }
    if (this.open.size >= this.maxConnections && !this.evictUnauthenticated(undefined)) {
      return this.refuse(socket, 'limit', peer);
    }
    const t: Tracked = { socket, peer, key: `${peer}:${socket.remotePort ?? ''}`, since: Date.now(), timer: undefined, handedOver: false };
    t.timer = setTimeout(() => {
      this.options.onRefused?.('auth-deadline', peer);
      this.refusedCount++;
      cut(socket);
    }, this.authDeadlineMs);
    t.timer.unref();
    this.open.set(socket, t);
    this.byPeerPort.set(t.key, t);
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
    socket.once('close', () => {
      clearTimeout(t.timer);
      this.forget(t);
    });
    return true;
  }

  /**
   * A request on the connection `remoteAddress:remotePort` carried the token: it may stay open
   * past the deadline. (By address, not socket: a TLS server only sees the TLS socket.)
   */
  authenticatedPeer(peer: string): void {
    const t = this.byPeerPort.get(peer);
    if (t !== undefined) this.settle(t);
  }

  /**
   * The connection now belongs to an owner that reads its socket natively (an HTTP/2 session:
   * gRPC): closing the socket under it would leave a handle that never finishes closing, so the
   * guard stops timing it and never closes it; the owner's own timeouts do. It stays counted
   * until it closes.
   */
  handOver(socket: Socket): void {
    const t = this.open.get(socket);
    if (t === undefined) return;
    this.settle(t);
    t.handedOver = true;
  }

  /** Closes every tracked connection (but those handed over, which their owner closes). */
  destroyAll(): void {
    for (const t of [...this.open.values()]) if (!t.handedOver) cut(t.socket);
  }

  private settle(t: Tracked): void {
    clearTimeout(t.timer);
    t.timer = undefined;
  }

  /**
   * Closes the oldest connection (of `peer`, when given) still waiting to authenticate, if it has
   * waited at least {@link MIN_EVICTABLE_AGE_MS}.
   */
  private evictUnauthenticated(peer: string | undefined): boolean {
    const before = Date.now() - MIN_EVICTABLE_AGE_MS;
    for (const t of this.open.values()) {
      if (t.timer === undefined || t.handedOver || (peer !== undefined && t.peer !== peer)) continue;
      // The oldest one waiting is too young: so are all the later ones.
      if (t.since > before) return false;
      this.settle(t);
      this.refusedCount++;
      this.options.onRefused?.('evicted', t.peer);
      cut(t.socket);
      // Its 'close' comes later; forget it now so that the count has room at once.
      this.forget(t);
      return true;
    }
    return false;
  }

  /** Stops counting a connection (once, whether it closed or was evicted). */
  private forget(t: Tracked): void {
    if (!this.open.delete(t.socket)) return;
    if (this.byPeerPort.get(t.key) === t) this.byPeerPort.delete(t.key);
    const n = (this.perPeer.get(t.peer) ?? 1) - 1;
    if (n === 0) this.perPeer.delete(t.peer);
    else this.perPeer.set(t.peer, n);
  }

  private refuse(socket: Socket, reason: 'limit' | 'peer-limit', peer: string): false {
    this.refusedCount++;
    this.options.onRefused?.(reason, peer);
    cut(socket);
    return false;
  }
}
