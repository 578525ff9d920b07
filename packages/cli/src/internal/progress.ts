/**
 * Progress of `dpl run` and `dpl submit` on stderr: batches and rows out, the rate, the time so
 * far and the calls running per task. On a terminal one line is redrawn in place a few times a
 * second; otherwise a plain line is printed every 10 s (DPL_PROGRESS_INTERVAL_MS changes that).
 */
import type { PipelineRun } from '@dpl/core';
import { setLiveLine, type LiveLine } from './output';

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

const TTY_INTERVAL_MS = 200;
const PLAIN_INTERVAL_MS = 10_000;
const SPINNER = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';

const thousands = (n: number): string => n.toLocaleString('en-US');

export class Progress implements LiveLine {
  private batches = 0;
  private rows = 0;
  private run: PipelineRun | undefined;
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private readonly started = performance.now();
  private readonly tty: boolean;

  constructor(
    private readonly stream: ProgressStream,
    private readonly intervalMs = stream.isTTY === true ? TTY_INTERVAL_MS : Number(process.env.DPL_PROGRESS_INTERVAL_MS ?? PLAIN_INTERVAL_MS),
  ) {
    this.tty = stream.isTTY === true;
  }

  /** Starts drawing; `run` gives the per-task counts once it exists. */
  start(): void {
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
    if (this.tty) setLiveLine(this);
  }

  attach(run: PipelineRun): void {
    this.run = run;
  }

  /** An output batch arrived. */
  batch(rows: number): void {
    this.batches++;
    this.rows += rows;
  }

  /** Stops drawing and clears the line on a terminal. */
  stop(): void {
    clearInterval(this.timer);
    if (this.tty) setLiveLine(undefined);
    this.clear();
  }

  clear(): void {
    // Also what the terminal echoed onto the line (a ^C).
    if (this.tty) this.stream.write('\r\x1b[2K');
  }

  redraw(): void {
    if (this.tty && this.frame > 0) this.draw();
  }

  /** The progress text: `120 batches, 1,200 rows out · 35.2 batches/s · 3.4 s · running: a 2, b 1`. */
  line(): string {
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? this.batches / seconds : 0;
    const parts = [`${thousands(this.batches)} batches, ${thousands(this.rows)} rows out`, `${rate.toFixed(1)} batches/s`, `${seconds.toFixed(1)} s`];
    const tasks = Object.entries(this.run?.stats().tasks ?? {});
    const running = tasks.filter(([, t]) => t.running > 0).map(([name, t]) => `${name} ${t.running}`);
    if (tasks.length > 0) parts.push(`running: ${running.length > 0 ? running.join(', ') : 'none'}`);
    return parts.join(' · ');
  }

  private draw(): void {
    if (this.tty) {
      const spin = SPINNER[this.frame++ % SPINNER.length]!;
      const text = `${spin} ${this.line()}`;
      const width = this.stream.columns ?? 120;
      this.stream.write(`\r\x1b[2K${text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text}`);
    } else {
      this.frame++;
      this.stream.write(`dpl: progress: ${this.line()}\n`);
    }
  }
}
