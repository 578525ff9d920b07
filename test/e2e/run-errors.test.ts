/**
 * `dpl run` with bad input and failing tasks: exit codes, and messages for people (one `dpl:`
 * line naming the thing and the next step, no dpl stack trace).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FIXTURES,
  fixture,
  killDplProcesses,
  lines,
  runDpl,
  useTempDirs,
  type DplResult,
} from '../helpers/cli';

const QUICKSTART = 'examples/quickstart.ts';
const USAGE_HINT = /^Run dpl --help \(or dpl <command> --help\) for usage\.$/;
const tempDir = useTempDirs();
afterEach(killDplProcesses);

/**
 * Checks a failure for people: exit code `code` (any non-zero when omitted), nothing on stdout,
 * no stack frames, and stderr one `dpl: ` line (plus the usage hint for usage errors, or the
 * problem list of a validation error when `multiline`) that contains each of `mentions`.
 */
function expectCleanError(
  r: DplResult,
  mentions: (string | RegExp)[],
  { code, multiline = false }: { code?: number; multiline?: boolean } = {},
): void {
  const context = `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  expect({ signal: r.signal, nonZero: r.code !== null && r.code !== 0, context }).toEqual({
    signal: null,
    nonZero: true,
    context,
  });
  if (code !== undefined) expect({ code: r.code, context }).toEqual({ code, context });
  expect(r.stdout).toBe('');
  const ls = lines(r.stderr);
  expect(ls[0]).toMatch(/^dpl: \S/);
  expect(ls.filter((l) => /^\s+at /.test(l))).toEqual([]);
  const message = ls.filter((l) => !USAGE_HINT.test(l));
  if (!multiline) expect(message).toHaveLength(1);
  for (const m of mentions) {
    if (typeof m === 'string') expect(r.stderr).toContain(m);
    else expect(r.stderr).toMatch(m);
  }
}

describe('dpl run with bad input', () => {
  it('names a module path that does not exist', async () => {
    const r = await runDpl(['run', 'test/fixtures/does-not-exist.ts', '-n', '1']);
    expectCleanError(r, ['does-not-exist.ts', 'not found', '.ts or .js'], { code: 1 });
  });

  it('refuses a file that is not .ts or .js', async () => {
    const r = await runDpl(['run', fixture('not-a-module.txt'), '-n', '1']);
    expectCleanError(r, ['not-a-module.txt', '".txt"', '.ts or .js'], { code: 1 });
  });

  it('lists the exports of a module whose default export is not a PipelineGraph', async () => {
    const r = await runDpl(['run', fixture('not-a-graph.ts'), '-n', '1']);
    expectCleanError(r, ['not-a-graph.ts', 'PipelineGraph', /exports: helper, square/, 'export default new PipelineGraph'], {
      code: 1,
    });
  });

  it('gives file:line for a module with a syntax error', async () => {
    // Written at run time, so that no type check of test/ ever trips on it.
    const file = join(await tempDir(), 'broken.ts');
    await writeFile(file, "import { PipelineGraph } from '@dpl/core';\nconst n: number = ;\nexport default new PipelineGraph([]);\n");
    const r = await runDpl(['run', file, '-n', '1']);
    expectCleanError(r, [/cannot bundle pipeline module .*broken\.ts/, /broken\.ts:2:\d+/], { code: 1 });
  });

  it('reports a module that throws while it loads', async () => {
    const r = await runDpl(['run', fixture('throws-at-import.ts'), '-n', '1']);
    expectCleanError(r, ['throws-at-import.ts', 'cannot reach the feature store at db.invalid'], { code: 1 });
  });

  it('refuses -s without "="', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-s', 'round.kwargs.decimals']);
    expectCleanError(r, ['round.kwargs.decimals', 'key=value', '-s round.kwargs.decimals=2']);
  });

  it('names an unknown task in -s and lists the tasks', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-s', 'nosuchtask.kwargs.x=1']);
    expectCleanError(r, ['nosuchtask', 'generate, round, resid'], { code: 1, multiline: true });
    expect(r.stderr).toMatch(/^dpl: pipeline is not valid/);
  });

  it('refuses a kwarg the task does not declare and a value of the wrong type, before anything runs', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-s', 'round.kwargs.decimls=3', '-s', 'round.kwargs.decimals=abc']);
    expectCleanError(
      r,
      [
        'config coordinate "round.kwargs.decimls": task "round" has no kwarg "decimls" (did you mean "decimals"?); its kwargs: decimals',
        'config coordinate "round.kwargs.decimals": the task\'s default is a number (1), got a string ("abc"); give a number, e.g. round.kwargs.decimals=1',
      ],
      { code: 1, multiline: true },
    );
    expect(r.stdout).not.toMatch(/finished/);
    // -i lists the same problems and says so in its exit code.
    const info = await runDpl(['run', QUICKSTART, '-i', '-s', 'round.kwargs.decimls=3']);
    expect(info.code).toBe(1);
    expect(info.stdout).toMatch(/^Problems:\n {2}- config coordinate "round\.kwargs\.decimls"/m);
  });

  it('refuses kwargs nested deeper than 64 levels, before anything runs (10,000 deep overflowed the stack)', async () => {
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const r = await runDpl(['run', fixture('any-kwarg.ts'), '-n', '1', '-s', `measure.kwargs.spec=${deep}`]);
    expectCleanError(r, ['task "measure": kwarg "spec" nests deeper than 64 levels'], { code: 1, multiline: true });
    expect(r.stderr).toContain('pass a large structure as a file path and read it inside the task');
    const ok = await runDpl(['run', fixture('any-kwarg.ts'), '-n', '1', '-s', `measure.kwargs.spec=${'['.repeat(64)}${']'.repeat(64)}`]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^1\s+64$/m);
  });

  it('lists a sink that made no batches in the summary', async () => {
    // One source batch (id 0): evens keeps it, odds drops it.
    const r = await runDpl(['run', fixture('branching.ts'), '-n', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^odds\s+0\s+0$/m);
    expect(r.stdout).toMatch(/^evens\s+1\s+1$/m);
    expect(r.stdout).toMatch(/^odds made no batches$/m);
  });

  it('refuses a YAML file that does not exist', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-f', 'test/fixtures/no-such-config.yaml']);
    expectCleanError(r, ['no-such-config.yaml', 'cannot read config file']);
  });

  it('refuses a YAML file that is not valid YAML, with the line', async () => {
    const file = join(await tempDir(), 'bad.yaml');
    await writeFile(file, 'config:\n  round: [unclosed\n');
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-f', file]);
    expectCleanError(r, [file, 'is not valid YAML', 'line 3'], { code: 1, multiline: true });
  });

  it('names the cycle of a graph that has one', async () => {
    const r = await runDpl(['run', fixture('cycle.ts'), '-n', '1']);
    expectCleanError(r, ['the graph has a cycle: a -> b -> a', 'remove one of these edges'], { code: 1 });
  });

  it('names an unknown task field in -s and lists the known ones', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-s', 'round.colour=3']);
    expectCleanError(r, ['"round.colour"', 'field "colour" is unknown', 'timeoutMs'], { code: 1, multiline: true });
  });

  it('names a context key a task needs that is not set, and how to set it', async () => {
    const r = await runDpl(['run', fixture('context-pipeline.ts'), '-n', '1']);
    expectCleanError(r, ['context key "label"', '-c label=VALUE'], { code: 1, multiline: true });
  });

  it('exits 2 for a count that is not a number', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '--num-cpus', 'abc']);
    expectCleanError(r, ['--num-cpus', '>= 0'], { code: 2 });
  });

  it('exits 2 with a usage hint for an unknown flag', async () => {
    const r = await runDpl(['run', QUICKSTART, '--bogus']);
    expectCleanError(r, ['bogus'], { code: 2 });
    expect(lines(r.stderr)[1]).toMatch(USAGE_HINT);
  });

  // The checks on flag values are usage errors too (cli.ts: "Errors thrown from a `.check()`
  // reach `.fail()` as `err`; they are usage errors too"): exit 2.
  it('exits 2 for a negative -n', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '-1']);
    expectCleanError(r, ['--max-batches', 'integer >= 0', '-1'], { code: 2 });
  });

  it('exits 2 for --resources that is not JSON', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '--resources', '{bad']);
    expectCleanError(r, ['--resources', 'not valid JSON', `'{"bigdb":1}'`], { code: 2 });
  });

  it('exits 2 for a negative amount in --resources', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '--resources', 'bigdb=-1']);
    expectCleanError(r, ['bigdb', '>= 0', '-1'], { code: 2 });
  });

  it('exits 2 for an unknown -v level and lists the levels', async () => {
    const r = await runDpl(['run', QUICKSTART, '-n', '1', '-v', 'loud']);
    expectCleanError(r, ['"loud"', 'trace, debug, info, warn, error, silent'], { code: 2 });
  });

  it('names the task and the GPU when a task needs a GPU the machine lacks', async () => {
    const r = await runDpl(['run', fixture('needs-gpu.ts'), '-n', '1', '--num-gpus', '0']);
    expectCleanError(r, [/task "embed" needs .*GPU/, /GPU>=1 \(this machine has 0\)/], { code: 1, multiline: true });
    expect(r.stderr).not.toContain('"prepare"');
  });

  it('warns when --num-gpus claims more GPUs than nvidia-smi lists, and runs', async () => {
    // A stand-in nvidia-smi that lists one GPU, first on PATH.
    const bin = await tempDir();
    await writeFile(join(bin, 'nvidia-smi'), '#!/bin/sh\necho "GPU 0: Stand-in GPU (UUID: GPU-0)"\n', { mode: 0o755 });
    const env = { PATH: `${bin}:${process.env.PATH ?? ''}` };
    const two = await runDpl(['run', QUICKSTART, '-n', '1', '--num-gpus', '2'], { env });
    expect(two.code).toBe(0);
    expect(two.stderr).toContain(
      'dpl: warning: --num-gpus 2, but nvidia-smi lists 1 GPU on this machine; tasks that ask for a GPU will be placed here and find none. Leave --num-gpus out to advertise what nvidia-smi lists',
    );
    const one = await runDpl(['run', QUICKSTART, '-n', '1', '--num-gpus', '1'], { env });
    expect(one.code).toBe(0);
    expect(one.stderr).not.toContain('warning');
  });
});

describe('dpl run with failing tasks', () => {
  /** The lines from the `dpl: ` message on (logs before it are JSON lines). */
  function messageFrom(stderr: string): string[] {
    const ls = lines(stderr);
    const at = ls.findIndex((l) => l.startsWith('dpl: '));
    if (at < 0) throw new Error(`no "dpl: " line in stderr:\n${stderr}`);
    return ls.slice(at);
  }
  /** How many marker lines (written by the fixture's task on each call) start with `prefix`. */
  // What the tasks print reaches stderr as `(task=T worker=W) line`.
  const calls = (stderr: string, prefix: string): number => lines(stderr).filter((l) => /^\(task=\S+ worker=\S+\) /.test(l) && l.slice(l.indexOf(') ') + 2).startsWith(prefix)).length;

  it('fails fast with maxRetries 0, naming the task, batch, attempt and error, then the user\'s frames', async () => {
    const r = await runDpl(['run', fixture('always-fails.ts'), '-n', '1']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const [message, ...frames] = messageFrom(r.stderr);
    expect(message).toMatch(/^dpl: task "boom" failed on batch boom#0\b.*attempt 1 of 1\b.*: the boom task exploded on purpose$/);
    expect(calls(r.stderr, 'boom: called')).toBe(1);
    // The first frame is the task function, at its line in the .ts source (source maps).
    expect(frames.length).toBeGreaterThan(0);
    expect(frames[0]).toMatch(/^\s+at /);
    expect(frames[0]).toContain(`${join(FIXTURES, 'always-fails.ts')}:7:`);
  });

  it('retries a failed call (default maxRetries 3) and the run succeeds', async () => {
    // flaky.ts fails its first two attempts.
    const r = await runDpl(['run', fixture('flaky.ts'), '-n', '1']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toMatch(/finished in .* s: 1 batches, 1 rows$/m);
    expect(calls(r.stderr, 'flaky: attempt ')).toBe(3);
  });

  it('runs a call at most maxRetries + 1 = 4 times', async () => {
    const fourth = await runDpl(['run', fixture('flaky.ts'), '-n', '1'], { env: { FLAKY_FAILURES: '3' } });
    expect({ code: fourth.code, stderr: fourth.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(calls(fourth.stderr, 'flaky: attempt ')).toBe(4);

    const never = await runDpl(['run', fixture('flaky.ts'), '-n', '1'], { env: { FLAKY_FAILURES: '4' } });
    expect(never.code).toBe(1);
    const [message] = messageFrom(never.stderr);
    expect(message).toMatch(/^dpl: task "flaky" failed on batch flaky#0\b.*attempt 4 of 4\b.*: transient failure number 4$/);
    expect(calls(never.stderr, 'flaky: attempt ')).toBe(4);
  });

  it('skips up to --max-errored-batches failing batches on the cluster path and lists them; one more fails the run', async () => {
    // fails-on-some.ts fails every attempt on the batches with id 1 and 5 (of 0..7).
    const r = await runDpl(['run', fixture('fails-on-some.ts'), '-n', '8', '--max-errored-batches', '2']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toMatch(/finished in .* s: 6 batches, 6 rows$/m);
    expect(r.stdout).toContain('skipped 2 batches that still failed after their retries (--max-errored-batches):');
    expect(r.stdout).toMatch(/^ {2}pick#\d+ \(inputs s1\): task "pick" failed on batch pick#\d+ .*attempt 2 of 2\): batch with id 1 is bad$/m);
    expect(r.stdout).toMatch(/^ {2}pick#\d+ \(inputs s5\): .*batch with id 5 is bad$/m);

    const strict = await runDpl(['run', fixture('fails-on-some.ts'), '-n', '8', '--max-errored-batches', '1']);
    expect(strict.code).toBe(1);
    // Whichever of the two bad batches fails last is the one over the limit.
    expect(messageFrom(strict.stderr)[0]).toMatch(/^dpl: task "pick" failed on batch pick#\d+ \(inputs s([15]); attempt 2 of 2\): batch with id \1 is bad$/);
  });

  it('says when a task returns something that is not an Arrow Table', async () => {
    const r = await runDpl(['run', fixture('returns-non-table.ts'), '-n', '1']);
    expect(r.code).toBe(1);
    const [message] = messageFrom(r.stderr);
    expect(message).toMatch(/^dpl: task "wrong" failed on batch wrong#0\b.*not an Arrow Table/);
  });
});
