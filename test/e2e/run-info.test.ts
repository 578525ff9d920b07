/**
 * `dpl run -i` (describe without running) and the help texts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, fixture, killDplProcesses, runDpl, useTempDirs } from '../helpers/cli';

const QUICKSTART = 'examples/quickstart.ts';
const tempDir = useTempDirs();
afterEach(killDplProcesses);

describe('dpl run -i', () => {
  it('prints the tasks with their settings and runs nothing', async () => {
    const out = join(await tempDir(), 'out');
    const r = await runDpl(['run', QUICKSTART, '-i', '-n', '100', '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+- generate \(numCpus=1\b.*\) -> round$/m);
    expect(r.stdout).toMatch(/^\s+- round \(.*batchSize=10, kwargs=\{"decimals":1\}.*\) -> resid$/m);
    expect(r.stdout).toMatch(/^\s+- resid \(numCpus=2\b.*\) \[sink\]$/m);
    expect(r.stdout).not.toMatch(/finished|stopped/);
    expect(r.stdout).not.toMatch(/^Problems:/m);
    expect(existsSync(out)).toBe(false);
  });

  it('shows the settings given with -s', async () => {
    const r = await runDpl(['run', QUICKSTART, '-i', '-s', 'round.kwargs.decimals=3', '-s', 'round.batchSize=25']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+- round \(.*batchSize=25, kwargs=\{"decimals":3\}.*\)/m);
  });

  it('takes 10,000 -s flags (the last assignment to a coordinate wins) as fast as one flag with 10,000 values', async () => {
    // yargs alone copies the whole array at each repeat: this took 33 s.
    const flags = Array.from({ length: 10_000 }, (_, i) => ['-s', `round.kwargs.decimals=${i % 7}`]).flat();
    const r = await runDpl(['run', QUICKSTART, '-i', ...flags, '-s', 'round.batchSize=4', '-c', 'a=1', '-c', 'b=2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+- round \(.*batchSize=4, kwargs=\{"decimals":3\}.*\)/m);
    expect(r.stdout).toMatch(/^Context:\n\s+- a \(set to 1\)\n\s+- b \(set to 2\)$/m);
  });

  it('lists a context key the tasks need as not set, and as set after -c', async () => {
    const unset = await runDpl(['run', fixture('context-pipeline.ts'), '-i']);
    expect(unset.code).toBe(1); // it lists a problem: a run would fail
    expect(unset.stdout).toMatch(/^\s+- label \(.*contextKwargs=\{"tag":"label"\}.*\) \[sink\]$/m);
    expect(unset.stdout).toMatch(/^Context:\n\s+- label \(not set\)$/m);
    // The problem is reported, with the flag that fixes it.
    expect(unset.stdout).toContain('-c label=VALUE');
    expect(unset.stdout).not.toMatch(/finished/);

    const set = await runDpl(['run', fixture('context-pipeline.ts'), '-i', '-c', 'label=hello']);
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/^Context:\n\s+- label \(set to "hello"\)$/m);
    expect(set.stdout).not.toMatch(/not set|^Problems:/m);
  });

  it('shows context and config read from -f', async () => {
    const r = await runDpl(['run', fixture('context-pipeline.ts'), '-i', '-f', fixture('context-config.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+- label \(.*kwargs=\{"scale":10\}.*\)/m);
    expect(r.stdout).toMatch(/^\s+- label \(set to "from-yaml"\)$/m);
  });
});

describe('dpl help', () => {
  it('npx dpl --help lists the run command', async () => {
    // Through npx and the workspace bin link: checks the shebang and the executable bit too.
    const { stdout } = await promisify(execFile)('npx', ['--no-install', 'dpl', '--help'], {
      cwd: REPO_ROOT,
      timeout: 30_000,
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
    expect(stdout).toMatch(/^\s+dpl run <module>\s+\S/m);
  });

  it('dpl run --help lists the pipeline options', async () => {
    const r = await runDpl(['run', '--help']);
    expect(r.code).toBe(0);
    for (const [short, long] of [
      ['o', 'out-dir'],
      ['s', 'set-config'],
      ['c', 'set-context'],
      ['f', 'file'],
      ['n', 'max-batches'],
      ['i', 'info'],
      ['v', 'log-level'],
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+-${short}, --${long}\\b`, 'm'));
    }
  });

  it('dpl without a command exits 2 and names one', async () => {
    const r = await runDpl([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^dpl: .*dpl run/m);
    expect(r.stderr).toContain('--help');
  });
});
