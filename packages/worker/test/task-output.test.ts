import { MAX_LINE_CHARS, OUTPUT_BURST_BYTES, OUTPUT_BYTES_PER_SECOND, OutputCapture } from '../src/executor/task-output';

describe('OutputCapture', () => {
  const source = { jobId: 'j', task: 't', callId: 't#0' };

  it('cuts writes into lines per call and stream, unfinished lines at the end', () => {
    let waiting = 0;
    const c = new OutputCapture(() => waiting++);
    c.setSource(source);
    c.write(false, 'a\nb');
    c.write(false, 'c\r\n');
    c.write(true, Buffer.from('err\n'));
    c.write(false, 'tail');
    c.setSource({ ...source, callId: 't#1' });
    c.write(false, 'next\n');
    expect(c.take()).toEqual([
      { ...source, stderr: false, lines: ['a', 'bc'], droppedLines: 0, droppedBytes: 0 },
      { ...source, stderr: true, lines: ['err'], droppedLines: 0, droppedBytes: 0 },
      { ...source, stderr: false, lines: ['tail'], droppedLines: 0, droppedBytes: 0 },
      { ...source, callId: 't#1', stderr: false, lines: ['next'], droppedLines: 0, droppedBytes: 0 },
    ]);
    expect(waiting).toBe(1);
    expect(c.take()).toBeUndefined();
  });

  it('cuts a long line and counts what goes over the rate, carried by the next record', () => {
    let now = 0;
    const c = new OutputCapture(() => undefined, () => now);
    c.setSource(source);
    c.write(false, `${'y'.repeat(MAX_LINE_CHARS + 10)}\n`);
    const [long] = c.take()!;
    expect(long!.lines[0]).toBe(`${'y'.repeat(MAX_LINE_CHARS)}… (10 more characters)`);
    const line = `${'z'.repeat(99)}\n`;
    const n = Math.ceil((2 * OUTPUT_BURST_BYTES) / 100);
    for (let i = 0; i < n; i++) c.write(false, line);
    const first = c.take()!;
    const kept = first.reduce((k, r) => k + r.lines.length, 0);
    const dropped = first.reduce((k, r) => k + r.droppedLines, 0);
    expect(kept + dropped).toBe(n);
    expect(kept).toBeLessThanOrEqual(OUTPUT_BURST_BYTES / 100);
    // A second later, a second's worth fits again.
    now += 1000;
    for (let i = 0; i < OUTPUT_BYTES_PER_SECOND / 100; i++) c.write(false, line);
    expect(c.take()!.reduce((k, r) => k + r.lines.length, 0)).toBeGreaterThan(OUTPUT_BYTES_PER_SECOND / 100 - 20);
  });
});
