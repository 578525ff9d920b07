/**
 * Conversions between dpl's domain types and their proto messages (one toProto/fromProto pair
 * per type).
 */
import { DplError, DplErrorCode, TaskError, ensureError, isDplError, type ResourceMap } from '@dpl/core';
import type { ResourceMap as ResourceMapProto, ResourceMap__Input } from './generated/dpl/v1/ResourceMap';
import type { ErrorInfo, ErrorInfo__Input } from './generated/dpl/v1/ErrorInfo';

export function resourcesToProto(map: ResourceMap): ResourceMap__Input {
  return { values: { ...map } };
}

export function resourcesFromProto(p: ResourceMapProto | null | undefined): ResourceMap {
  return { ...(p?.values ?? {}) };
}

const CODES = new Set<string>(Object.values(DplErrorCode));

/** An error as data, keeping its code, stack and task fields. */
export function errorToProto(e: unknown): ErrorInfo__Input {
  const err = ensureError(e);
  const base = {
    code: isDplError(err) ? err.code : DplErrorCode.INTERNAL,
    message: err.message,
    stack: err.stack ?? '',
    retryable: isDplError(err) ? err.retryable : false,
  };
  if (err instanceof TaskError) {
    return { ...base, task: err.task, batch_id: err.batchId, attempt: err.attempt, stack: err.remoteStack ?? base.stack };
  }
  return base;
}

/** The error an ErrorInfo describes: a TaskError when it names a task, else a DplError. */
export function errorFromProto(p: ErrorInfo): DplError {
  const code = CODES.has(p.code) ? (p.code as DplErrorCode) : DplErrorCode.INTERNAL;
  if (p.task !== '') {
    // A task failure that running again cannot help stays so across the wire.
    const err = new TaskError(p.task, p.batch_id, p.attempt, p.message, { remoteStack: p.stack || undefined, retryable: code !== DplErrorCode.TASK_FAILED || p.retryable });
    if (code !== DplErrorCode.TASK_FAILED) return new DplError(code, p.message, { cause: err, details: { task: p.task } });
    return err;
  }
  const err = new DplError(code, p.message);
  if (p.stack !== '') err.stack = p.stack;
  return err;
}
