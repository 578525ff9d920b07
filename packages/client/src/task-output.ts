import { formatBytes } from '@dpl/core';
/**
 * What a job's tasks print on the cluster, as the client receives it: lines tagged with the
 * task, the worker and the call that printed them.
 */
import type { TaskOutput } from '@dpl/wire';

/** One line a task printed with console.log/console.error (or process.stdout/stderr). */
export interface TaskOutputLine {
  jobId: string;
  task: string;
  /** The worker that ran the call. */
  worker: string;
  /** The call: a batch id such as `score#12` (`source:<job>` for a module's generator). */
  callId: string;
  stream: 'stdout' | 'stderr';
  text: string;
  /**
   * Set on a line that stands for output left out before it (over the rate output is forwarded
   * at: a burst of 1 MiB, then 128 KiB/s per executor; or while the client fell behind).
   */
  dropped?: { lines: number; bytes: number };
}

/** Where the SDK sends task output by default: `(task=score worker=w2) line` on stderr. */
export function printTaskOutput(line: TaskOutputLine): void {
  process.stderr.write(`${formatTaskOutput(line)}\n`);
}

/** `(task=score worker=w2) line`, as `dpl submit` prints it. */
export function formatTaskOutput(line: TaskOutputLine): string {
  return `(task=${line.task} worker=${line.worker}) ${line.text}`;
}

/** The lines of one message from the head, a notice of what was left out first. */
export function taskOutputLines(o: TaskOutput): TaskOutputLine[] {
  const base = { jobId: o.job_id, task: o.task, worker: o.worker_id, callId: o.call_id, stream: o.stderr ? ('stderr' as const) : ('stdout' as const) };
  const lines: TaskOutputLine[] = [];
  const dropped = { lines: Number(o.dropped_lines), bytes: Number(o.dropped_bytes) };
  if (dropped.lines > 0) {
    const text = `… ${dropped.lines.toLocaleString('en-US')} line${dropped.lines === 1 ? '' : 's'} (${formatBytes(dropped.bytes)}) of task output left out: more than dpl forwards (1 MiB at once, then 128 KiB/s per executor); the worker's stderr has them`;
    lines.push({ ...base, text, dropped });
  }
  for (const text of o.lines) lines.push({ ...base, text });
  return lines;
}
