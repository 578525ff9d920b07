import { resolveWorkerOptions } from '../src/worker-options';

describe('worker options: Node flags for executors', () => {
  const saved = process.env.DPL_EXECUTOR_NODE_OPTIONS;
  afterEach(() => {
    if (saved === undefined) delete process.env.DPL_EXECUTOR_NODE_OPTIONS;
    else process.env.DPL_EXECUTOR_NODE_OPTIONS = saved;
  });

  it('takes them from DPL_EXECUTOR_NODE_OPTIONS, word by word, unless given', () => {
    process.env.DPL_EXECUTOR_NODE_OPTIONS = '  --trace-gc   --max-semi-space-size=32 ';
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380' }).executorNodeFlags).toEqual(['--trace-gc', '--max-semi-space-size=32']);
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380', executorNodeFlags: ['--no-opt'] }).executorNodeFlags).toEqual(['--no-opt']);
    delete process.env.DPL_EXECUTOR_NODE_OPTIONS;
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380' }).executorNodeFlags).toEqual([]);
  });

  it('refuses a word that is not a flag, naming where it came from and the rule', () => {
    process.env.DPL_EXECUTOR_NODE_OPTIONS = '--trace-gc script.js';
    expect(() => resolveWorkerOptions({ address: '127.0.0.1:6380' })).toThrow(
      'invalid worker options: DPL_EXECUTOR_NODE_OPTIONS must be Node flags, each starting with "-" (e.g. --max-semi-space-size=32), got "script.js"',
    );
    expect(() => resolveWorkerOptions({ address: '127.0.0.1:6380', executorNodeFlags: ['-x', 'y'] })).toThrow(/executorNodeFlags must be Node flags.*got "y"/);
  });
});

describe('worker options: how executors are scheduled', () => {
  const saved = process.env.DPL_EXECUTOR_SCHED;
  afterEach(() => {
    if (saved === undefined) delete process.env.DPL_EXECUTOR_SCHED;
    else process.env.DPL_EXECUTOR_SCHED = saved;
  });

  it('is batch unless DPL_EXECUTOR_SCHED or the option says normal', () => {
    delete process.env.DPL_EXECUTOR_SCHED;
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380' }).executorScheduling).toBe('batch');
    process.env.DPL_EXECUTOR_SCHED = 'normal';
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380' }).executorScheduling).toBe('normal');
    expect(resolveWorkerOptions({ address: '127.0.0.1:6380', executorScheduling: 'batch' }).executorScheduling).toBe('batch');
  });

  it('refuses another word, naming the variable or option, the words it takes and the default', () => {
    process.env.DPL_EXECUTOR_SCHED = 'fast';
    expect(() => resolveWorkerOptions({ address: '127.0.0.1:6380' })).toThrow(
      'invalid worker options: DPL_EXECUTOR_SCHED must be "batch" or "normal", got "fast"; unset it for the default (batch)',
    );
    delete process.env.DPL_EXECUTOR_SCHED;
    expect(() => resolveWorkerOptions({ address: '127.0.0.1:6380', executorScheduling: 'idle' as 'batch' })).toThrow(
      'invalid worker options: executorScheduling must be "batch" or "normal", got "idle"',
    );
  });
});
