import type { PipelineRun, SchedulerStats } from '@dpl/core';
import { Progress, type ProgressStream } from '../src/internal/progress';

function fakeStream(isTTY: boolean): ProgressStream & { out: string } {
  const s = {
    isTTY,
    columns: 200,
    out: '',
    write(text: string) {
      s.out += text;
      return true;
    },
  };
  return s;
}

const runWith = (tasks: SchedulerStats['tasks']): PipelineRun =>
  ({ stats: () => ({ sourceBatches: 0, emptySourceBatches: 0, outputs: 0, tasks }) }) as unknown as PipelineRun;

const task = (running: number) => ({ calls: 0, rowsIn: 0, rowsOut: 0, running, queuedRows: 0, retries: 0, emptyOutputs: 0, skipped: 0 });

/** Waits (up to 5 s, in 10 ms steps) until `check()` holds: a busy machine may fire the progress timer late. */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('Progress', () => {
  it('redraws one line in place on a terminal and clears it at the end', async () => {
    const s = fakeStream(true);
    const p = new Progress(s, 10);
    p.attach(runWith({ make: task(2), take: task(0) }));
    p.start();
    p.batch(1000);
    p.batch(234);
    const framesOf = (): string[] => s.out.split('\r\x1b[2K').filter((f) => f !== '');
    await until(() => framesOf().length >= 2);
    p.stop();
    const frames = framesOf();
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames[0]).toMatch(/^⠋ 2 batches, 1,234 rows out · [\d.]+ batches\/s · [\d.]+ s · running: make 2$/);
    expect(s.out.endsWith('\r\x1b[2K')).toBe(true); // cleared
    expect(s.out).not.toContain('\n');
  });

  it('prints plain lines elsewhere', async () => {
    const s = fakeStream(false);
    const p = new Progress(s, 10);
    p.attach(runWith({ a: task(0) }));
    p.start();
    p.batch(5);
    const linesOf = (): string[] => s.out.split('\n').filter((l) => l !== '');
    await until(() => linesOf().length >= 1);
    p.stop();
    const lines = linesOf();
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatch(/^dpl: progress: 1 batches, 5 rows out · [\d.]+ batches\/s · [\d.]+ s · running: none$/);
    expect(s.out).not.toContain('\x1b');
  });
});
