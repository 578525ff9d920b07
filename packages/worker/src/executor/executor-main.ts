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
  tapObservations,
  type Observation,
  type PipelineModule,
} from '@dpl/core';
import { decodeKwargs } from '@dpl/wire';
import { Socket } from 'node:net';
import { FrameChannel } from './channel';
import type { ExecutorReply, NextSource, RunCall } from './protocol';

const modules = new Map<string, Promise<PipelineModule>>();

// The worker talks to this process over fd 3 (a socket pair). Both report their own errors.
const socket = new Socket({ fd: 3, readable: true, writable: true });
const channel = new FrameChannel<RunCall | NextSource, ExecutorReply>(socket, (m) => {
  if (m.kind === 'run') void run(m);
  else if (m.kind === 'source-next') void nextSource(m);
});
// Stop when the worker goes away (its end of the socket closes).
socket.on('close', () => process.exit(0));
socket.on('error', () => process.exit(0));

function send(reply: ExecutorReply): void {
  channel.send(reply);
}

// What the running call records (one call at a time), sent back with its answer. A number that
// is not finite has no meaning in a total or a gauge (and JSON would turn it into 0): dropped.
let observations: Observation[] = [];
tapObservations((o) => {
  if (o.kind !== 'param' && !Number.isFinite(o.value)) return;
  if (observations.length < MAX_OBSERVATIONS_PER_CALL) observations.push(o);
});
const MAX_OBSERVATIONS_PER_CALL = 10_000;

function takeObservations(): Observation[] | undefined {
  if (observations.length === 0) return undefined;
  const out = observations;
  observations = [];
  return out;
}

async function run(m: RunCall): Promise<void> {
  observations = [];
  try {
    let mod = modules.get(m.bundlePath);
    if (mod === undefined) {
      mod = importBundleFile(m.bundlePath, m.label);
      modules.set(m.bundlePath, mod);
    }
    const task = (await mod).graph.taskMap.get(m.task);
    if (task === undefined) throw new Error(`module ${m.label} has no task named ${JSON.stringify(m.task)}`);
    let decodedRows = -1;
    const slices = m.inputs.map((i) => {
      const t = decodeIpc(i.ipc);
      decodedRows = t.numRows;
      return i.offset === 0 && i.rows === t.numRows ? t : t.slice(i.offset, i.offset + i.rows);
    });
    const input = slices.length === 1 ? slices[0]! : concatTables(slices);
    const result: unknown = await task.fn(input, decodeKwargs(m.kwargs));
    if (!isTable(result)) throw new TypeError(`returned ${describe(result)}, not an Arrow Table; a task must return a Table`);
    // A task that hands back its whole, single input (a filter that kept every row, a task run
    // for its side effects) sends back the bytes it got instead of encoding them again.
    const same = result === input && m.inputs.length === 1 && input.numRows === decodedRows;
    const ipc = same ? m.inputs[0]!.ipc : encodeIpc(result);
    send({ kind: 'done', callId: m.callId, ipc, rows: result.numRows, observations: takeObservations() });
  } catch (e) {
    const err = ensureError(e);
    send({
      kind: 'failed',
      callId: m.callId,
      code: isDplError(err) ? err.code : DplErrorCode.TASK_FAILED,
      message: err.message,
      stack: err.stack ?? '',
      observations: takeObservations(),
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

send({ kind: 'ready' });
