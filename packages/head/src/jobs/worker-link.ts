/**
 * The head's side of one worker session: what the dispatcher sends a worker goes through here.
 * Calls and releases made during one scheduling pass leave as one `AssignBatch`; a job's facts
 * (module, kwargs, limits of each task) go once per session, before the job's first call there.
 */
import { AssignBatcher, type AssignTask__Input, type ConnectWorkerResponse__Input, type JobFacts__Input } from '@dpl/wire';

/** Where a link writes: a worker's ConnectWorker stream (or anything with its `write`). */
export interface WorkerSink {
  write(msg: ConnectWorkerResponse__Input): unknown;
}

export class WorkerLink<S extends WorkerSink = WorkerSink> {
  private readonly batch: AssignBatcher;
  /** Jobs whose facts this session has been sent. */
  private readonly known = new Set<string>();

  /** @param session the worker's stream, which the link writes to (and its owner ends). */
  constructor(readonly session: S) {
    this.batch = new AssignBatcher((msg) => session.write(msg));
  }

  /**
   * Sends a call; `facts` are asked for (and sent first) when the worker has not had this job's.
   * @param bytes the call's inline input bytes, to keep a batch under the message limit.
   */
  assign(jobId: string, facts: () => JobFacts__Input, call: AssignTask__Input, bytes: number): void {
    if (!this.known.has(jobId)) {
      this.known.add(jobId);
      this.batch.facts(facts());
    }
    this.batch.call(call, bytes);
  }

  /** Tells the worker it may drop an object. */
  release(objectId: string): void {
    this.batch.release(objectId);
  }

  /** Sends any other message, after what is waiting (so the worker sees them in order). */
  send(msg: ConnectWorkerResponse__Input): void {
    this.batch.flush();
    this.session.write(msg);
  }

  /** The job is over: the worker drops its objects and facts (and hears of it after its last calls). */
  jobEnded(jobId: string): void {
    this.known.delete(jobId);
    this.send({ cancel_job: { job_id: jobId } });
  }

  /** The session is gone: nothing waiting is sent. */
  close(): void {
    this.batch.clear();
  }
}
