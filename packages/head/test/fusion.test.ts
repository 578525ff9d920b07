import { PipelineGraph, PipelineTask, ResourceSet } from '@dpl/core';
import { fuseChains } from '../src/jobs/fusion';
import type { JobTask } from '../src/jobs/engine';

const fn = () => {
  throw new Error('not run here');
};
const t = (name: string, opts: ConstructorParameters<typeof PipelineTask>[2] = {}) => new PipelineTask(name, fn, opts);

function fuse(graph: PipelineGraph) {
  const tasks = new Map<string, JobTask>(
    graph.tasks.map((x) => [x.name, { name: x.name, request: x.request(), numGpus: x.numGpus, kwargs: Uint8Array.of(x.name.length) }]),
  );
  return fuseChains(graph, tasks, fn as () => never);
}

const shape = (g: PipelineGraph) => ({ tasks: g.tasks.map((x) => x.name).sort(), edges: g.edges.map((e) => e.join('>')).sort() });

describe('fuseChains', () => {
  it('runs a straight chain of compatible tasks as one call named after its last task', () => {
    const f = fuse(new PipelineGraph([t('parse', { batchSize: 5 }), t('scale'), t('score')]));
    expect(shape(f.graph)).toEqual({ tasks: ['score'], edges: [] });
    expect(f.chains.get('score')).toEqual(['parse', 'scale', 'score']);
    // The call reads what the chain's first task reads: its batch size, its resources.
    expect(f.graph.taskMap.get('score')!.batchSize).toBe(5);
    expect(f.tasks.get('score')!.fusedBefore).toEqual([
      { task: 'parse', kwargs: Uint8Array.of(5) },
      { task: 'scale', kwargs: Uint8Array.of(5) },
    ]);
  });

  it('stops a chain at a batch size, other resources, other retries or timeouts', () => {
    const f = fuse(
      new PipelineGraph([
        t('a'),
        t('b', { batchSize: 10 }),
        t('c'),
        t('d', { numCpus: 2 }),
        t('e', { numCpus: 2 }),
        t('f', { numCpus: 2, maxRetries: 0 }),
        t('g', { numCpus: 2, maxRetries: 0, timeoutMs: 50 }),
        t('h', { numCpus: 2, maxRetries: 0, timeoutMs: 50, resources: { bigdb: 1 } }),
      ]),
    );
    expect([...f.chains.values()]).toEqual([
      ['b', 'c'],
      ['d', 'e'],
    ]);
    expect(shape(f.graph)).toEqual({ tasks: ['a', 'c', 'e', 'f', 'g', 'h'], edges: ['a>c', 'c>e', 'e>f', 'f>g', 'g>h'] });
    expect(f.tasks.get('a')!.fusedBefore).toBeUndefined();
    expect(f.tasks.get('e')!.request).toEqual(ResourceSet.from({ CPU: 2, GPU: 0 }));
  });

  it('never fuses across a branch or a join, whatever order the edges come in', () => {
    const [src, left, right, join, out, tail] = ['src', 'left', 'right', 'join', 'out', 'tail'].map((n) => t(n));
    const f = fuse(
      new PipelineGraph([
        [out!, tail!],
        [join!, out!],
        [src!, left!],
        [src!, right!],
        [left!, join!],
        [right!, join!],
      ]),
    );
    // join → out → tail is a chain; src fans out and join fans in, so neither fuses with them.
    expect([...f.chains.values()]).toEqual([['join', 'out', 'tail']]);
    expect(shape(f.graph)).toEqual({ tasks: ['left', 'right', 'src', 'tail'], edges: ['left>tail', 'right>tail', 'src>left', 'src>right'] });
  });

  it('gives a fused call the sum of its tasks’ timeouts', () => {
    const f = fuse(new PipelineGraph([t('a', { timeoutMs: 100 }), t('b', { timeoutMs: 100 })]));
    expect(f.graph.taskMap.get('b')!.timeoutMs).toBe(200);
  });

  it('leaves a graph with nothing to fuse as it was', () => {
    const g = new PipelineGraph([t('a'), t('b', { batchSize: 2 })]);
    const f = fuse(g);
    expect(f.graph).toBe(g);
    expect(f.chains.size).toBe(0);
  });
});
