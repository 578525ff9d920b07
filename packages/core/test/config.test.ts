import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Table } from 'apache-arrow';
import {
  ConfigError,
  DplErrorCode,
  LocalExecutor,
  PipelineGraph,
  PipelineTask,
  ValidationError,
  isDplError,
  parseAssignment,
  parseConfigValue,
  readConfigFile,
  type PipelineTaskOptions,
} from '@dpl/core';
import { thrownBy } from '../../../test/helpers/errors';

const identity = (df: Table): Table => df;

function makeGraph(roundOpts: PipelineTaskOptions = {}): PipelineGraph {
  const gen = new PipelineTask('gen', identity);
  const round = new PipelineTask('round', identity, {
    kwargs: { decimals: 1, mode: 'half', nested: { a: { b: 1, c: 2 }, keep: true } },
    batchSize: 10,
    ...roundOpts,
  });
  return new PipelineGraph([gen, round]);
}

function executor(graph: PipelineGraph = makeGraph()): LocalExecutor {
  return new LocalExecutor(graph, { maxBatches: 1, numCpus: 2, numGpus: 0 });
}

/** The ValidationError `validate()` throws; anything else thrown is rethrown. */
function validationError(ex: LocalExecutor): ValidationError {
  let caught: unknown;
  try {
    ex.validate();
  } catch (e) {
    caught = e;
  }
  if (caught === undefined) throw new Error('validate() did not throw');
  // Anything else escaping validate() is rethrown, so the failure shows what escaped.
  if (!isDplError(caught, DplErrorCode.VALIDATION)) throw caught;
  expect(caught).toBeInstanceOf(ValidationError);
  return caught as ValidationError;
}

/** The ConfigError `fn` throws (fails the test when it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  const caught = thrownBy(fn);
  if (caught === undefined) throw new Error(`expected a ConfigError, but nothing was thrown`);
  if (!isDplError(caught, DplErrorCode.CONFIG)) throw caught;
  expect(caught).toBeInstanceOf(ConfigError);
  return caught as ConfigError;
}

const round = (ex: LocalExecutor): PipelineTask => ex.configuredGraph().taskMap.get('round')!;

const FIELD_LIST =
  'kwargs, contextKwargs, numCpus, numGpus, resources, batchSize, required, maxRetries, timeoutMs';

describe('setConfig by coordinate and by object', () => {
  it('changes the configured graph but not the task of the original graph', () => {
    const graph = makeGraph();
    const ex = executor(graph);
    expect(ex.setConfig('round.kwargs.decimals', 2)).toBe(ex);
    expect(round(ex).kwargs.decimals).toBe(2);
    expect(graph.taskMap.get('round')!.kwargs.decimals).toBe(1);
    expect(ex.graph).toBe(graph);
    expect(() => ex.validate()).not.toThrow();
  });

  it('keeps the other kwargs when one kwarg is set', () => {
    const ex = executor().setConfig('round.kwargs.decimals', 2);
    expect(round(ex).kwargs).toEqual({
      decimals: 2,
      mode: 'half',
      nested: { a: { b: 1, c: 2 }, keep: true },
    });
  });

  it('merges kwargs given in object form, keeping the other kwargs', () => {
    const ex = executor().setConfig({
      round: { kwargs: { decimals: 3, extra: 'x' }, batchSize: 5 },
    });
    expect(round(ex).kwargs).toEqual({
      decimals: 3,
      mode: 'half',
      extra: 'x',
      nested: { a: { b: 1, c: 2 }, keep: true },
    });
    expect(round(ex).batchSize).toBe(5);
  });

  it('merges an object value given to a map field coordinate', () => {
    const ex = executor().setConfig('round.kwargs', { decimals: 4 });
    expect(round(ex).kwargs.decimals).toBe(4);
    expect(round(ex).kwargs.mode).toBe('half');
  });

  it('merges a nested coordinate into nested objects', () => {
    const ex = executor().setConfig('round.kwargs.nested.a.b', 10);
    expect(round(ex).kwargs.nested).toEqual({ a: { b: 10, c: 2 }, keep: true });
    ex.setConfig('round.kwargs.nested.new.deep', 'v');
    expect(round(ex).kwargs.nested).toEqual({ a: { b: 10, c: 2 }, keep: true, new: { deep: 'v' } });
  });

  it('applies changes in order, the later winning', () => {
    const ex = executor()
      .setConfig('round.batchSize', 3)
      .setConfig({ round: { batchSize: 7 } });
    expect(round(ex).batchSize).toBe(7);
  });

  it('accepts the dplutils snake_case spellings', () => {
    const ex = executor()
      .setConfig('round.num_cpus', 2)
      .setConfig('round.batch_size', 4)
      .setConfig({ gen: { max_retries: 0, num_gpus: 0, context_kwargs: { db: 'db_path' } } })
      .setContext('db_path', '/d');
    expect(round(ex).numCpus).toBe(2);
    expect(round(ex).batchSize).toBe(4);
    const gen = ex.configuredGraph().taskMap.get('gen')!;
    expect(gen.maxRetries).toBe(0);
    expect(gen.contextKwargs).toEqual({ db: 'db_path' });
    expect(ex.problems()).toEqual([]);
  });

  it('resets batchSize with null, as dplutils does with None', () => {
    const ex = executor().setConfig('round.batchSize', null);
    expect(round(ex).batchSize ?? undefined).toBeUndefined();
    expect(ex.problems()).toEqual([]);
  });

  it('sets a custom resource by coordinate, merging with the others', () => {
    const graph = makeGraph({ resources: { bigdb: 1 } });
    const ex = new LocalExecutor(graph, {
      numCpus: 2,
      numGpus: 0,
      resources: { bigdb: 2, other: 1 },
    });
    ex.setConfig('round.resources.other', 1);
    expect(round(ex).resources).toEqual({ bigdb: 1, other: 1 });
    expect(ex.problems()).toEqual([]);
  });

  it('returns the original graph when there is no configuration', () => {
    const graph = makeGraph();
    expect(executor(graph).configuredGraph()).toBe(graph);
  });
});

describe('validate() and problems()', () => {
  it('reports an unknown task, naming it and the tasks that exist', () => {
    const ex = executor().setConfig('nope.batchSize', 3);
    expect(ex.problems()).toEqual([
      'config coordinate "nope.batchSize": no task named "nope"; tasks: gen, round',
    ]);
  });

  it('reports an unknown field, listing the known fields', () => {
    const ex = executor().setConfig('round.bogus', 1);
    expect(ex.problems()).toEqual([
      `config coordinate "round.bogus": task field "bogus" is unknown; known fields: ${FIELD_LIST}`,
    ]);
  });

  it.each(['toString', 'constructor', 'hasOwnProperty', '__proto__'])(
    'reports the field %p, a name every object inherits, as unknown',
    (field) => {
      expect(executor().setConfig(`round.${field}`, 1).problems()).toEqual([
        `config coordinate "round.${field}": task field "${field}" is unknown; known fields: ${FIELD_LIST}`,
      ]);
    },
  );

  it('reports a coordinate without a dot, showing the right form', () => {
    expect(executor().setConfig('round', 1).problems()).toEqual([
      'config coordinate "round" must be task.field[.key], e.g. round.kwargs.decimals or round.batchSize',
    ]);
    expect(executor().setConfig('round..x', 1).problems()).toEqual([
      'config coordinate "round..x" must be task.field[.key], e.g. round.kwargs.decimals or round.batchSize',
    ]);
  });

  it('reports a deeper path on a single-valued field', () => {
    expect(executor().setConfig('round.batchSize.x', 1).problems()).toEqual([
      'config coordinate "round.batchSize.x": batchSize is a single value and has no key "x"',
    ]);
  });

  it('reports settings of a task in object form that are not an object', () => {
    expect(executor().setConfig({ round: 5 }).problems()).toEqual([
      'setConfig(object): settings of task "round" must be an object of field to value, got 5',
    ]);
  });

  it('reports every problem at once in one ValidationError', () => {
    const ex = executor()
      .setConfig('nope.batchSize', 3)
      .setConfig('round.bogus', 1)
      .setConfig('round', 1)
      .setConfig('round.batchSize.x', 1)
      .setConfig('round.batchSize', 0);
    const err = validationError(ex);
    expect(err.problems).toEqual([
      `config coordinate "round.bogus": task field "bogus" is unknown; known fields: ${FIELD_LIST}`,
      'config coordinate "round" must be task.field[.key], e.g. round.kwargs.decimals or round.batchSize',
      'config coordinate "round.batchSize.x": batchSize is a single value and has no key "x"',
      'config coordinate "nope.batchSize": no task named "nope"; tasks: gen, round',
      'task "round": batchSize must be an integer >= 1 (or unset), got 0',
    ]);
    expect(err.message).toBe(
      `pipeline is not valid (5 problems):\n${err.problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  });

  it('reports a required kwarg without a value, saying how to set it', () => {
    const ex = executor(makeGraph({ kwargs: {}, required: ['decimals'] }));
    expect(validationError(ex).problems).toEqual([
      'task "round" requires kwarg "decimals", which has no value; ' +
        "set it with setConfig('round.kwargs.decimals', value) or -s round.kwargs.decimals=VALUE",
    ]);
    ex.setConfig('round.kwargs.decimals', 2);
    expect(() => ex.validate()).not.toThrow();
  });

  it('accepts a required kwarg that comes from the context', () => {
    const ex = executor(
      makeGraph({ kwargs: {}, required: ['db'], contextKwargs: { db: 'db_path' } }),
    );
    ex.setContext('db_path', '/data');
    expect(ex.problems()).toEqual([]);
  });

  it('reports a context key that is not set, once, saying how to set it', () => {
    const ex = executor(
      makeGraph({ kwargs: {}, required: ['db'], contextKwargs: { db: 'db_path' } }),
    );
    expect(ex.problems()).toEqual([
      'task "round": kwarg "db" comes from context key "db_path", which is not set; ' +
        'set it with setContext("db_path", value) or -c db_path=VALUE',
    ]);
    ex.setContext('db_path', '/data');
    expect(() => ex.validate()).not.toThrow();
  });

  it('does not report a missing context key when the kwarg has a default in kwargs', () => {
    const ex = executor(
      makeGraph({ kwargs: { db: '/default' }, contextKwargs: { db: 'db_path' } }),
    );
    expect(ex.problems()).toEqual([]);
  });

  it('reports a bad numCpus set by configuration as a validation problem', () => {
    const [coord, value] = parseAssignment('round.numCpus=-1', '-s');
    const ex = executor().setConfig(coord, value);
    expect(validationError(ex).problems).toEqual([
      'task "round": numCpus must be a number >= 0, got -1',
    ]);
  });

  it('reports a bad resource quantity set by configuration as a validation problem', () => {
    const ex = executor().setConfig('round.resources.bigdb', 'lots');
    expect(validationError(ex).problems).toEqual([
      'task "round": resources.bigdb must be a number >= 0, got "lots"',
    ]);
  });

  it('reports other bad settings set by configuration, naming the task and field', () => {
    const ex = executor()
      .setConfig('round.batchSize', 1.5)
      .setConfig('gen.maxRetries', -2)
      .setConfig('gen.kwargs', 5);
    expect(validationError(ex).problems).toEqual([
      'task "gen": maxRetries must be an integer >= 0, got -2',
      'task "gen": kwargs must be an object, got 5',
      'task "round": batchSize must be an integer >= 1 (or unset), got 1.5',
    ]);
  });

  it('reports a task that needs a GPU on an executor without one, naming the task', () => {
    const gpuTask = new PipelineTask('embed', identity, { numGpus: 1 });
    const ex = new LocalExecutor(new PipelineGraph([gpuTask]), {
      maxBatches: 1,
      numCpus: 2,
      numGpus: 0,
    });
    expect(validationError(ex).problems).toEqual([
      'task "embed" needs {CPU:1, GPU:1} but no call can ever fit: GPU>=1 (this machine has 0); ' +
        'lower the request, or give the executor the resource (LocalExecutor options numCpus/numGpus/resources), ' +
        'or run on a cluster whose workers have it',
    ]);
  });

  it('reports a task made to need more CPUs than the executor has by configuration', () => {
    const ex = executor().setConfig('round.numCpus', 3);
    expect(ex.problems()).toEqual([
      expect.stringContaining(
        'task "round" needs {CPU:3} but no call can ever fit: CPU>=3 (this machine has 2)',
      ),
    ]);
  });

  it('validates before run() starts anything', () => {
    const ex = executor().setConfig('nope.x', 1);
    expect(() => ex.run()).toThrow(ValidationError);
  });
});

describe('setContext', () => {
  it('sets values that getContext returns', () => {
    const ex = executor().setContext('a', 1).setContext('b', { x: 1 });
    expect([...ex.getContext()]).toEqual([
      ['a', 1],
      ['b', { x: 1 }],
    ]);
  });

  it('rejects an empty key', () => {
    expect(() => executor().setContext('', 1)).toThrow(
      new TypeError('context key must be a non-empty string, got ""'),
    );
  });
});

describe('setConfig({ fromYaml })', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dpl-config-test-'));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function yamlFile(name: string, text: string): string {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  it('reads context: and config: sections', () => {
    const file = yamlFile(
      'ok.yaml',
      [
        'context:',
        '  db_path: /data/db',
        '  limit: 3',
        'config:',
        '  round:',
        '    batch_size: 5',
        '    kwargs:',
        '      decimals: 2',
        '      nested: { a: { b: 7 } }',
        '  gen:',
        '    numCpus: 0.5',
      ].join('\n'),
    );
    const ex = executor().setConfig({ fromYaml: file });
    expect([...ex.getContext()]).toEqual([
      ['db_path', '/data/db'],
      ['limit', 3],
    ]);
    expect(round(ex).batchSize).toBe(5);
    expect(round(ex).kwargs).toEqual({
      decimals: 2,
      mode: 'half',
      nested: { a: { b: 7, c: 2 }, keep: true },
    });
    expect(ex.configuredGraph().taskMap.get('gen')!.numCpus).toBe(0.5);
    expect(ex.problems()).toEqual([]);
  });

  it('treats an empty file as no configuration', () => {
    const file = yamlFile('empty.yaml', '');
    const graph = makeGraph();
    const ex = executor(graph).setConfig({ fromYaml: file });
    expect(ex.configuredGraph()).toBe(graph);
    expect(ex.getContext().size).toBe(0);
    expect(readConfigFile(yamlFile('comments.yaml', '# nothing here\n'))).toEqual({
      context: {},
      config: {},
    });
  });

  it('refuses a file over 4 MiB before parsing it, naming its size and the limit', () => {
    const file = yamlFile('huge.yaml', `config:\n  round:\n    kwargs:\n      nested:\n${'        - 1234567\n'.repeat(300_000)}`);
    expect(() => readConfigFile(file)).toThrow(
      `config file ${file} is 5.1 MiB; dpl reads config files of at most 4.0 MiB: keep data out of it (write it to a file and pass its path, e.g. -c data_path=PATH)`,
    );
  });

  it('reports problems of its config: section through validate(), naming the file', () => {
    const file = yamlFile('bad-task.yaml', 'config:\n  nope:\n    batchSize: 2\n  round: 3\n');
    const ex = executor().setConfig({ fromYaml: file });
    expect(ex.problems()).toEqual([
      `config: in ${file}: settings of task "round" must be an object of field to value, got 3`,
      'config coordinate "nope.batchSize": no task named "nope"; tasks: gen, round',
    ]);
  });

  it('throws a ConfigError naming the file when it is not valid YAML', () => {
    const file = yamlFile('broken.yaml', 'config:\n  round: [1, 2\n');
    const err = configError(() => executor().setConfig({ fromYaml: file }));
    expect(err.path).toBe(file);
    expect(err.message.startsWith(`config file ${file} is not valid YAML: `)).toBe(true);
  });

  it('throws a ConfigError naming the file when it cannot be read', () => {
    const file = join(dir, 'missing.yaml');
    const err = configError(() => executor().setConfig({ fromYaml: file }));
    expect(err.message).toMatch(new RegExp(`^cannot read config file ${file}: ENOENT`));
  });

  it('throws a ConfigError on an unknown top-level section', () => {
    const file = yamlFile('unknown.yaml', 'context: {}\nsettings:\n  round: {}\n');
    expect(configError(() => executor().setConfig({ fromYaml: file })).message).toBe(
      `config file ${file} has unknown section "settings"; only context: and config: are read`,
    );
  });

  it('throws a ConfigError when context: is not a mapping', () => {
    const file = yamlFile('ctx-list.yaml', 'context:\n  - a\n  - b\n');
    expect(configError(() => executor().setConfig({ fromYaml: file })).message).toBe(
      `config file ${file}: context: must be a mapping of key to value, got ["a","b"]`,
    );
  });

  it('throws a ConfigError when config: is not a mapping', () => {
    const file = yamlFile('cfg-scalar.yaml', 'config: 5\n');
    expect(configError(() => executor().setConfig({ fromYaml: file })).message).toBe(
      `config file ${file}: config: must be a mapping of task name to settings, got 5`,
    );
  });

  it('throws a ConfigError when the document is not a mapping', () => {
    const file = yamlFile('list.yaml', '- 1\n- 2\n');
    expect(configError(() => executor().setConfig({ fromYaml: file })).message).toBe(
      `config file ${file} must hold a mapping with context: and config: sections, got [1,2]`,
    );
  });

  it('changes nothing when the file is rejected', () => {
    const file = yamlFile('half.yaml', 'context:\n  a: 1\nextra: 2\n');
    const graph = makeGraph();
    const ex = executor(graph);
    expect(() => ex.setConfig({ fromYaml: file })).toThrow(ConfigError);
    expect(ex.getContext().size).toBe(0);
    expect(ex.configuredGraph()).toBe(graph);
  });
});

describe('parseConfigValue', () => {
  it.each([
    ['2', 2],
    ['-1.5', -1.5],
    ['[1,2]', [1, 2]],
    ['{"a":1}', { a: 1 }],
    ['true', true],
    ['false', false],
    ['null', null],
    ['abc', 'abc'],
    ['"2"', '2'],
    ['/data/db', '/data/db'],
    ['', ''],
  ])('parses %p as %p', (text, value) => {
    expect(parseConfigValue(text)).toEqual(value);
  });
});

describe('parseAssignment', () => {
  it('splits at the first "=" and parses the value', () => {
    expect(parseAssignment('round.kwargs.decimals=2', '-s')).toEqual(['round.kwargs.decimals', 2]);
    expect(parseAssignment('a.b=x=y', '-s')).toEqual(['a.b', 'x=y']);
    expect(parseAssignment('db_path=/data/db', '-c')).toEqual(['db_path', '/data/db']);
    expect(parseAssignment('a.b=', '-s')).toEqual(['a.b', '']);
  });

  it('throws a ConfigError showing the right form when there is no "="', () => {
    const err = configError(() => parseAssignment('nokey', '-s'));
    expect(err.message).toBe(
      '-s "nokey" is not key=value; write it like -s round.kwargs.decimals=2',
    );
    expect(err.path).toBe('nokey');
    expect(configError(() => parseAssignment('nokey', '-c')).message).toBe(
      '-c "nokey" is not key=value; write it like -c db_path=/data/db',
    );
  });

  it('throws a ConfigError when the key is empty', () => {
    expect(configError(() => parseAssignment('=v', '-s')).message).toBe(
      '-s "=v" is not key=value; write it like -s round.kwargs.decimals=2',
    );
  });

  it('throws a ConfigError when the key is only spaces', () => {
    expect(configError(() => parseAssignment('  =v', '-c')).message).toBe(
      '-c "  =v" is not key=value; write it like -c db_path=/data/db',
    );
  });
});

describe('executor.toString', () => {
  it('lists the tasks with their settings and the context keys, set or not', () => {
    const ex = executor(makeGraph({ kwargs: { decimals: 1 }, contextKwargs: { db: 'db_path' } }))
      .setConfig('round.kwargs.decimals', 2)
      .setContext('other', 5);
    expect(ex.toString()).toBe(
      [
        'Tasks:',
        '  - gen (numCpus=1, maxRetries=3) -> round',
        '  - round (numCpus=1, batchSize=10, kwargs={"decimals":2}, contextKwargs={"db":"db_path"}, maxRetries=3) [sink]',
        'Context:',
        '  - db_path (not set)',
        '  - other (set to 5)',
        '',
      ].join('\n'),
    );
    ex.setContext('db_path', '/data');
    expect(ex.toString()).toContain('  - db_path (set to "/data")\n');
  });

  it('has no Context section when no task uses the context and none is set', () => {
    const ex = executor(makeGraph({ kwargs: {} }));
    expect(ex.toString()).toBe(
      'Tasks:\n  - gen (numCpus=1, maxRetries=3) -> round\n  - round (numCpus=1, batchSize=10, maxRetries=3) [sink]\n',
    );
  });

  it('lists every successor of a task that feeds several', () => {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => new PipelineTask(n, identity)) as [
      PipelineTask,
      PipelineTask,
      PipelineTask,
    ];
    const ex = executor(
      new PipelineGraph([
        [a, b],
        [a, c],
      ]),
    );
    expect(ex.toString().split('\n')[1]).toBe('  - a (numCpus=1, maxRetries=3) -> b, c');
  });
});

describe('kwargs a task does not take', () => {
  it('refuses a kwarg the task does not declare, with the closest name it does', () => {
    const ex = executor().setConfig('round.kwargs.decimls', 3);
    expect(ex.problems()).toEqual([
      'config coordinate "round.kwargs.decimls": task "round" has no kwarg "decimls" (did you mean "decimals"?); its kwargs: decimals, mode, nested ' +
        '(a task takes the kwargs its module declares in kwargs or required)',
    ]);
    // The object form and YAML's config: go through the same check.
    expect(executor().setConfig({ round: { kwargs: { decimals: 2, extra: 1 } } }).problems()).toEqual([
      expect.stringContaining('config coordinate "round.kwargs.extra": task "round" has no kwarg "extra"; its kwargs:'),
    ]);
    expect(executor().setConfig('gen.kwargs.x', 1).problems()).toEqual([expect.stringContaining('task "gen" has no kwarg "x"; it declares none')]);
  });

  it('takes kwargs declared as required or as coming from the context, which have no default to compare with', () => {
    const graph = new PipelineGraph([new PipelineTask('t', identity, { required: ['db'], contextKwargs: { path: 'data_path' }, kwargs: { n: 1 } })]);
    const ex = executor(graph).setContext('data_path', '/d').setConfig('t.kwargs.db', 'x').setConfig('t.kwargs.path', 5).setConfig('t.kwargs.n', 2);
    expect(ex.problems()).toEqual([]);
  });

  it.each([
    ['decimals', 'abc', 'the task\'s default is a number (1), got a string ("abc"); give a number, e.g. round.kwargs.decimals=1'],
    ['mode', 3, 'the task\'s default is a string ("half"), got a number (3); give a string, e.g. round.kwargs.mode="half"'],
    ['nested', [1], 'the task\'s default is an object'],
  ])('refuses %p set to a value of another type than its default (%p)', (kwarg, value, message) => {
    expect(executor().setConfig(`round.kwargs.${kwarg}`, value).problems()).toEqual([expect.stringContaining(`config coordinate "round.kwargs.${kwarg}": ${message}`)]);
  });

  it('takes values of the default\'s type, a deeper key of an object default, and anything for a null default', () => {
    const graph = new PipelineGraph([new PipelineTask('t', identity, { kwargs: { n: 1, any: null, deep: { a: 1 } } })]);
    expect(executor(graph).setConfig('t.kwargs.n', 2.5).setConfig('t.kwargs.any', 'x').setConfig('t.kwargs.deep.b', 'y').problems()).toEqual([]);
  });

  it('names an unknown task given an empty settings object, and suggests a close name', () => {
    expect(executor().setConfig({ nosuchtask: {} }).problems()).toEqual(['config coordinate "nosuchtask": no task named "nosuchtask"; tasks: gen, round']);
    expect(executor().setConfig({ round: {} }).problems()).toEqual([]);
    expect(executor().setConfig('rond.batchSize', 2).problems()).toEqual([
      'config coordinate "rond.batchSize": no task named "rond" (did you mean "round"?); tasks: gen, round',
    ]);
    expect(executor().setConfig('round.batchsize', 2).problems()).toEqual([expect.stringContaining('task field "batchsize" is unknown (did you mean "batchSize"?)')]);
  });
});

describe('kwargs nested too deep', () => {
  const nested = (levels: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < levels; i++) v = i % 2 === 0 ? [v] : { a: v };
    return v;
  };
  const rule = 'nests deeper than 64 levels (arrays and objects inside each other, or a value that contains itself); ' +
    'dpl takes kwargs nested at most 64 deep: pass a large structure as a file path and read it inside the task';

  it('refuses a configured value deeper than 64 levels (10,000 too, without a stack overflow), and takes 64', () => {
    const graph = (): PipelineGraph => new PipelineGraph([new PipelineTask('t', identity, { kwargs: { spec: null } })]);
    expect(executor(graph()).setConfig('t.kwargs.spec', nested(64)).problems()).toEqual([]);
    expect(executor(graph()).setConfig('t.kwargs.spec', nested(65)).problems()).toEqual([`task "t": kwarg "spec" ${rule}`]);
    expect(executor(graph()).setConfig({ t: { kwargs: { spec: nested(10_000) } } }).problems()).toEqual([`task "t": kwarg "spec" ${rule}`]);
  });

  it('refuses one in the module\'s own kwargs, one from the context, and a value that contains itself', () => {
    expect(() => new PipelineTask('t', identity, { kwargs: { spec: nested(10_000) } })).toThrow(`task "t": kwarg "spec" ${rule}`);
    const fromContext = new PipelineGraph([new PipelineTask('t', identity, { contextKwargs: { spec: 'big' } })]);
    expect(executor(fromContext).setContext('big', nested(100)).problems()).toEqual([`task "t": kwarg "spec" from context key "big" ${rule}`]);
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(executor(fromContext).setContext('big', loop).problems()).toEqual([`task "t": kwarg "spec" from context key "big" ${rule}`]);
  });

  it('does not look into class instances (state passed by reference)', () => {
    class Client {
      self = this;
    }
    const graph = new PipelineGraph([new PipelineTask('t', identity, { kwargs: { client: new Client() } })]);
    expect(executor(graph).problems()).toEqual([]);
  });
});
