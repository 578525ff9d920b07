import type { Table } from 'apache-arrow';
import {
  DEFAULT_MAX_RETRIES,
  PipelineTask,
  isPipelineTask,
  taskProblems,
  type PipelineTaskOptions,
  type TaskFn,
} from '@dpl/core';
import { typeErrorOf } from '../../../test/helpers/errors';

const identity: TaskFn = (df: Table) => df;


const NAME_RULE =
  'is not valid: use letters, digits, "_" and "-" (a "." would break config coordinates such as round.kwargs.decimals)';

describe('PipelineTask defaults', () => {
  it('defaults to 1 CPU, 0 GPUs, 3 retries, no batch size and empty maps', () => {
    const t = new PipelineTask('t', identity);
    expect(t.name).toBe('t');
    expect(t.fn).toBe(identity);
    expect(t.numCpus).toBe(1);
    expect(t.numGpus).toBe(0);
    expect(t.maxRetries).toBe(3);
    expect(DEFAULT_MAX_RETRIES).toBe(3);
    expect(t.batchSize).toBeUndefined();
    expect(t.kwargs).toEqual({});
    expect(t.contextKwargs).toEqual({});
    expect(t.resources).toEqual({});
    expect(t.required).toEqual([]);
  });

  it('keeps the options it is given', () => {
    const t = new PipelineTask('round', identity, {
      kwargs: { decimals: 2 },
      contextKwargs: { db: 'db_path' },
      numCpus: 0.5,
      numGpus: 0.25,
      resources: { bigdb: 1 },
      batchSize: 10,
      required: ['decimals'],
      maxRetries: 0,
    });
    expect(t.options()).toEqual({
      kwargs: { decimals: 2 },
      contextKwargs: { db: 'db_path' },
      numCpus: 0.5,
      numGpus: 0.25,
      resources: { bigdb: 1 },
      batchSize: 10,
      required: ['decimals'],
      maxRetries: 0,
    });
  });

  it('is recognised by isPipelineTask, and look-alike objects are not', () => {
    expect(isPipelineTask(new PipelineTask('t', identity))).toBe(true);
    expect(isPipelineTask({ name: 't', fn: identity })).toBe(false);
    expect(isPipelineTask(null)).toBe(false);
    expect(isPipelineTask({ [Symbol.for('dpl.PipelineTask')]: true })).toBe(true);
  });

  it('freezes its kwargs, contextKwargs, resources and required', () => {
    const t = new PipelineTask('t', identity, {
      kwargs: { a: 1 },
      resources: { x: 1 },
      required: ['a'],
    });
    expect(Object.isFrozen(t.kwargs)).toBe(true);
    expect(Object.isFrozen(t.contextKwargs)).toBe(true);
    expect(Object.isFrozen(t.resources)).toBe(true);
    expect(Object.isFrozen(t.required)).toBe(true);
  });
});

describe('PipelineTask constructor checks', () => {
  it.each(['a.b', '', ' x', 'x y', 'a/b', '-x'])('rejects the name %p', (name) => {
    expect(typeErrorOf(() => new PipelineTask(name, identity))).toBe(
      `task name ${JSON.stringify(name)} ${NAME_RULE}`,
    );
  });

  it.each(['a', 'round_2', 'Round-4', '_x', '9lives'])('accepts the name %p', (name) => {
    expect(new PipelineTask(name, identity).name).toBe(name);
  });

  it('rejects a name that is not a string', () => {
    expect(typeErrorOf(() => new PipelineTask(3 as unknown as string, identity))).toBe(
      `task name 3 ${NAME_RULE}`,
    );
  });

  it('rejects a fn that is not a function', () => {
    expect(typeErrorOf(() => new PipelineTask('t', 'nope' as unknown as TaskFn))).toBe(
      'task "t": fn must be a function (df, kwargs) => Table, got "nope"',
    );
  });

  it('rejects an unknown option and lists the known ones', () => {
    const opts = { num_cpus: 2 } as unknown as PipelineTaskOptions;
    expect(typeErrorOf(() => new PipelineTask('t', identity, opts))).toBe(
      'task "t": unknown option "num_cpus"; known options: kwargs, contextKwargs, numCpus, numGpus, ' +
        'resources, batchSize, required, maxRetries, timeoutMs',
    );
  });

  it('rejects options that are not an object', () => {
    expect(
      typeErrorOf(() => new PipelineTask('t', identity, 5 as unknown as PipelineTaskOptions)),
    ).toBe('task "t": options must be an object, got 5');
  });

  it.each([
    [{ numCpus: -1 }, 'task "t": numCpus must be a number >= 0, got -1'],
    [{ numCpus: NaN }, 'task "t": numCpus must be a number >= 0, got NaN'],
    [{ numGpus: -0.5 }, 'task "t": numGpus must be a number >= 0, got -0.5'],
    [{ batchSize: 0 }, 'task "t": batchSize must be an integer >= 1 (or unset), got 0'],
    [{ batchSize: 1.5 }, 'task "t": batchSize must be an integer >= 1 (or unset), got 1.5'],
    [{ maxRetries: -1 }, 'task "t": maxRetries must be an integer >= 0, got -1'],
    [{ maxRetries: 0.5 }, 'task "t": maxRetries must be an integer >= 0, got 0.5'],
    [{ timeoutMs: 0 }, 'task "t": timeoutMs must be an integer >= 1 (milliseconds, or unset), got 0'],
    [{ timeoutMs: '5s' }, 'task "t": timeoutMs must be an integer >= 1 (milliseconds, or unset), got "5s"'],
    [{ resources: { bigdb: -1 } }, 'task "t": resources.bigdb must be a number >= 0, got -1'],
    [{ resources: { CPU: 1 } }, 'task "t": resources.CPU is reserved; use numCpus instead'],
    [{ resources: { GPU: 1 } }, 'task "t": resources.GPU is reserved; use numGpus instead'],
    [{ kwargs: [1] }, 'task "t": kwargs must be an object, got [1]'],
    [
      { contextKwargs: { db: '' } },
      'task "t": contextKwargs must map kwarg names to context keys (non-empty strings), got {"db":""}',
    ],
    [{ required: 'a' }, 'task "t": required must be an array of kwarg names, got "a"'],
  ])('rejects %p with one clear message', (opts, message) => {
    expect(
      typeErrorOf(() => new PipelineTask('t', identity, opts as unknown as PipelineTaskOptions)),
    ).toBe(message);
  });

  it('accepts 0 CPUs, fractional CPUs and GPUs, and 0 retries', () => {
    const t = new PipelineTask('t', identity, { numCpus: 0, numGpus: 0.1, maxRetries: 0 });
    expect([t.numCpus, t.numGpus, t.maxRetries]).toEqual([0, 0.1, 0]);
  });

  it('reports every problem in one TypeError', () => {
    const opts = {
      numCpus: -1,
      batchSize: 0,
      maxRetries: 1.5,
      resources: { bigdb: -2, CPU: 1 },
      bogus: true,
    } as unknown as PipelineTaskOptions;
    const message = typeErrorOf(() => new PipelineTask('a.b', 7 as unknown as TaskFn, opts));
    expect(message).toBe(
      [
        `task name "a.b" ${NAME_RULE}`,
        'task "a.b": fn must be a function (df, kwargs) => Table, got 7',
        'task "a.b": unknown option "bogus"; known options: kwargs, contextKwargs, numCpus, numGpus, resources, ' +
          'batchSize, required, maxRetries, timeoutMs',
        'task "a.b": numCpus must be a number >= 0, got -1',
        'task "a.b": resources.bigdb must be a number >= 0, got -2',
        'task "a.b": resources.CPU is reserved; use numCpus instead',
        'task "a.b": batchSize must be an integer >= 1 (or unset), got 0',
        'task "a.b": maxRetries must be an integer >= 0, got 1.5',
      ].join('; '),
    );
  });

  it('taskProblems is empty for a valid task', () => {
    expect(
      taskProblems(new PipelineTask('t', identity, { resources: { bigdb: 1 }, batchSize: 3 })),
    ).toEqual([]);
  });
});

describe('PipelineTask copies', () => {
  it('does not change when the options object given to it is mutated afterwards', () => {
    const nested = { depth: { level: 1 }, list: [1, 2] };
    const opts = {
      kwargs: { nested, x: 1 },
      contextKwargs: { db: 'db_path' },
      resources: { bigdb: 1 },
      required: ['x'],
    };
    const t = new PipelineTask('t', identity, opts);
    opts.kwargs.x = 2;
    nested.depth.level = 99;
    nested.list.push(3);
    opts.contextKwargs.db = 'other';
    opts.resources.bigdb = 5;
    opts.required.push('y');
    expect(t.kwargs).toEqual({ nested: { depth: { level: 1 }, list: [1, 2] }, x: 1 });
    expect(t.contextKwargs).toEqual({ db: 'db_path' });
    expect(t.resources).toEqual({ bigdb: 1 });
    expect(t.required).toEqual(['x']);
  });

  it('with() returns a new task with the overrides and the rest unchanged', () => {
    const base = new PipelineTask('round', identity, {
      kwargs: { decimals: 1 },
      batchSize: 10,
      numCpus: 2,
    });
    const copy = base.with({ name: 'round4', kwargs: { decimals: 4 } });
    expect(copy).not.toBe(base);
    expect(copy.name).toBe('round4');
    expect(copy.fn).toBe(identity);
    expect(copy.kwargs).toEqual({ decimals: 4 });
    expect(copy.batchSize).toBe(10);
    expect(copy.numCpus).toBe(2);
    expect(base.name).toBe('round');
    expect(base.kwargs).toEqual({ decimals: 1 });
    expect(base.with({}).options()).toEqual(base.options());
  });

  it('with() makes a deep copy: nested kwargs of the copy do not alias the original', () => {
    const base = new PipelineTask('t', identity, { kwargs: { model: { layers: [1, 2] } } });
    const copy = base.with({ numCpus: 2 });
    const copyModel = copy.kwargs.model as { layers: number[] };
    const baseModel = base.kwargs.model as { layers: number[] };
    expect(copyModel).toEqual(baseModel);
    expect(copyModel).not.toBe(baseModel);
    expect(copyModel.layers).not.toBe(baseModel.layers);
    copyModel.layers.push(3);
    expect(baseModel.layers).toEqual([1, 2]);
  });

  it('with() checks the overrides like the constructor does', () => {
    const base = new PipelineTask('t', identity);
    expect(typeErrorOf(() => base.with({ name: 'a.b' }))).toBe(`task name "a.b" ${NAME_RULE}`);
    expect(typeErrorOf(() => base.with({ batchSize: 0 }))).toBe(
      'task "t": batchSize must be an integer >= 1 (or unset), got 0',
    );
  });

  it('options() returns copies that do not change the task', () => {
    const t = new PipelineTask('t', identity, { kwargs: { a: { b: 1 } }, required: ['a'] });
    const o = t.options();
    (o.kwargs.a as { b: number }).b = 2;
    o.required.push('z');
    expect(t.kwargs).toEqual({ a: { b: 1 } });
    expect(t.required).toEqual(['a']);
  });

  it('keeps a function kwarg by reference', () => {
    const helper = (x: number): number => x + 1;
    const t = new PipelineTask('t', identity, { kwargs: { helper } });
    expect(t.kwargs.helper).toBe(helper);
    expect(t.with({}).kwargs.helper).toBe(helper);
  });

  it('keeps a class-instance kwarg an instance of its class, with its methods', () => {
    class Model {
      constructor(readonly scale: number) {}
      apply(x: number): number {
        return x * this.scale;
      }
    }
    const t = new PipelineTask('t', identity, { kwargs: { model: new Model(3) } });
    const model = t.kwargs.model as Model;
    expect(model).toBeInstanceOf(Model);
    expect(model.apply(2)).toBe(6);
    expect(t.with({ numCpus: 2 }).kwargs.model).toBeInstanceOf(Model);
  });
});

describe('PipelineTask.resolveKwargs', () => {
  const task = new PipelineTask('t', identity, {
    kwargs: { db: '/default', decimals: 2 },
    contextKwargs: { db: 'db_path', user: 'user_name' },
  });

  it('lets a context value win over the kwarg of the same name', () => {
    expect(task.resolveKwargs(new Map<string, unknown>([['db_path', '/ctx']]))).toEqual({
      db: '/ctx',
      decimals: 2,
    });
  });

  it('keeps the kwargs value when the context key is missing', () => {
    expect(task.resolveKwargs(new Map())).toEqual({ db: '/default', decimals: 2 });
  });

  it('adds a kwarg that exists only in the context', () => {
    expect(task.resolveKwargs(new Map<string, unknown>([['user_name', 'ada']]))).toEqual({
      db: '/default',
      decimals: 2,
      user: 'ada',
    });
  });

  it('passes a context value that is undefined or null as it is (the key is set)', () => {
    expect(task.resolveKwargs(new Map<string, unknown>([['db_path', null]])).db).toBeNull();
  });

  it('returns a new object each time, leaving the task kwargs alone', () => {
    const a = task.resolveKwargs(new Map());
    a.decimals = 5;
    expect(task.kwargs.decimals).toBe(2);
    expect(task.resolveKwargs(new Map()).decimals).toBe(2);
  });
});

describe('PipelineTask.request and toString', () => {
  it('maps numCpus and numGpus to CPU and GPU, next to the custom resources', () => {
    const t = new PipelineTask('t', identity, {
      numCpus: 2,
      numGpus: 0.5,
      resources: { bigdb: 1 },
    });
    expect(t.request().toJSON()).toEqual({ CPU: 2, GPU: 0.5, bigdb: 1 });
    expect(new PipelineTask('u', identity).request().toJSON()).toEqual({ CPU: 1 });
    expect(new PipelineTask('v', identity, { numCpus: 0 }).request().isEmpty()).toBe(true);
  });

  it('prints the name and the settings that differ from empty', () => {
    expect(new PipelineTask('t', identity).toString()).toBe('t (numCpus=1, maxRetries=3)');
    const t = new PipelineTask('round', identity, {
      numCpus: 2,
      numGpus: 0.5,
      resources: { bigdb: 1 },
      batchSize: 10,
      kwargs: { decimals: 2, big: 5n },
      contextKwargs: { db: 'db_path' },
      required: ['decimals'],
      maxRetries: 0,
    });
    expect(t.toString()).toBe(
      'round (numCpus=2, numGpus=0.5, resources={"bigdb":1}, batchSize=10, kwargs={"decimals":2,"big":"5n"}, ' +
        'contextKwargs={"db":"db_path"}, required=["decimals"], maxRetries=0)',
    );
  });
});
