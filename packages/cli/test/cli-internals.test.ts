import { join } from 'node:path';
import { parseResourcesFlag } from '@dpl/cli';
import { bundleModule } from '@dpl/client';
import { isDplError } from '@dpl/core';
import { parseLogLevel } from '../src/internal/logger';
import { formatTable } from '../src/internal/output';
import { joinRepeatedFlags } from '../src/internal/repeated-flags';
import { embeddedRunCpus } from '../src/internal/early-executors';
import { availableParallelism } from 'node:os';

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures');

describe('parseResourcesFlag', () => {
  it('reads JSON and name=value pairs', () => {
    expect(parseResourcesFlag('{"bigdb":1}')).toEqual({ bigdb: 1 });
    expect(parseResourcesFlag('bigdb=1, ssd=2.5')).toEqual({ bigdb: 1, ssd: 2.5 });
    expect(parseResourcesFlag('')).toEqual({});
  });

  it('rejects malformed text with the rule and an example', () => {
    expect(() => parseResourcesFlag('{bad')).toThrow(/--resources "\{bad" is not valid JSON .*write it like --resources '\{"bigdb":1\}'/);
    expect(() => parseResourcesFlag('bigdb')).toThrow('"bigdb" is not name=value');
    expect(() => parseResourcesFlag('bigdb=-1')).toThrow('--resources.bigdb must be a number >= 0, got -1');
    expect(() => parseResourcesFlag('bigdb=x')).toThrow('--resources.bigdb must be a number >= 0, got NaN');
    expect(() => parseResourcesFlag('[1]')).toThrow('must be an object of resource name to number');
    expect(() => parseResourcesFlag('{"CPU":2}')).toThrow('--resources may not set CPU; use --num-cpus instead');
  });
});

describe('embeddedRunCpus (which command lines start executors before the CLI loads)', () => {
  it('is the machine\'s CPUs for a plain dpl run, and --num-cpus when given', () => {
    expect(embeddedRunCpus(['run', 'm.ts', '-n', '5'])).toBe(availableParallelism());
    expect(embeddedRunCpus(['run', 'm.ts', '--num-cpus', '3'])).toBe(3);
    expect(embeddedRunCpus(['run', 'm.ts', '--num-cpus=1.5'])).toBe(1.5);
  });

  it('is undefined for what starts no embedded worker', () => {
    for (const argv of [
      [],
      ['submit', 'm.ts'],
      ['worker', 'start'],
      ['run', 'm.ts', '--in-process'],
      ['run', 'm.ts', '--in-process=true'],
      ['run', 'm.ts', '-i'],
      ['run', '--help'],
      ['run', 'm.ts', '--num-cpus', '0'],
      ['run', 'm.ts', '--num-cpus', 'lots'],
      ['run', 'm.ts', '--num-cpus'],
    ]) {
      expect({ argv, cpus: embeddedRunCpus(argv) }).toEqual({ argv, cpus: undefined });
    }
  });
});

describe('parseLogLevel', () => {
  it('accepts levels in any case and rejects others', () => {
    expect(parseLogLevel('INFO')).toBe('info');
    expect(() => parseLogLevel('loud')).toThrow('log level "loud" is unknown; use one of trace, debug, info, warn, error, silent');
  });
});

describe('formatTable', () => {
  it('aligns text left and numbers right', () => {
    expect(formatTable(['task', 'rows'], [['a', 5], ['long', 100]])).toBe('task  rows\na        5\nlong   100');
  });
});

describe('bundleModule', () => {
  it('bundles a TypeScript module, keeping shared packages outside the bundle', async () => {
    const bundle = await bundleModule(join(fixtures, 'branching.ts'));
    expect(bundle.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(bundle.code).toContain('__require("@dpl/core")');
    expect(bundle.code).not.toContain('class Table'); // apache-arrow is not inlined
    const again = await bundleModule(join(fixtures, 'branching.ts'));
    expect(again.hash).toBe(bundle.hash); // content-addressed
  });

  it('names a missing file and a wrong extension', async () => {
    const missing = await bundleModule('nope/none.ts').catch((e: unknown) => e);
    expect(isDplError(missing, 'MODULE')).toBe(true);
    expect((missing as Error).message).toMatch(/^pipeline module nope\/none.ts not found \(looked at .*none.ts\); pass the path of a .ts or .js file/);
    await expect(bundleModule(join(fixtures, 'not-a-module.txt'))).rejects.toThrow('has extension ".txt"; use a .ts or .js file');
  });
});

describe('joinRepeatedFlags', () => {
  it('joins each repeated array flag into one occurrence before --, keeping the order of its values', () => {
    expect(joinRepeatedFlags(['run', 'm.ts', '-s', 'a=1', '-n', '5', '--set-config=b=2', '-c', 'x=1', '--setConfig', 'a=3', '--', '-s', 'z'])).toEqual([
      'run', 'm.ts', '-n', '5', '--set-config', 'a=1', 'b=2', 'a=3', '--set-context', 'x=1', '--', '-s', 'z',
    ]);
  });

  it('leaves a command line alone when nothing repeats, or a value looks like a flag', () => {
    expect(joinRepeatedFlags(['run', 'm.ts', '-s', 'a=1', 'm2.ts'])).toEqual(['run', 'm.ts', '-s', 'a=1', 'm2.ts']);
    expect(joinRepeatedFlags(['run', 'm.ts', '-s', 'a=1', '-s=-x'])).toEqual(['run', 'm.ts', '-s', 'a=1', '-s=-x']);
    // A flag without its value stays where it is, for yargs to report.
    expect(joinRepeatedFlags(['run', 'm.ts', '-s', 'a=1', '-s', 'b=1', '-s'])).toEqual(['run', 'm.ts', '-s', '--set-config', 'a=1', 'b=1']);
  });
});
