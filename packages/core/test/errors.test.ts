import { runInNewContext } from 'node:vm';
import {
  CancelledError,
  ConfigError,
  DplError,
  DplErrorCode,
  InfeasibleTaskError,
  TaskError,
  ValidationError,
  ensureError,
  isDplError,
  isRetryableCode,
  shouldRetry,
} from '@dpl/core';

const ALL_CODES = Object.values(DplErrorCode);

describe('isDplError', () => {
  it('recognises every DplError subclass by its brand', () => {
    const errors: DplError[] = [
      new DplError(DplErrorCode.INTERNAL, 'bug'),
      new ValidationError(['x']),
      new ConfigError('a.b', 'bad'),
      new TaskError('t', 't#1', 1, 'boom'),
      new InfeasibleTaskError('t', { GPU: 1 }, 'never fits'),
      new CancelledError(),
    ];
    for (const e of errors) expect(isDplError(e)).toBe(true);
  });

  it('filters by code when a code is given', () => {
    const e = new TaskError('t', 't#1', 1, 'boom');
    expect(isDplError(e, DplErrorCode.TASK_FAILED)).toBe(true);
    expect(isDplError(e, DplErrorCode.WORKER_LOST)).toBe(false);
    expect(isDplError(new ValidationError([]), DplErrorCode.VALIDATION)).toBe(true);
    expect(isDplError(new ConfigError('p', 'm'), DplErrorCode.CONFIG)).toBe(true);
    expect(isDplError(new CancelledError(), DplErrorCode.CANCELLED)).toBe(true);
  });

  it('is false for plain errors, primitives and objects that merely look like a DplError', () => {
    expect(isDplError(new Error('x'))).toBe(false);
    expect(isDplError(new TypeError('x'))).toBe(false);
    expect(isDplError(undefined)).toBe(false);
    expect(isDplError(null)).toBe(false);
    expect(isDplError('DplError')).toBe(false);
    expect(isDplError(42)).toBe(false);
    const lookalike = { name: 'DplError', code: 'TASK_FAILED', retryable: true, message: 'x' };
    expect(isDplError(lookalike)).toBe(false);
    expect(isDplError(lookalike, DplErrorCode.TASK_FAILED)).toBe(false);
    // A brand with a truthy value that is not `true` is not the brand.
    expect(isDplError({ [Symbol.for('dpl.error')]: 'yes', code: 'TASK_FAILED' })).toBe(false);
    // A local (non-registered) symbol with the same description is not the brand either.
    expect(isDplError({ [Symbol('dpl.error')]: true, code: 'TASK_FAILED' })).toBe(false);
  });

  it('recognises a copy from another realm that carries the Symbol.for brand', () => {
    const copy = {
      [Symbol.for('dpl.error')]: true,
      code: DplErrorCode.WORKER_LOST,
      message: 'gone',
    };
    expect(isDplError(copy)).toBe(true);
    expect(isDplError(copy, DplErrorCode.WORKER_LOST)).toBe(true);
    expect(isDplError(copy, DplErrorCode.TASK_FAILED)).toBe(false);
  });

  it('recognises an error made in a separate vm context (Symbol.for is shared across realms)', () => {
    const foreign: unknown = runInNewContext(
      `const e = new Error('lost'); Object.defineProperty(e, Symbol.for('dpl.error'), { value: true });
       e.code = 'OBJECT_LOST'; e;`,
    );
    expect(foreign instanceof Error).toBe(false); // another realm: instanceof cannot be trusted
    expect(isDplError(foreign, DplErrorCode.OBJECT_LOST)).toBe(true);
  });

  it('does not expose the brand as an enumerable property', () => {
    const e = new DplError(DplErrorCode.INTERNAL, 'bug');
    expect(Object.keys(e)).not.toContain(Symbol.for('dpl.error'));
    expect(Object.getOwnPropertySymbols(e)).toContain(Symbol.for('dpl.error'));
    expect(Object.prototype.propertyIsEnumerable.call(e, Symbol.for('dpl.error'))).toBe(false);
  });
});

describe('DplError', () => {
  it('sets name to the subclass name, code, retryable, details and cause', () => {
    const cause = new Error('root');
    const e = new DplError(DplErrorCode.WORKER_LOST, 'worker w1 died', {
      cause,
      details: { workerId: 'w1' },
    });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('DplError');
    expect(e.message).toBe('worker w1 died');
    expect(e.code).toBe('WORKER_LOST');
    expect(e.retryable).toBe(true);
    expect(e.details).toEqual({ workerId: 'w1' });
    expect(e.cause).toBe(cause);
    expect(new ConfigError('p', 'm').name).toBe('ConfigError');
    expect(new TaskError('t', 'b', 1, 'm').name).toBe('TaskError');
  });

  it('has no cause property and empty details when none are given', () => {
    const e = new DplError(DplErrorCode.INTERNAL, 'bug');
    expect('cause' in e).toBe(false);
    expect(e.details).toEqual({});
  });

  it('marks only TASK_FAILED, WORKER_LOST and OBJECT_LOST as retryable', () => {
    const retryable = ALL_CODES.filter((c) => new DplError(c, 'x').retryable);
    expect(retryable.sort()).toEqual(['OBJECT_LOST', 'TASK_FAILED', 'WORKER_LOST']);
  });
});

describe('isRetryableCode and shouldRetry', () => {
  it('never retries INFEASIBLE, CANCELLED, VALIDATION, CONFIG, MODULE or INTERNAL', () => {
    for (const code of [
      'INFEASIBLE',
      'CANCELLED',
      'VALIDATION',
      'CONFIG',
      'MODULE',
      'INTERNAL',
    ] as const) {
      expect(isRetryableCode(code)).toBe(false);
      expect(shouldRetry(new DplError(code, 'x'), 1, 100)).toBe(false);
    }
  });

  it('retries TASK_FAILED while attempt <= maxRetries (maxRetries 3: attempts 1-3 retry, 4 is final)', () => {
    const e = new TaskError('t', 't#1', 1, 'boom');
    expect(isRetryableCode(DplErrorCode.TASK_FAILED)).toBe(true);
    expect([1, 2, 3, 4, 5].map((attempt) => shouldRetry(e, attempt, 3))).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
  });

  it('does not retry TASK_FAILED at all when maxRetries is 0', () => {
    expect(shouldRetry(new TaskError('t', 't#1', 1, 'boom'), 1, 0)).toBe(false);
  });

  it('always retries WORKER_LOST and OBJECT_LOST, whatever the attempt and maxRetries', () => {
    for (const code of [DplErrorCode.WORKER_LOST, DplErrorCode.OBJECT_LOST]) {
      expect(isRetryableCode(code)).toBe(true);
      const e = new DplError(code, 'lost');
      expect(shouldRetry(e, 1, 0)).toBe(true);
      expect(shouldRetry(e, 50, 3)).toBe(true);
    }
  });
});

describe('ensureError', () => {
  it('returns an Error unchanged', () => {
    const e = new RangeError('r');
    expect(ensureError(e)).toBe(e);
    const d = new TaskError('t', 'b', 1, 'm');
    expect(ensureError(d)).toBe(d);
  });

  it('wraps a string, keeping it as the cause', () => {
    const e = ensureError('it broke');
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe('non-error value thrown: it broke');
    expect(e.cause).toBe('it broke');
  });

  it('wraps an object with a message, keeping its message, stack and the object as cause', () => {
    const thrown = { message: 'from afar', stack: 'Error: from afar\n    at remote:1:1' };
    const e = ensureError(thrown);
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe('from afar');
    expect(e.stack).toBe('Error: from afar\n    at remote:1:1');
    expect(e.cause).toBe(thrown);
  });

  it('wraps undefined, null, numbers and plain objects with a readable message', () => {
    expect(ensureError(undefined).message).toBe('non-error value thrown: undefined');
    expect(ensureError(null).message).toBe('non-error value thrown: null');
    expect(ensureError(42).message).toBe('non-error value thrown: 42');
    expect(ensureError({ a: 1 }).message).toBe('non-error value thrown: {"a":1}');
  });

  it('wraps values JSON cannot print (bigint, cycles) without throwing', () => {
    expect(ensureError(10n).message).toBe('non-error value thrown: 10');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(ensureError(cyclic).message).toBe('non-error value thrown: [object Object]');
  });

  it('keeps a branded DplError from another realm as it is, so its code survives', () => {
    const foreign: unknown = runInNewContext(
      `const e = new Error('worker w1 died'); Object.defineProperty(e, Symbol.for('dpl.error'), { value: true });
       e.code = 'WORKER_LOST'; e.retryable = true; e;`,
    );
    const e = ensureError(foreign);
    expect(isDplError(e, DplErrorCode.WORKER_LOST)).toBe(true);
    expect(e).toBe(foreign);
  });
});

describe('ValidationError', () => {
  it('lists every problem in its message and keeps them in .problems', () => {
    const e = new ValidationError([
      'task "a": numCpus must be a number >= 0, got -1',
      'no task named "b"',
    ]);
    expect(e.code).toBe('VALIDATION');
    expect(e.retryable).toBe(false);
    expect(e.problems).toEqual([
      'task "a": numCpus must be a number >= 0, got -1',
      'no task named "b"',
    ]);
    expect(e.message).toBe(
      'pipeline is not valid (2 problems):\n' +
        '  - task "a": numCpus must be a number >= 0, got -1\n' +
        '  - no task named "b"',
    );
  });

  it('says "1 problem" for a single problem', () => {
    expect(new ValidationError(['x']).message).toBe('pipeline is not valid (1 problem):\n  - x');
  });
});

describe('TaskError, ConfigError, InfeasibleTaskError and CancelledError', () => {
  it('TaskError carries the task, batch id, attempt, remote stack and cause', () => {
    const cause = new Error('division by zero');
    const e = new TaskError('round', 'round#7', 2, 'task "round" failed', {
      cause,
      remoteStack: 'Error: division by zero\n    at fn',
      details: { inputs: ['gen#1'] },
    });
    expect(e.code).toBe('TASK_FAILED');
    expect(e.retryable).toBe(true);
    expect(e.task).toBe('round');
    expect(e.batchId).toBe('round#7');
    expect(e.attempt).toBe(2);
    expect(e.remoteStack).toBe('Error: division by zero\n    at fn');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ inputs: ['gen#1'] });
    expect(new TaskError('t', 'b', 1, 'm').remoteStack).toBeUndefined();
  });

  it('ConfigError keeps the full coordinate as path and is never retried', () => {
    const e = new ConfigError('round.kwargs.decimals', 'bad value');
    expect(e.path).toBe('round.kwargs.decimals');
    expect(e.code).toBe('CONFIG');
    expect(e.retryable).toBe(false);
  });

  it('InfeasibleTaskError keeps the task and its request', () => {
    const e = new InfeasibleTaskError('embed', { GPU: 1 }, 'no worker has GPU>=1');
    expect(e.task).toBe('embed');
    expect(e.request).toEqual({ GPU: 1 });
    expect(e.code).toBe('INFEASIBLE');
    expect(e.retryable).toBe(false);
  });

  it('CancelledError has a default message and is never retried', () => {
    const e = new CancelledError();
    expect(e.message).toBe('run was cancelled');
    expect(e.code).toBe('CANCELLED');
    expect(shouldRetry(e, 1, 3)).toBe(false);
  });
});
