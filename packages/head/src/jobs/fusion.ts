/**
 * Task fusion (Ray Data's operator fusion): a chain of tasks that would each wait for the one
 * before is run as one call, in one executor turn, so the head, the worker's channel and Arrow
 * encoding sit between the chain's ends only, not between each of its tasks.
 *
 * Task `b` joins the call of its predecessor `a` when nothing can tell the difference but
 * time: `a` feeds only `b` and `b` reads only `a`; `b` has no batch size (so each of `a`'s
 * outputs is one call of `b`, the scheduler's rule anyway); and both ask for the same resources
 * and have the same retries and timeout. An empty output ends the chain, as the scheduler drops
 * empty batches. What changes: a failure anywhere in the chain retries the whole chain (the
 * tasks before the one that failed run again), and the chain's batches in between never leave
 * the executor, so they are not kept for recompute (the chain is recomputed from its input).
 * @internal
 */
import { PipelineGraph, PipelineTask } from '@dpl/core';
import type { JobTask } from './engine';

export interface FusedGraph {
  /** The graph of calls: one task per chain, named after the chain's last task. */
  graph: PipelineGraph;
  tasks: Map<string, JobTask>;
  /** A fused task's name → the tasks it runs, in order (only chains of two or more). */
  chains: Map<string, readonly string[]>;
}

/** Fuses every chain of compatible tasks in `graph` (see the module's comment). */
export function fuseChains(graph: PipelineGraph, tasks: ReadonlyMap<string, JobTask>, runsOnWorkers: () => never): FusedGraph {
  /** Task → the chain it belongs to (the same array for every task of a chain). */
  const chainOf = new Map<string, string[]>();
  for (const t of topological(graph)) {
    const preds = graph.predecessors(t.name);
    const a = preds.length === 1 ? graph.taskMap.get(preds[0]!)! : undefined;
    if (a !== undefined && graph.successors(a.name).length === 1 && compatible(a, t)) {
      const chain = chainOf.get(a.name)!;
      chain.push(t.name);
      chainOf.set(t.name, chain);
    } else chainOf.set(t.name, [t.name]);
  }
  const chains = new Map<string, readonly string[]>();
  const stageTasks = new Map<string, PipelineTask>();
  const jobTasks = new Map<string, JobTask>();
  for (const chain of new Set(chainOf.values())) {
    const name = chain[chain.length - 1]!;
    const first = graph.taskMap.get(chain[0]!)!;
    if (chain.length === 1) {
      stageTasks.set(name, graph.taskMap.get(name)!);
      jobTasks.set(name, tasks.get(name)!);
      continue;
    }
    chains.set(name, chain);
    const opts = first.options();
    stageTasks.set(
      name,
      new PipelineTask(name, runsOnWorkers, {
        numCpus: opts.numCpus,
        numGpus: opts.numGpus,
        resources: opts.resources,
        batchSize: opts.batchSize,
        maxRetries: opts.maxRetries,
        // Each task of the chain may take its own timeout.
        timeoutMs: opts.timeoutMs === undefined ? undefined : opts.timeoutMs * chain.length,
      }),
    );
    const last = tasks.get(name)!;
    jobTasks.set(name, { ...last, fusedBefore: chain.slice(0, -1).map((n) => ({ task: n, kwargs: tasks.get(n)!.kwargs })) });
  }
  if (chains.size === 0) return { graph, tasks: jobTasks, chains };
  const stageOf = (task: string): PipelineTask => stageTasks.get(chainOf.get(task)!.at(-1)!)!;
  const edges = graph.edges.filter(([a, b]) => chainOf.get(a) !== chainOf.get(b)).map(([a, b]) => [stageOf(a), stageOf(b)] as const);
  return { graph: edges.length === 0 ? new PipelineGraph([...stageTasks.values()]) : new PipelineGraph(edges), tasks: jobTasks, chains };
}

/** The graph's tasks, each after its predecessors. */
function topological(graph: PipelineGraph): PipelineTask[] {
  const waiting = new Map(graph.tasks.map((t) => [t.name, graph.predecessors(t.name).length]));
  const ready = graph.tasks.filter((t) => waiting.get(t.name) === 0);
  const out: PipelineTask[] = [];
  for (let t = ready.shift(); t !== undefined; t = ready.shift()) {
    out.push(t);
    for (const s of graph.successors(t.name)) {
      const n = waiting.get(s)! - 1;
      waiting.set(s, n);
      if (n === 0) ready.push(graph.taskMap.get(s)!);
    }
  }
  return out;
}

function compatible(a: PipelineTask, b: PipelineTask): boolean {
  return (
    b.batchSize === undefined &&
    a.request().toString() === b.request().toString() &&
    a.maxRetries === b.maxRetries &&
    a.timeoutMs === b.timeoutMs
  );
}
