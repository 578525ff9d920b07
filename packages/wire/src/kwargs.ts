/**
 * Task kwargs cross processes with Node's structured serialization (v8): numbers, strings,
 * bigints, dates, maps, sets, typed arrays and plain objects survive; functions do not.
 */
import { deserialize, serialize } from 'node:v8';
import { DplError, DplErrorCode } from '@dpl/core';

/**
 * @throws DplError(VALIDATION) naming the task and the kwarg that cannot be sent.
 */
export function encodeKwargs(task: string, kwargs: Record<string, unknown>): Uint8Array {
  for (const [k, v] of Object.entries(kwargs)) {
    try {
      serialize(v);
    } catch (e) {
      throw new DplError(
        DplErrorCode.VALIDATION,
        `kwarg ${JSON.stringify(k)} of task ${JSON.stringify(task)} cannot be sent to workers (${(e as Error).message}); ` +
          'pass data (numbers, strings, arrays, plain objects) and create clients or functions inside the task',
      );
    }
  }
  return serialize(kwargs);
}

export function decodeKwargs(bytes: Uint8Array): Record<string, unknown> {
  if (bytes.byteLength === 0) return {};
  return deserialize(bytes) as Record<string, unknown>;
}
