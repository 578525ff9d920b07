/**
 * Progress on stderr for `dpl run`: plain lines when stderr is not a terminal, one line redrawn
 * in place on a terminal (a real pseudo-terminal, through util-linux `script`), none with -q.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DPL_MAIN, fixture, killDplProcesses, runDpl } from '../helpers/cli';

afterEach(killDplProcesses);

// relay.ts needs "maker" and "taker"; its slow sink makes the run last a second or so.
const RELAY = ['run', fixture('relay.ts'), '-n', '16', '--num-cpus', '2', '--resources', '{"maker":2,"taker":2}'];

describe('dpl run progress', () => {
  it('prints plain progress lines when stderr is not a terminal, and none with -q', async () => {
    const r = await runDpl(RELAY, { env: { DPL_PROGRESS_INTERVAL_MS: '150' } });
    expect(r.code).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('dpl: progress: '));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatch(/^dpl: progress: \d+ batches, [\d,]+ rows out · [\d.]+ batches\/s · [\d.]+ s · running: /);
    // The per-task counts come from the head while the job runs.
    expect(lines.some((l) => /running: .*(make|take) \d/.test(l))).toBe(true);
    expect(r.stderr).not.toContain('\x1b');

    const quiet = await runDpl([...RELAY, '-q'], { env: { DPL_PROGRESS_INTERVAL_MS: '150' } });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toContain('progress');
  });

  const hasScript = existsSync('/usr/bin/script');
  (hasScript ? it : it.skip)('redraws one line in place on a terminal and clears it before the summary', async () => {
    const cmd = [process.execPath, DPL_MAIN, ...RELAY].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const out = await new Promise<string>((resolve, reject) => {
      execFile('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
    });
    const redraws = out.split('\r\x1b[2K').length - 1;
    expect(redraws).toBeGreaterThanOrEqual(2);
    expect(out).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] \d+ batches, [\d,]+ rows out · /);
    // The line is cleared, then the summary follows on stdout.
    expect(out).toMatch(/\r\x1b\[2Krun \S+ finished in /);
    expect(out).not.toContain('dpl: progress: ');
  });
});
