import net from 'node:net';
import { ConnectionGuard, openFileLimit } from '@dpl/wire';

/** A server whose connections go through `guard`; a connection sending "token" authenticates. */
async function serve(guard: ConnectionGuard): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    if (!guard.admit(socket)) return;
    socket.on('data', (d) => {
      if (d.toString() === 'token') {
        guard.authenticatedPeer(`${socket.remoteAddress}:${socket.remotePort}`);
        socket.write('ok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((r) => {
        guard.destroyAll();
        server.close(() => r());
      }),
  };
}

/** Opens a connection and resolves once it is established (or refused); `closed` resolves when it ends. */
function open(port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed }));
    void closed.then(() => resolve({ socket, closed }));
  });
}

const aged = (): Promise<void> => new Promise((r) => setTimeout(r, 1_100)); // past the eviction grace

const isClosed = (c: { closed: Promise<void> }, ms: number): Promise<boolean> =>
  Promise.race([c.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

async function authenticate(c: { socket: net.Socket }): Promise<void> {
  const got = new Promise<void>((r) => c.socket.once('data', () => r()));
  c.socket.write('token');
  await got;
}

describe('ConnectionGuard', () => {
  it('closes a connection that does not authenticate in time, and keeps one that does', async () => {
    const guard = new ConnectionGuard({ authDeadlineMs: 200 });
    const server = await serve(guard);
    try {
      const idle = await open(server.port);
      const good = await open(server.port);
      await authenticate(good);
      expect(await isClosed(idle, 2_000)).toBe(true);
      expect(await isClosed(good, 400)).toBe(false);
      expect(guard.refused).toBe(1);
      good.socket.destroy();
    } finally {
      await server.close();
    }
  });

  it('at its limit, makes room by closing the oldest unauthenticated connection; refuses when all are authenticated', async () => {
    const guard = new ConnectionGuard({ maxConnections: 3, authDeadlineMs: 60_000 });
    const server = await serve(guard);
    try {
      const a = await open(server.port);
      await authenticate(a);
      const flood = [await open(server.port), await open(server.port)];
      // Newcomers do not push out connections that just came: the fourth is refused at once...
      const early = await open(server.port);
      expect(await isClosed(early, 2_000)).toBe(true);
      await aged();
      const b = await open(server.port); // ...but once they had their chance, the oldest of the flood makes way
      expect(await isClosed(flood[0]!, 2_000)).toBe(true);
      await authenticate(b);
      const c = await open(server.port); // then the other one
      expect(await isClosed(flood[1]!, 2_000)).toBe(true);
      await authenticate(c);
      // All three authenticated: a fourth is refused, the three stay.
      const d = await open(server.port);
      expect(await isClosed(d, 2_000)).toBe(true);
      for (const x of [a, b, c]) expect(await isClosed(x, 100)).toBe(false);
      expect(guard.size).toBe(3);
      for (const x of [a, b, c]) x.socket.destroy();
    } finally {
      await server.close();
    }
  });

  it('bounds the connections from one address', async () => {
    const guard = new ConnectionGuard({ maxConnections: 100, maxPerPeer: 2, authDeadlineMs: 60_000 });
    const server = await serve(guard);
    try {
      const first = await open(server.port);
      const second = await open(server.port);
      await authenticate(first);
      await authenticate(second);
      const third = await open(server.port);
      expect(await isClosed(third, 2_000)).toBe(true);
      first.socket.destroy();
      await first.closed;
      await new Promise((r) => setTimeout(r, 50));
      const fourth = await open(server.port);
      await authenticate(fourth); // room again once one left
      second.socket.destroy();
      fourth.socket.destroy();
    } finally {
      await server.close();
    }
  });

  it('never closes a connection handed over to its owner, but still counts it', async () => {
    const guard = new ConnectionGuard({ maxConnections: 1, authDeadlineMs: 200 });
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      if (guard.admit(socket)) guard.handOver(socket);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const owned = await open(port);
      await aged();
      expect(await isClosed(owned, 300)).toBe(false); // past the deadline, and not evicted:
      const next = await open(port);
      expect(await isClosed(next, 2_000)).toBe(true); // the newcomer is refused instead
      expect(guard.size).toBe(1);
      guard.destroyAll();
      expect(await isClosed(owned, 300)).toBe(false); // its owner closes it, not the guard
      owned.socket.destroy();
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('derives its default limit from the open-file limit', () => {
    const fds = openFileLimit();
    const guard = new ConnectionGuard();
    if (fds !== undefined) expect(guard.maxConnections).toBe(Math.min(1024, Math.max(16, Math.floor(fds / 4))));
    expect(guard.maxPerPeer).toBeLessThanOrEqual(guard.maxConnections);
    expect(guard.authDeadlineMs).toBe(5_000);
  });
});
