/**
 * Addresses: `host:port` checks and loopback hosts, and closing a gRPC server.
 */
import type * as grpc from '@grpc/grpc-js';

const HOST_PORT = /^(\[[^\]]+\]|[^:\s]+):\d+$/;

/** Whether `address` is `host:port` (an IPv6 host in brackets). */
export function isHostPort(address: unknown): address is string {
  return typeof address === 'string' && HOST_PORT.test(address);
}

/** Whether `host` (or the host of a `host:port`) only reaches this machine. */
export function isLoopbackHost(host: string): boolean {
  // "[::1]:80" and "[::1]" → "::1"; "127.0.0.1:80" → "127.0.0.1"; a bare IPv6 host stays whole.
  const bracketed = /^\[([^\]]+)\]/.exec(host);
  const h = bracketed !== null ? bracketed[1]! : host.split(':').length === 2 ? host.split(':')[0]! : host;
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Stops a server: lets calls finish for up to `graceMs`, then cuts them. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
