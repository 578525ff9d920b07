/**
 * An executor process: runs task calls, one at a time, for its worker. User code runs here and
 * never in the worker daemon, so a crash, a hang or `process.exit` in a task takes down only
 * this process.
 */
import {
  DplErrorCode,
  concatTables,
  decodeIpc,
  describe,
  encodeIpc,
  ensureError,
  importBundleFile,
  isDplError,
  isTable,
  type PipelineModule,
} from '@dpl/core';
import { decodeKwargs } from '@dpl/wire';
import type { ExecutorReply, NextSource, RunCall } from './protocol';

const modules = new Map<string, Promise<PipelineModule>>();

function send(reply: ExecutorReply): void {
  process.send!(reply);
}

async function run(m: RunCall): Promise<void> {
  try {
    let mod = modules.get(m.bundlePath);
    if (mod === undefined) {
      mod = importBundleFile(m.bundlePath, m.label);
      modules.set(m.bundlePath, mod);
    }
    const task = (await mod).graph.taskMap.get(m.task);
    if (task === undefined) throw new Error(`module ${m.label} has no task named ${JSON.stringify(m.task)}`);
    const slices = m.inputs.map((i) => {
      const t = decodeIpc(i.ipc);
      return i.offset === 0 && i.rows === t.numRows ? t : t.slice(i.offset, i.offset + i.rows);
    });
    const input = slices.length === 1 ? slices[0]! : concatTables(slices);
    const result: unknown = await task.fn(input, decodeKwargs(m.kwargs));
    if (!isTable(result)) throw new TypeError(`returned ${describe(result)}, not an Arrow Table; a task must return a Table`);
    send({ kind: 'done', callId: m.callId, ipc: encodeIpc(result), rows: result.numRows });
  } catch (e) {
    const err = ensureError(e);
    send({
      kind: 'failed',
      callId: m.callId,
      code: isDplError(err) ? err.code : DplErrorCode.TASK_FAILED,
      message: err.message,
      stack: err.stack ?? '',
    });
  }
}

const sources = new Map<string, Iterator<unknown> | AsyncIterator<unknown>>();

/** The next batch of the job's generator, which lives in this process for the whole job. */
async function nextSource(m: NextSource): Promise<void> {
  try {
    let it = sources.get(m.jobId);
    if (it === undefined) {
      const mod = await importBundleFile(m.bundlePath, m.label);
      if (mod.generator === undefined) throw new Error(`module ${m.label} exports no generator`);
      const iterable = mod.generator() as Iterable<unknown> | AsyncIterable<unknown>;
      it = Symbol.asyncIterator in iterable ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
      sources.set(m.jobId, it);
    }
    const r = await it.next();
    if (r.done === true) {
      send({ kind: 'source-end', jobId: m.jobId });
      return;
    }
    if (!isTable(r.value)) {
      throw new TypeError(`the generator yielded ${describe(r.value)}, not an Arrow Table; yield apache-arrow Tables`);
    }
    send({ kind: 'source-batch', jobId: m.jobId, ipc: encodeIpc(r.value), rows: r.value.numRows });
  } catch (e) {
    const err = ensureError(e);
    send({ kind: 'failed', callId: `source:${m.jobId}`, code: DplErrorCode.TASK_FAILED, message: `the generator threw: ${err.message}`, stack: err.stack ?? '' });
  }
}

process.on('message', (m: RunCall | NextSource) => {
  // Both report their own errors.
  if (m.kind === 'run') void run(m);
  else if (m.kind === 'source-next') void nextSource(m);
});
// Stop when the worker goes away (the IPC channel closes).
process.on('disconnect', () => process.exit(0));
send({ kind: 'ready' });
