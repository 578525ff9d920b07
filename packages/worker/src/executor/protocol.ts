/**
 * Messages between a worker and its executor processes (over a FrameChannel, where byte arrays
 * travel as raw attachments).
 * @internal
 */

import type { Observation } from '@dpl/core';
import type { ObjectRows } from '../store/object-store';
import type { OutputLines } from './task-output';

/**
 * A batch's Arrow IPC bytes: sent in the message, or a file in the worker's shared-memory
 * folder (written by an executor, read in place of a copy through the socket).
 */
export type Payload = { ipc: Uint8Array } | { file: string; bytes: number };

/**
 * A call's input: a payload and the rows of it the call reads; `objectId` when it is an object
 * of the worker's store (an output may then be a view of it).
 */
export type CallInput = Payload & { offset: number; rows: number; objectId?: string };

export type { ObjectRows };

/**
 * A call's output as an executor answers it: bytes, a file, or (a task that returned rows of
 * its inputs unchanged) a view of objects in the worker's store, `bytes` the size its rows
 * would have written.
 */
export type Output = Payload | { view: ObjectRows[]; bytes: number };

/**
 * The name of an executor's n-th output file in the shared folder (n counts from 1 in each
 * process, one file at a time: a file it never announced has a number past its last reply's).
 */
export const outputFileName = (pid: number, n: number): string => `${pid}-${n}.arrow`;

/** The pid and n of a path named by {@link outputFileName}; undefined for another name. */
export function outputFileOf(path: string): { pid: number; n: number } | undefined {
  const m = /(?:^|\/)(\d+)-(\d+)\.arrow$/.exec(path);
  return m === null ? undefined : { pid: Number(m[1]), n: Number(m[2]) };
}

/** Where an executor leaves an output of more than `overBytes`: a file in `dir`. */
export interface SharedOut {
  dir: string;
  overBytes: number;
}

/**
 * What every call of one task of one job shares. The worker makes one per task (the same
 * object for all its calls); the pool sends it into a process once, before that process's
 * first call of the task, and calls then name it by number.
 */
export interface CallFacts {
  /** The bundle file, and the module's source path for messages. */
  bundlePath: string;
  label: string;
  jobId: string;
  task: string;
  kwargs: Uint8Array;
  /** Tasks the head fused into this call: they run first, in order, each on the last's output. */
  before?: { task: string; kwargs: Uint8Array }[];
  /** Absent: the output comes back in the reply. */
  shared?: SharedOut;
  /** An output that is rows of the call's stored inputs comes back as a view of them (not for sinks: the head reads those). */
  views?: boolean;
  maxAttempts: number;
}

/** A call as the pool takes it. */
export interface RunCall {
  facts: CallFacts;
  callId: string;
  inputs: CallInput[];
  /** For messages: "inputs s0, s1; attempt 2 of 4". */
  inputIds: string[];
}

/** A task's facts, as a process receives them once, under the number its calls use. */
export interface FactsMessage extends CallFacts {
  kind: 'facts';
  id: number;
}

/** A call, as a process receives it: its task's facts by number. */
export interface CallMessage {
  kind: 'run';
  facts: number;
  callId: string;
  inputs: RunCall['inputs'];
  inputIds: string[];
}

/** Facts the process may drop (no call names them again). */
export interface ForgetMessage {
  kind: 'forget';
  ids: number[];
}

/** Asks the job's generator (created on first use) for its next batch. */
export interface NextSource {
  kind: 'source-next';
  jobId: string;
  bundlePath: string;
  label: string;
  shared?: SharedOut;
}

/** What a worker sends an executor. */
export type ExecutorRequest = FactsMessage | CallMessage | ForgetMessage | NextSource;

export type ExecutorReply =
  | { kind: 'ready' }
  /** What tasks printed; sent before the answer of the call that printed it. */
  | { kind: 'output'; output: OutputLines[] }
  | ({ kind: 'source-batch'; jobId: string; rows: number } & Payload)
  | { kind: 'source-end'; jobId: string }
  | ({ kind: 'done'; callId: string; rows: number; observations?: Observation[]; runUs: number; stageRows?: number[] } & Output)
  /** `task`: the task of a fused call that failed, when not the call's own. */
  | { kind: 'failed'; callId: string; code: string; retryable?: boolean; message: string; stack: string; observations?: Observation[]; task?: string };
