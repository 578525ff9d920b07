/**
 * What a failed call to the head means for the user, as a DplError that says what to do.
 */
import * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode } from '@dpl/core';

/**
 * @param timeoutMs the call's deadline, when it had one (named in the message).
 */
export function headError(address: string, err: grpc.ServiceError, timeoutMs?: number): DplError {
  if (err.code === grpc.status.UNAUTHENTICATED) {
    return new DplError(DplErrorCode.UNAUTHENTICATED, `the head at ${address} refused the token: ${err.details}`, {
      cause: err,
    });
  }
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
    const within = timeoutMs === undefined ? '' : ` (no answer within ${timeoutMs} ms)`;
    return new DplError(
      DplErrorCode.UNAVAILABLE,
      `cannot reach the dpl head at ${address}${within}; ` +
        'is `dpl head start` running there, is the address right (--address or DPL_ADDRESS), ' +
        'and for a head with TLS, is --tls-ca the CA that signed its certificate?',
      { cause: err },
    );
  }
  return new DplError(DplErrorCode.INTERNAL, `the head at ${address} failed: ${err.details}`, { cause: err });
}
