/**
 * Messages between a worker and its executor processes (over a FrameChannel, where byte arrays
 * travel as raw attachments).
 * @internal
 */

import type { Observation } from '@dpl/core';

export interface RunCall {
  kind: 'run';
  callId: string;
  /** The bundle file, and the module's source path for messages. */
  bundlePath: string;
  label: string;
  /** With the task name, the key under which the executor keeps the decoded kwargs. */
  jobId: string;
  task: string;
  kwargs: Uint8Array;
  /** Tasks the head fused into this call: they run first, in order, each on the last's output. */
  before?: { task: string; kwargs: Uint8Array }[];
  inputs: { ipc: Uint8Array; offset: number; rows: number }[];
  /** For messages: "inputs s0, s1; attempt 2 of 4". */
  inputIds: string[];
  maxAttempts: number;
}

/** Asks the job's generator (created on first use) for its next batch. */
export interface NextSource {
  kind: 'source-next';
  jobId: string;
  bundlePath: string;
  label: string;
}

export type ExecutorReply =
  | { kind: 'ready' }
  | { kind: 'source-batch'; jobId: string; ipc: Uint8Array; rows: number }
  | { kind: 'source-end'; jobId: string }
  | { kind: 'done'; callId: string; ipc: Uint8Array; rows: number; observations?: Observation[]; runUs: number; stageRows?: number[] }
  /** `task`: the task of a fused call that failed, when not the call's own. */
  | { kind: 'failed'; callId: string; code: string; message: string; stack: string; observations?: Observation[]; task?: string };
