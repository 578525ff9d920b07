import type { Table } from 'apache-arrow';
import { PipelineGraph, PipelineTask, isPipelineGraph, type PipelineEdge } from '@dpl/core';
import { typeErrorOf } from '../../../test/helpers/errors';

const task = (name: string): PipelineTask => new PipelineTask(name, (df: Table) => df);

const names = (tasks: readonly PipelineTask[]): string[] => tasks.map((t) => t.name);


const CYCLE_ADVICE = '; a pipeline must be acyclic (remove one of these edges)';

describe('PipelineGraph from a list of tasks', () => {
  const [a, b, c] = [task('a'), task('b'), task('c')];
  const graph = new PipelineGraph([a, b, c]);

  it('chains the tasks in order', () => {
    expect(names(graph.tasks)).toEqual(['a', 'b', 'c']);
    expect(graph.edges).toEqual([
      ['a', 'b'],
      ['b', 'c'],
    ]);
  });

  it('has the first task as its only source and the last as its only sink', () => {
    expect(names(graph.sourceTasks)).toEqual(['a']);
    expect(names(graph.sinkTasks)).toEqual(['c']);
  });

  it('maps names to the very task objects given', () => {
    expect([...graph.taskMap.keys()]).toEqual(['a', 'b', 'c']);
    expect(graph.taskMap.get('b')).toBe(b);
  });

  it('knows the successors and predecessors of each task', () => {
    expect(graph.successors('a')).toEqual(['b']);
    expect(graph.successors('c')).toEqual([]);
    expect(graph.predecessors('c')).toEqual(['b']);
    expect(graph.predecessors('a')).toEqual([]);
    expect(graph.successors('nope')).toEqual([]);
    expect(graph.predecessors('nope')).toEqual([]);
  });

  it('ranks each task by its distance to the sink', () => {
    expect(['a', 'b', 'c'].map((n) => graph.rank(n))).toEqual([2, 1, 0]);
  });

  it('makes a one-task graph whose task is both source and sink', () => {
    const single = new PipelineGraph([a]);
    expect(names(single.sourceTasks)).toEqual(['a']);
    expect(names(single.sinkTasks)).toEqual(['a']);
    expect(single.edges).toEqual([]);
    expect(single.rank('a')).toBe(0);
  });
});

describe('PipelineGraph from edges', () => {
  it('builds a diamond with one source and one sink', () => {
    const [a, b, c, d] = [task('a'), task('b'), task('c'), task('d')];
    const g = new PipelineGraph([
      [a, b],
      [a, c],
      [b, d],
      [c, d],
    ]);
    expect(names(g.tasks)).toEqual(['a', 'b', 'c', 'd']);
    expect(names(g.sourceTasks)).toEqual(['a']);
    expect(names(g.sinkTasks)).toEqual(['d']);
    expect(g.successors('a')).toEqual(['b', 'c']);
    expect(g.predecessors('d')).toEqual(['b', 'c']);
    expect(['a', 'b', 'c', 'd'].map((n) => g.rank(n))).toEqual([2, 1, 1, 0]);
    expect([...g.ancestors('d')].sort()).toEqual(['a', 'b', 'c']);
    expect([...g.ancestors('b')]).toEqual(['a']);
    expect([...g.ancestors('a')]).toEqual([]);
  });

  it('supports several sources and several sinks', () => {
    const [s1, s2, mid, k1, k2] = ['s1', 's2', 'mid', 'k1', 'k2'].map(task) as [
      PipelineTask,
      PipelineTask,
      PipelineTask,
      PipelineTask,
      PipelineTask,
    ];
    const g = new PipelineGraph([
      [s1, mid],
      [s2, mid],
      [mid, k1],
      [mid, k2],
      [s2, k2],
    ]);
    expect(names(g.sourceTasks)).toEqual(['s1', 's2']);
    expect(names(g.sinkTasks)).toEqual(['k1', 'k2']);
    expect(g.predecessors('k2')).toEqual(['mid', 's2']);
    expect(g.rank('s2')).toBe(2);
    expect(g.rank('mid')).toBe(1);
    expect([...g.ancestors('k2')].sort()).toEqual(['mid', 's1', 's2']);
    expect([...g.ancestors('k1')].sort()).toEqual(['mid', 's1', 's2']);
  });

  it('accepts the same task object in several edges', () => {
    const [a, b, c] = [task('a'), task('b'), task('c')];
    const g = new PipelineGraph([
      [a, b],
      [a, c],
      [b, c],
    ]);
    expect(g.tasks).toHaveLength(3);
    expect(g.taskMap.get('a')).toBe(a);
  });

  it('counts the same edge given twice once', () => {
    const [a, b] = [task('a'), task('b')];
    const g = new PipelineGraph([
      [a, b],
      [a, b],
    ]);
    expect(g.edges).toEqual([['a', 'b']]);
    expect(g.successors('a')).toEqual(['b']);
  });

  it('ranks by the longest path to a sink through a chain of diamonds', () => {
    // a -> {b, c} -> d -> {e, f} -> g, plus a shortcut a -> g that must not shorten a's rank.
    const t = Object.fromEntries(
      ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => [n, task(n)]),
    ) as Record<string, PipelineTask>;
    const edges: PipelineEdge[] = [
      [t.a!, t.b!],
      [t.a!, t.c!],
      [t.b!, t.d!],
      [t.c!, t.d!],
      [t.d!, t.e!],
      [t.d!, t.f!],
      [t.e!, t.g!],
      [t.f!, t.g!],
      [t.a!, t.g!],
    ];
    const g = new PipelineGraph(edges);
    expect(Object.fromEntries(g.tasks.map((x) => [x.name, g.rank(x.name)]))).toEqual({
      a: 4,
      b: 3,
      c: 3,
      d: 2,
      e: 1,
      f: 1,
      g: 0,
    });
    expect([...g.ancestors('g')].sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect([...g.ancestors('d')].sort()).toEqual(['a', 'b', 'c']);
  });

  it('ranks an unequal branch by its longer arm', () => {
    const [a, b, c, d] = [task('a'), task('b'), task('c'), task('d')];
    const g = new PipelineGraph([
      [a, d],
      [a, b],
      [b, c],
      [c, d],
    ]);
    expect(g.rank('a')).toBe(3);
  });

  it('throws a TypeError naming the task when rank() is asked for an unknown task', () => {
    expect(typeErrorOf(() => new PipelineGraph([task('a')]).rank('zz'))).toBe(
      'no task named "zz" in this graph',
    );
  });
});

describe('PipelineGraph rejects', () => {
  it('an empty list', () => {
    expect(typeErrorOf(() => new PipelineGraph([]))).toBe(
      'a PipelineGraph needs a non-empty list of tasks or of [from, to] edges',
    );
  });

  it('something that is not a list', () => {
    expect(typeErrorOf(() => new PipelineGraph(undefined as unknown as PipelineTask[]))).toBe(
      'a PipelineGraph needs a non-empty list of tasks or of [from, to] edges',
    );
  });

  it('a list that mixes tasks and edges', () => {
    const [a, b] = [task('a'), task('b')];
    const mixed = [a, [a, b]] as unknown as PipelineTask[];
    expect(typeErrorOf(() => new PipelineGraph(mixed))).toBe(
      'a PipelineGraph takes either a list of PipelineTasks (a straight line) or a list of ' +
        '[from, to] pairs of PipelineTasks (a DAG), not a mix',
    );
  });

  it('a malformed edge, naming its index', () => {
    const [a, b] = [task('a'), task('b')];
    const bad = [[a, b], [a]] as unknown as PipelineEdge[];
    expect(typeErrorOf(() => new PipelineGraph(bad))).toMatch(
      /^edge 1 must be a pair \[PipelineTask, PipelineTask\], got /,
    );
    const notTasks = [['a', 'b']] as unknown as PipelineEdge[];
    expect(typeErrorOf(() => new PipelineGraph(notTasks))).toBe(
      'edge 0 must be a pair [PipelineTask, PipelineTask], got ["a","b"]',
    );
    const triple = [[a, b, a]] as unknown as PipelineEdge[];
    expect(typeErrorOf(() => new PipelineGraph(triple))).toMatch(/^edge 0 must be a pair/);
  });

  it('two different tasks with the same name, suggesting a renamed copy', () => {
    const a1 = task('a');
    const a2 = task('a');
    const b = task('b');
    const message =
      'two different tasks are named "a"; task names must be unique ' +
      "(make a renamed copy with task.with({ name: 'a2' }))";
    expect(typeErrorOf(() => new PipelineGraph([a1, b, a2]))).toBe(message);
    expect(
      typeErrorOf(
        () =>
          new PipelineGraph([
            [a1, b],
            [b, a2],
          ]),
      ),
    ).toBe(message);
  });

  it('a cycle of three, printing the path', () => {
    const [a, b, c] = [task('a'), task('b'), task('c')];
    expect(
      typeErrorOf(
        () =>
          new PipelineGraph([
            [a, b],
            [b, c],
            [c, a],
          ]),
      ),
    ).toBe(`the graph has a cycle: a -> b -> c -> a${CYCLE_ADVICE}`);
  });

  it('a self-loop', () => {
    const a = task('a');
    expect(typeErrorOf(() => new PipelineGraph([[a, a]]))).toBe(
      `the graph has a cycle: a -> a${CYCLE_ADVICE}`,
    );
  });

  it('a cycle reached from a source, printing only the cycle', () => {
    const [s, a, b] = [task('s'), task('a'), task('b')];
    expect(
      typeErrorOf(
        () =>
          new PipelineGraph([
            [s, a],
            [a, b],
            [b, a],
          ]),
      ),
    ).toBe(`the graph has a cycle: a -> b -> a${CYCLE_ADVICE}`);
  });

  it('a cycle with a task downstream of it that comes first, printing only the cycle', () => {
    const [a, b, c] = [task('a'), task('b'), task('c')];
    expect(
      typeErrorOf(
        () =>
          new PipelineGraph([
            [c, task('d')],
            [a, b],
            [b, a],
            [b, c],
          ]),
      ),
    ).toBe(`the graph has a cycle: b -> a -> b${CYCLE_ADVICE}`);
  });

  it('the same task twice in a list (a cycle)', () => {
    const [a, b] = [task('a'), task('b')];
    expect(typeErrorOf(() => new PipelineGraph([a, b, a]))).toBe(
      `the graph has a cycle: a -> b -> a${CYCLE_ADVICE}`,
    );
  });
});

describe('isPipelineGraph', () => {
  it('recognises graphs by their brand, not look-alikes', () => {
    expect(isPipelineGraph(new PipelineGraph([task('a')]))).toBe(true);
    expect(isPipelineGraph({ tasks: [], edges: [], taskMap: new Map() })).toBe(false);
    expect(isPipelineGraph(null)).toBe(false);
    expect(isPipelineGraph({ [Symbol.for('dpl.PipelineGraph')]: true })).toBe(true);
  });
});

describe('PipelineGraph.mapTasks', () => {
  it('keeps the topology and uses the mapped tasks', () => {
    const [a, b, c, d] = [task('a'), task('b'), task('c'), task('d')];
    const g = new PipelineGraph([
      [a, b],
      [a, c],
      [b, d],
      [c, d],
    ]);
    const mapped = g.mapTasks((t) => t.with({ numCpus: 2 }));
    expect(mapped).not.toBe(g);
    expect(mapped.edges).toEqual(g.edges);
    expect(names(mapped.tasks)).toEqual(['a', 'b', 'c', 'd']);
    expect(mapped.tasks.every((t) => t.numCpus === 2)).toBe(true);
    expect(g.tasks.every((t) => t.numCpus === 1)).toBe(true);
    expect(['a', 'b', 'c', 'd'].map((n) => mapped.rank(n))).toEqual([2, 1, 1, 0]);
  });

  it('maps a one-task graph', () => {
    const g = new PipelineGraph([task('a')]).mapTasks((t) => t.with({ batchSize: 4 }));
    expect(names(g.tasks)).toEqual(['a']);
    expect(g.taskMap.get('a')!.batchSize).toBe(4);
  });

  it('keeps a list graph a chain', () => {
    const g = new PipelineGraph([task('x'), task('y'), task('z')]).mapTasks((t) => t);
    expect(g.edges).toEqual([
      ['x', 'y'],
      ['y', 'z'],
    ]);
  });

  it('rejects a function that renames a task', () => {
    const g = new PipelineGraph([task('a'), task('b')]);
    expect(typeErrorOf(() => g.mapTasks((t) => (t.name === 'b' ? t.with({ name: 'c' }) : t)))).toBe(
      'mapTasks must keep task names (b became c)',
    );
  });
});
