/**
 * The batched control-plane messages between the head and a worker, in one place: what the
 * head sends (`AssignBatch`: calls, the facts of jobs the worker has not seen, releases) and
 * what the worker answers (`ResultBatch`). Each side pushes items as they come; they leave once
 * per turn of the event loop ({@link TurnBatcher}), a batch counting what its items carry so it
 * stays under gRPC's 4 MiB message limit.
 * @internal
 */
import { TurnBatcher } from './turn-batcher';
import type { AssignTask__Input } from './generated/dpl/v1/AssignTask';
import type { ConnectWorkerRequest__Input } from './generated/dpl/v1/ConnectWorkerRequest';
import type { ConnectWorkerResponse__Input } from './generated/dpl/v1/ConnectWorkerResponse';
import type { JobFacts__Input } from './generated/dpl/v1/JobFacts';
import type { Observation__Input } from './generated/dpl/v1/Observation';
import type { TaskDone__Input } from './generated/dpl/v1/TaskDone';
import type { TaskFailed__Input } from './generated/dpl/v1/TaskFailed';
import type { TaskOutput__Input } from './generated/dpl/v1/TaskOutput';

type Assignment = { call: AssignTask__Input } | { facts: JobFacts__Input } | { release: string };

/** The head's side: calls for one worker, gathered per turn into `AssignBatch` messages. */
export class AssignBatcher {
  private readonly batch: TurnBatcher<Assignment>;

  constructor(write: (msg: ConnectWorkerResponse__Input) => void) {
    this.batch = new TurnBatcher((items) => {
      const jobs: JobFacts__Input[] = [];
      const calls: AssignTask__Input[] = [];
      const release: string[] = [];
      for (const item of items) {
        if ('call' in item) calls.push(item.call);
        else if ('facts' in item) jobs.push(item.facts);
        else release.push(item.release);
      }
      write({ assign_batch: { jobs, calls, release } });
    });
  }

  /** A job's facts; they go before the calls pushed after them. */
  facts(f: JobFacts__Input): void {
    // Its kwargs can be most of a message (a job's spec is bounded by the same 4 MiB).
    this.batch.push({ facts: f }, (f.tasks ?? []).reduce((n, t) => n + 256 + (t.kwargs?.length ?? 0), 256));
  }

  /** A call; `inlineBytes` its inline input bytes. */
  call(c: AssignTask__Input, inlineBytes: number): void {
    this.batch.push({ call: c }, inlineBytes + 128);
  }

  release(objectId: string): void {
    this.batch.push({ release: objectId }, objectId.length + 4);
  }

  /** Sends what waits (before a message that must follow it). */
  flush(): void {
    this.batch.flush();
  }

  /** Drops what waits (the session is gone). */
  clear(): void {
    this.batch.clear();
  }
}

type Result = { done: TaskDone__Input } | { failed: TaskFailed__Input } | { output: TaskOutput__Input };

/** The worker's side: answers for the head, gathered per turn into `ResultBatch` messages. */
export class ResultBatcher {
  private readonly batch: TurnBatcher<Result>;
  private closed = false;

  constructor(write: (msg: ConnectWorkerRequest__Input) => void) {
    this.batch = new TurnBatcher((items) => {
      const done: TaskDone__Input[] = [];
      const failed: TaskFailed__Input[] = [];
      const output: TaskOutput__Input[] = [];
      for (const r of items) {
        if ('done' in r) done.push(r.done);
        else if ('failed' in r) failed.push(r.failed);
        else output.push(r.output);
      }
      write({ results: { done, failed, output } });
    });
  }

  /** A finished call; `inlineBytes` its inline output. What the task recorded counts too. */
  done(msg: TaskDone__Input, inlineBytes: number): void {
    if (!this.closed) this.batch.push({ done: msg }, inlineBytes + 128 + observedBytes(msg.observations));
  }

  failed(msg: TaskFailed__Input): void {
    if (this.closed) return;
    const e = msg.error;
    this.batch.push({ failed: msg }, 256 + (e?.message?.length ?? 0) + (e?.stack?.length ?? 0) + observedBytes(msg.observations));
  }

  /** Lines a call printed; they reach the head before the call's answer. */
  output(msg: TaskOutput__Input): void {
    // In UTF-8 a UTF-16 unit takes at most 3 bytes.
    if (!this.closed) this.batch.push({ output: msg }, (msg.lines ?? []).reduce((n, l) => n + l.length * 3 + 4, 128));
  }

  /** Sends what waits, before another message on the session. */
  flush(): void {
    this.batch.flush();
  }

  /** The session is gone: answers for it are dropped (the head has re-placed those calls). */
  close(): void {
    this.closed = true;
    this.batch.clear();
  }
}

/** About what observations take in a message (a name, a number or a text, and framing). */
function observedBytes(list: Observation__Input[] | undefined): number {
  let n = 0;
  for (const o of list ?? []) n += 24 + (o.name?.length ?? 0) + (o.text?.length ?? 0);
  return n;
}
