/**
 * Which tasks of a graph can never run on a machine of a given capacity.
 */
import type { PipelineGraph } from '../model/graph';
import { taskProblems } from '../model/task';
import type { ResourceSet } from '../resources';

/**
 * One problem per task whose request exceeds `capacity`, naming the resource and ending with
 * `hint` (what to do about it).
 */
export function capacityProblems(graph: PipelineGraph, capacity: ResourceSet, hint: string): string[] {
  const problems: string[] = [];
  for (const task of graph.tasks) {
    if (taskProblems(task).length > 0) continue; // already reported; request() would throw
    const request = task.request();
    const short = capacity.shortfall(request);
    if (short.length > 0) {
      const what = short.map((s) => `${s.name}>=${s.requested} (this machine has ${s.available})`).join(', ');
      problems.push(`task ${JSON.stringify(task.name)} needs ${request.toString()} but no call can ever fit: ${what}; ${hint}`);
    }
  }
  return problems;
}
