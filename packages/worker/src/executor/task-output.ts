/**
 * What tasks print (console.log, process.stdout/stderr), cut into lines tagged with the call
 * that printed them, for the worker to forward to the job's client. Bounded: a task that prints
 * a gigabyte sends about a megabyte at once and then a steady trickle; the rest is counted, and
 * the count travels with the next lines so the client can say how much was left out.
 * @internal
 */

/** The call whose output it is. */
export interface OutputSource {
  jobId: string;
  task: string;
  callId: string;
}

/** Lines one call printed on one stream, in order. */
export interface OutputLines extends OutputSource {
  stderr: boolean;
  lines: string[];
  /** Lines (and their bytes) left out just before these: over the rate output is forwarded at. */
  droppedLines: number;
  droppedBytes: number;
}

/** A longer line is cut here (the rest is counted as dropped). */
export const MAX_LINE_CHARS = 16 * 1024;
/** What a burst of output may take at once… */
export const OUTPUT_BURST_BYTES = 1024 * 1024;
/** …and what is forwarded per second after it. */
export const OUTPUT_BYTES_PER_SECOND = 128 * 1024;

/** The task name a module generator's output goes under. */
export const GENERATOR_TASK = 'generator';

/** The source of output that is no call's (an executor that failed to start). */
export const NO_CALL: OutputSource = { jobId: '', task: '', callId: '' };

export class OutputCapture {
  private source: OutputSource = NO_CALL;
  /** Text after the last newline, per stream (stdout, stderr). */
  private readonly partial = ['', ''];
  private pending: OutputLines[] = [];
  private tokens = OUTPUT_BURST_BYTES;
  private refilledAt: number;
  private droppedLines = 0;
  private droppedBytes = 0;

  constructor(
    /** Called when the first lines are waiting to be taken. */
    private readonly waiting: () => void,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.refilledAt = clock();
  }

  /**
   * From now on, output belongs to this call (what the last one left unfinished is its own).
   * Only its jobId, task and callId are read (a call's message can be passed as it is).
   */
  setSource(source: OutputSource): void {
    if (source.callId === this.source.callId && source.task === this.source.task && source.jobId === this.source.jobId) return;
    this.endLines();
    this.source = source;
  }

  /** The task of a fused call that runs now. */
  setTask(task: string): void {
    if (task !== this.source.task) this.setSource({ jobId: this.source.jobId, task, callId: this.source.callId });
  }

  write(stderr: boolean, chunk: string | Uint8Array, encoding?: BufferEncoding): void {
    const text = typeof chunk === 'string' ? (encoding === undefined || encoding === 'utf8' ? chunk : Buffer.from(chunk, encoding).toString()) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString();
    const s = stderr ? 1 : 0;
    let from = 0;
    for (let nl = text.indexOf('\n', from); nl >= 0; nl = text.indexOf('\n', from)) {
      const line = this.partial[s] + text.slice(from, nl);
      this.partial[s] = '';
      this.line(stderr, line.endsWith('\r') ? line.slice(0, -1) : line);
      from = nl + 1;
    }
    if (from < text.length) {
      const rest = this.partial[s] + text.slice(from);
      // A line with no end in sight is sent in pieces rather than held.
      if (rest.length >= MAX_LINE_CHARS) {
        this.partial[s] = '';
        this.line(stderr, rest);
      } else this.partial[s] = rest;
    }
  }

  /** The lines waiting, unfinished ones included; undefined when there are none. */
  take(): OutputLines[] | undefined {
    // The common case, once per call: a task that printed nothing.
    if (this.pending.length === 0 && this.droppedLines === 0 && this.partial[0] === '' && this.partial[1] === '') return undefined;
    this.endLines();
    if (this.droppedLines > 0) this.group(false); // a record of no lines, to carry the count
    if (this.pending.length === 0) return undefined;
    const out = this.pending;
    this.pending = [];
    return out;
  }

  private endLines(): void {
    this.endLine(false);
    this.endLine(true);
  }

  private endLine(stderr: boolean): void {
    const s = stderr ? 1 : 0;
    const line = this.partial[s]!;
    if (line === '') return;
    this.partial[s] = '';
    this.line(stderr, line);
  }

  private line(stderr: boolean, text: string): void {
    const bytes = Math.min(text.length, MAX_LINE_CHARS) + 1;
    if (!this.admit(bytes)) {
      this.droppedLines++;
      this.droppedBytes += bytes;
      return;
    }
    const cut = text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… (${text.length - MAX_LINE_CHARS} more characters)` : text;
    this.group(stderr).lines.push(cut);
  }

  /** The record lines of this call and stream go into: the last one, or a new one. */
  private group(stderr: boolean): OutputLines {
    const last = this.pending[this.pending.length - 1];
    const { jobId, task, callId } = this.source;
    if (last !== undefined && last.stderr === stderr && last.callId === callId && last.task === task && this.droppedLines === 0) return last;
    const g: OutputLines = { jobId, task, callId, stderr, lines: [], droppedLines: this.droppedLines, droppedBytes: this.droppedBytes };
    this.droppedLines = 0;
    this.droppedBytes = 0;
    if (this.pending.length === 0) this.waiting();
    this.pending.push(g);
    return g;
  }

  /** Whether `bytes` fit the rate (a token bucket: a burst, then a steady rate). */
  private admit(bytes: number): boolean {
    const now = this.clock();
    this.tokens = Math.min(OUTPUT_BURST_BYTES, this.tokens + ((now - this.refilledAt) / 1000) * OUTPUT_BYTES_PER_SECOND);
    this.refilledAt = now;
    if (this.tokens < bytes) return false;
    this.tokens -= bytes;
    return true;
  }
}
