/**
 * The run policy, one home for every backend (the LocalExecutor and the head's job engine): what
 * happens to a call that failed (retry after a backoff, skip its batch under
 * `maxErroredBatches`, or fail the run) and how the failure reads. (How much work a run keeps
 * pending is `pendingCallsFor`, with the scheduler.)
 */
import { DplError, DplErrorCode, retryDelayMs } from '../errors';
import { describe } from '../resources';
import type { StreamingScheduler, TaskCall } from '../scheduler/streaming-scheduler';

/** Delay before the first retry of a failed call; it doubles each time, up to 10 s. */
export const DEFAULT_RETRY_BACKOFF_MS = 100;

/** What a run does next about a failed call. */
export type FailedCallOutcome =
  /** It runs again once `delayMs` has passed: call `scheduler.retry(call.id)` then. */
  | { kind: 'retry'; delayMs: number }
  /** Its batch is skipped (already done in the scheduler): tell the consumer, go on. */
  | { kind: 'skip' }
  /** The run fails with the call's error. */
  | { kind: 'fail' };

export interface RunPolicy {
  retryBackoffMs: number;
  /** Batches a run may skip when their call still fails after its retries. */
  maxErroredBatches: number;
}

/**
 * Applies the policy to a call that failed by itself (not one interrupted by a lost worker):
 * records the failure in the scheduler and, when the call has no retry left, skips its batch if
 * the run may still skip one.
 * @param skipped batches the run has skipped so far.
 */
export function failedCall<D>(
  scheduler: StreamingScheduler<D>,
  call: TaskCall<D>,
  err: DplError,
  skipped: number,
  policy: RunPolicy,
): FailedCallOutcome {
  if (scheduler.fail(call.id, err) === 'retry') return { kind: 'retry', delayMs: retryDelayMs(call.attempt, policy.retryBackoffMs) };
  if (skipped < policy.maxErroredBatches) {
    scheduler.skip(call.id);
    return { kind: 'skip' };
  }
  return { kind: 'fail' };
}

/**
 * A task returned something other than a Table: it would every time, so the call is not run
 * again (its batch is skipped under `maxErroredBatches`, else the run fails).
 */
export function notATable(value: unknown): DplError {
  return new DplError(DplErrorCode.TASK_FAILED, `returned ${describe(value)}, not an Arrow Table; a task must return a Table (not retried: it would return the same again)`, {
    retryable: false,
  });
}

/**
 * How a failed call reads everywhere: `task "t" failed on batch t#0 (inputs s0, s1; attempt 2
 * of 4): <why>`.
 * @param maxAttempts 0 when unknown (the "of N" is then left out).
 */
export function callFailureMessage(task: string, callId: string, inputIds: readonly string[], attempt: number, maxAttempts: number, why: string): string {
  const inputs = inputIds.length > 0 ? `inputs ${inputIds.join(', ')}; ` : '';
  const of = maxAttempts > 0 ? ` of ${maxAttempts}` : '';
  return `task ${JSON.stringify(task)} failed on batch ${callId} (${inputs}attempt ${attempt}${of}): ${why}`;
}
