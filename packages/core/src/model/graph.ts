/**
 * A directed acyclic graph of {@link PipelineTask}s. Batches flow along the edges; a task with
 * several parents receives the union of their outputs, a task with several children sends each
 * of them every output.
 */
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PipelineTask, isPipelineTask } from './task';
import { describe } from '../resources';

/** An edge: batches flow from the first task to the second. */
export type PipelineEdge = readonly [PipelineTask, PipelineTask];

const GRAPH_BRAND = Symbol.for('dpl.PipelineGraph');

/** Whether `x` is a PipelineGraph (across module copies, e.g. a bundled pipeline module). */
export function isPipelineGraph(x: unknown): x is PipelineGraph {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[GRAPH_BRAND] === true;
}

/**
 * A pipeline: tasks and the edges between them.
 *
 * ```ts
 * const line = new PipelineGraph([generate, round, resid]);            // generate → round → resid
 * const diamond = new PipelineGraph([[a, b], [a, c], [b, d], [c, d]]);  // any DAG
 * ```
 */
export class PipelineGraph {
  /** The tasks, in order of first appearance. */
  readonly tasks: readonly PipelineTask[];
  /** The edges, as task-name pairs, in the order given. */
  readonly edges: readonly (readonly [string, string])[];
  /** Task name → task. */
  readonly taskMap: ReadonlyMap<string, PipelineTask>;
  private readonly succ: ReadonlyMap<string, readonly string[]>;
  private readonly pred: ReadonlyMap<string, readonly string[]>;
  private readonly rankOf: ReadonlyMap<string, number>;
  /**
   * The file whose code constructed this graph (from the call stack), when it can be told: a
   * cluster executor ships that module to the workers. Copies made by `mapTasks` keep it.
   */
  sourceFile: string | undefined;

  /**
   * @param spec a list of tasks (a straight line, each feeding the next) or a list of
   *   `[from, to]` edges (any DAG).
   * @throws TypeError when the list is empty or mixes tasks and edges, when two different
   *   tasks share a name, or when the edges form a cycle.
   */
  constructor(spec: readonly PipelineTask[] | readonly PipelineEdge[]) {
    if (!Array.isArray(spec) || spec.length === 0) {
      throw new TypeError('a PipelineGraph needs a non-empty list of tasks or of [from, to] edges');
    }
    const pairs: [PipelineTask, PipelineTask][] = [];
    const nodes: PipelineTask[] = [];
    if (spec.every((x) => isPipelineTask(x))) {
      const list = spec as readonly PipelineTask[];
      nodes.push(...list);
      for (let i = 1; i < list.length; i++) pairs.push([list[i - 1]!, list[i]!]);
    } else if (spec.every((x) => Array.isArray(x))) {
      (spec as readonly unknown[][]).forEach((edge, i) => {
        if (edge.length !== 2 || !isPipelineTask(edge[0]) || !isPipelineTask(edge[1])) {
          throw new TypeError(`edge ${i} must be a pair [PipelineTask, PipelineTask], got ${describe(edge)}`);
        }
        pairs.push([edge[0], edge[1]]);
        nodes.push(edge[0], edge[1]);
      });
    } else {
      throw new TypeError(
        'a PipelineGraph takes either a list of PipelineTasks (a straight line) or a list of ' +
          '[from, to] pairs of PipelineTasks (a DAG), not a mix',
      );
    }

    const taskMap = new Map<string, PipelineTask>();
    for (const t of nodes) {
      const seen = taskMap.get(t.name);
      if (seen === undefined) taskMap.set(t.name, t);
      else if (seen !== t) {
        throw new TypeError(
          `two different tasks are named ${JSON.stringify(t.name)}; task names must be unique ` +
            `(make a renamed copy with task.with({ name: '${t.name}2' }))`,
        );
      }
    }
    this.tasks = [...taskMap.values()];
    this.taskMap = taskMap;

    const succ = new Map<string, string[]>(this.tasks.map((t) => [t.name, []]));
    const pred = new Map<string, string[]>(this.tasks.map((t) => [t.name, []]));
    const edges: [string, string][] = [];
    const seenEdges = new Set<string>();
    for (const [a, b] of pairs) {
      const key = `${a.name}\u0000${b.name}`;
      if (seenEdges.has(key)) continue; // the same edge twice is one edge, as in networkx
      seenEdges.add(key);
      edges.push([a.name, b.name]);
      succ.get(a.name)!.push(b.name);
      pred.get(b.name)!.push(a.name);
    }
    this.edges = edges;
    this.succ = succ;
    this.pred = pred;

    const order = topologicalOrder(this.tasks.map((t) => t.name), succ, pred);
    // Rank = the longest path (in edges) from a task to any sink, by one pass over the reverse
    // topological order; sinks rank 0. The scheduler runs low ranks first (nearest the output).
    const rank = new Map<string, number>();
    for (const name of [...order].reverse()) {
      const children = succ.get(name)!;
      rank.set(name, children.length === 0 ? 0 : 1 + Math.max(...children.map((c) => rank.get(c)!)));
    }
    this.rankOf = rank;
    this.sourceFile = callerFile();
    Object.defineProperty(this, GRAPH_BRAND, { value: true, enumerable: false });
  }

  /** Tasks with no parent, in task order. They receive the generator's batches. */
  get sourceTasks(): PipelineTask[] {
    return this.tasks.filter((t) => this.pred.get(t.name)!.length === 0);
  }

  /** Tasks with no child, in task order. Their outputs are the pipeline's outputs. */
  get sinkTasks(): PipelineTask[] {
    return this.tasks.filter((t) => this.succ.get(t.name)!.length === 0);
  }

  /** Names of the tasks that `name` feeds. */
  successors(name: string): readonly string[] {
    return this.succ.get(name) ?? [];
  }

  /** Names of the tasks that feed `name`. */
  predecessors(name: string): readonly string[] {
    return this.pred.get(name) ?? [];
  }

  /**
   * Names of every task upstream of `name`, found when asked (kept for every task, they would
   * take n²/2 entries for a chain of n tasks).
   */
  ancestors(name: string): ReadonlySet<string> {
    const found = new Set<string>();
    const todo = [...this.predecessors(name)];
    while (todo.length > 0) {
      const a = todo.pop()!;
      if (found.has(a)) continue;
      found.add(a);
      todo.push(...this.predecessors(a));
    }
    return found;
  }

  /** The longest path, in edges, from `name` to any sink (sinks are 0). */
  rank(name: string): number {
    const r = this.rankOf.get(name);
    if (r === undefined) throw new TypeError(`no task named ${JSON.stringify(name)} in this graph`);
    return r;
  }

  /**
   * A graph with the same edges whose tasks are `fn(task)`; `fn` must keep each task's name.
   * Executors use it to apply configuration to private copies.
   */
  mapTasks(fn: (task: PipelineTask) => PipelineTask): PipelineGraph {
    const mapped = new Map(this.tasks.map((t) => {
      const m = fn(t);
      if (m.name !== t.name) throw new TypeError(`mapTasks must keep task names (${t.name} became ${m.name})`);
      return [t.name, m] as const;
    }));
    // Isolated tasks cannot be written as edges; a graph with edges has none (see constructor).
    const copy =
      this.edges.length === 0
        ? new PipelineGraph([...mapped.values()])
        : new PipelineGraph(this.edges.map(([a, b]) => [mapped.get(a)!, mapped.get(b)!] as const));
    copy.sourceFile = this.sourceFile;
    return copy;
  }
}

function topologicalOrder(
  names: readonly string[],
  succ: ReadonlyMap<string, readonly string[]>,
  pred: ReadonlyMap<string, readonly string[]>,
): string[] {
  const indegree = new Map(names.map((n) => [n, pred.get(n)!.length]));
  const ready = names.filter((n) => indegree.get(n) === 0);
  const order: string[] = [];
  while (ready.length > 0) {
    const n = ready.shift()!;
    order.push(n);
    for (const c of succ.get(n)!) {
      const d = indegree.get(c)! - 1;
      indegree.set(c, d);
      if (d === 0) ready.push(c);
    }
  }
  if (order.length < names.length) {
    const cycle = findCycle(names.filter((n) => indegree.get(n)! > 0), pred);
    throw new TypeError(
      `the graph has a cycle: ${cycle.join(' -> ')}; a pipeline must be acyclic (remove one of these edges)`,
    );
  }
  return order;
}

/** One cycle among `candidates` (nodes left after Kahn's algorithm), as a closed path. */
function findCycle(candidates: string[], pred: ReadonlyMap<string, readonly string[]>): string[] {
  const inSet = new Set(candidates);
  const path: string[] = [];
  const onPath = new Map<string, number>();
  let node = candidates[0]!;
  // Every node left has a parent that is also left (its in-degree never reached 0), so walking
  // backwards along parents must revisit a node; that stretch, reversed, is a cycle.
  for (;;) {
    const at = onPath.get(node);
    if (at !== undefined) return [...path.slice(at), node].reverse();
    onPath.set(node, path.length);
    path.push(node);
    node = pred.get(node)!.find((c) => inSet.has(c))!;
  }
}

const CORE_DIRS = [`${sep}packages${sep}core${sep}`, `${sep}node_modules${sep}@dpl${sep}core${sep}`];

/** The first file on the call stack outside @dpl/core (the code that built the graph). */
function callerFile(): string | undefined {
  const lines = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of lines) {
    const m = /((?:file:\/\/)?\/[^():]+\.(?:[cm]?[jt]sx?)):\d+:\d+\)?$/.exec(line.trim());
    if (m === null) continue;
    const file = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : m[1]!;
    if (CORE_DIRS.some((d) => file.includes(d))) continue;
    return file;
  }
  return undefined;
}
