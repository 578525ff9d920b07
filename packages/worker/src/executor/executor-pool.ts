/**
 * The worker's executor processes: one call at a time each, started on demand, reused while
 * idle, and replaced when one dies. A process that dies mid-call fails that call only.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { DplErrorCode, TaskError, type Logger } from '@dpl/core';
import type { ExecutorReply, RunCall } from './protocol';

export interface ExecutorResult {
  ipc: Uint8Array;
  rows: number;
}

interface Executor {
  child: ChildProcess;
  /** CUDA_VISIBLE_DEVICES it was started with ('' = none). */
  gpus: string;
  busy: { call: RunCall; resolve: (r: ExecutorResult) => void; reject: (e: Error) => void; attempt: number } | undefined;
  ready: Promise<void>;
}

/**
 * The executor's entry point. From the build it sits next to this file; when this file runs
 * from its TypeScript source (the test suite), the built entry point is used.
 */
const EXECUTOR_MAIN = __filename.endsWith('.ts')
  ? join(__dirname, '..', '..', 'dist', 'executor', 'executor-main.js')
  : join(__dirname, 'executor-main.js');

export class ExecutorPool {
  private readonly executors = new Set<Executor>();
  private stopped = false;

  constructor(
    private readonly log: Logger,
    /** Idle processes kept for reuse. */
    private readonly maxIdle: number,
  ) {}

  /** Runs a call in an idle executor (or a new one) with the given GPUs visible. */
  async run(call: RunCall, attempt: number, gpus: string): Promise<ExecutorResult> {
    if (this.stopped) throw new TaskError(call.task, call.callId, attempt, 'the worker is stopping');
    let ex = [...this.executors].find((e) => e.busy === undefined && e.gpus === gpus);
    ex ??= this.spawn(gpus);
    const result = new Promise<ExecutorResult>((resolve, reject) => {
      ex.busy = { call, resolve, reject, attempt };
    });
    await ex.ready;
    if (!ex.child.connected) {
      ex.busy = undefined;
      throw new TaskError(call.task, call.callId, attempt, `task ${JSON.stringify(call.task)}: its executor process could not start`);
    }
    ex.child.send(compact(call));
    try {
      return await result;
    } finally {
      this.trimIdle();
    }
  }

  /** Kills every executor. */
  stop(): void {
    this.stopped = true;
    for (const ex of this.executors) ex.child.kill('SIGKILL');
    this.executors.clear();
  }

  private spawn(gpus: string): Executor {
    // The token never reaches user code.
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_VISIBLE_DEVICES: gpus };
    delete env.DPL_TOKEN;
    const child = fork(EXECUTOR_MAIN, [], {
      serialization: 'advanced',
      env,
      execArgv: ['--enable-source-maps'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let markReady: () => void = () => undefined;
    const ex: Executor = { child, gpus, busy: undefined, ready: new Promise((r) => (markReady = r)) };
    this.executors.add(ex);
    child.on('message', (m: ExecutorReply) => {
      if (m.kind === 'ready') return markReady();
      const busy = ex.busy;
      if (busy === undefined || busy.call.callId !== m.callId) return;
      ex.busy = undefined;
      if (m.kind === 'done') busy.resolve({ ipc: m.ipc, rows: m.rows });
      else {
        busy.reject(
          new TaskError(
            busy.call.task,
            busy.call.callId,
            busy.attempt,
            `task ${JSON.stringify(busy.call.task)} failed on batch ${busy.call.callId} (attempt ${busy.attempt}): ${m.message}`,
            { remoteStack: m.stack, details: { code: m.code } },
          ),
        );
      }
    });
    child.on('error', (e) => this.log.warn({ err: e.message }, 'executor process error'));
    child.on('exit', (code, signal) => {
      this.executors.delete(ex);
      markReady();
      const busy = ex.busy;
      ex.busy = undefined;
      if (busy !== undefined) {
        const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
        this.log.warn({ task: busy.call.task, batchId: busy.call.callId, code, signal }, 'executor process died during a task');
        busy.reject(
          new TaskError(
            busy.call.task,
            busy.call.callId,
            busy.attempt,
            `task ${JSON.stringify(busy.call.task)} failed on batch ${busy.call.callId} (attempt ${busy.attempt}): ` +
              `its executor process ${how} (a crash, process.exit() or running out of memory in the task)`,
            { details: { code: DplErrorCode.TASK_FAILED } },
          ),
        );
      }
    });
    return ex;
  }

  private trimIdle(): void {
    const idle = [...this.executors].filter((e) => e.busy === undefined);
    for (const ex of idle.slice(this.maxIdle)) {
      this.executors.delete(ex);
      ex.child.kill();
    }
  }
}

/**
 * The call with every byte array in a buffer of its own. Structured serialization sends a view's
 * whole backing ArrayBuffer, and arrays decoded from gRPC frames are views into much larger
 * buffers: sending them as they are copied megabytes per call.
 */
function compact(call: RunCall): RunCall {
  return {
    ...call,
    kwargs: own(call.kwargs),
    inputs: call.inputs.map((i) => ({ ...i, ipc: own(i.ipc) })),
  };
}

function own(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}
