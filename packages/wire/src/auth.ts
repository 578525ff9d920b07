/**
 * The cluster token: every RPC carries it as `authorization: Bearer <token>` metadata when one
 * is set, and servers compare it in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

const KEY = 'authorization';

/** A fresh random token: 256 bits, URL-safe base64 (43 characters). */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The longest token, in bytes (it travels in headers and data-plane requests). */
export const MAX_TOKEN_BYTES = 4096;

/**
 * What is wrong with a token, or undefined: printable ASCII without spaces (it travels in HTTP
 * headers and cookies), 1 to {@link MAX_TOKEN_BYTES} characters.
 */
export function tokenProblem(token: string): string | undefined {
  if (token.length === 0 || token.length > MAX_TOKEN_BYTES) return `a token must have 1 to ${MAX_TOKEN_BYTES} characters, got ${token.length}`;
  if (!/^[\x21-\x7e]+$/.test(token)) return 'a token may hold only printable ASCII characters without spaces';
  return undefined;
}

/** Call credentials that add the token to every call (or none when no token is set). */
export function tokenMetadata(token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined && token !== '') md.set(KEY, `Bearer ${token}`);
  return md;
}

/**
 * Whether `presented` (an `authorization` header value or metadata) carries `expected`. Always
 * true when no token is expected. The comparison takes the same time whatever the input.
 */
export function tokenMatches(expected: string | undefined, presented: string | undefined): boolean {
  if (expected === undefined || expected === '') return true;
  if (presented === undefined || !presented.startsWith('Bearer ')) return false;
  // Hash both sides: timingSafeEqual needs equal lengths, and hashing hides the length.
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(presented.slice('Bearer '.length)).digest();
  return timingSafeEqual(a, b);
}

/** The `authorization` value of a call's metadata. */
export function presentedToken(md: grpc.Metadata): string | undefined {
  const v = md.get(KEY)[0];
  return typeof v === 'string' ? v : v === undefined ? undefined : v.toString('utf8');
}

/** A gRPC UNAUTHENTICATED error with a message that says what to do. */
export function unauthenticated(): Partial<grpc.StatusObject> {
  return {
    code: grpc.status.UNAUTHENTICATED,
    details:
      'missing or wrong cluster token; pass the token the head was started with (--token-file or DPL_TOKEN; ' +
      'on the head\'s machine, dpl head token prints a generated one)',
  };
}
