/**
 * An executor process: runs task calls, one at a time, for its worker. User code runs here and
 * never in the worker daemon, so a crash, a hang or `process.exit` in a task takes down only
 * this process.
 */
import {
  DplErrorCode,
  compactTable,
  concatTables,
  decodeIpc,
  describe,
  encodeIpc,
  ensureError,
  importBundleFile,
  ipcStreamParts,
  joinIpcParts,
  isDplError,
  isTable,
  notATable,
  ownTable,
  tableRows,
  tapObservations,
  type Observation,
  type PipelineModule,
} from '@dpl/core';
import type { Table } from 'apache-arrow';
// Only the kwargs codec: the package's index loads gRPC, which an executor never uses.
import { decodeKwargs } from '@dpl/wire/kwargs';
import { linkSync, readFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { FrameChannel } from './channel';
import { writeAllSync } from './write-all';
import { GENERATOR_TASK, OutputCapture } from './task-output';
import { outputView } from './output-view';
import { outputFileName, type CallMessage, type ExecutorReply, type ExecutorRequest, type FactsMessage, type NextSource, type Output, type Payload, type SharedOut } from './protocol';

// Stack traces of pipeline modules point at the user's source (the bundles carry source maps).
// Enabled here, after dpl's own modules and arrow loaded: reading their maps took ~15 ms of
// every executor's start.
process.setSourceMapsEnabled(true);

// The pipeline module this process runs, by bundle path: the pool sends a process one module's
// calls only (see ExecutorPool), so this holds one.
const modules = new Map<string, Promise<PipelineModule>>();

// The worker talks to this process over fd 3 (a socket pair). Both report their own errors.
const socket = new Socket({ fd: 3, readable: true, writable: true });
const channel = new FrameChannel<ExecutorRequest, ExecutorReply>(socket, (m) => {
  if (m.kind === 'run') enqueue(m);
  else if (m.kind === 'facts') facts.set(m.id, { ...m, decoded: [] });
  else if (m.kind === 'forget') for (const id of m.ids) facts.delete(id);
  else if (m.kind === 'source-next') pullInTurn(m);
});

/** A task's facts as the worker sent them, with its kwargs decoded on first use (the fused tasks' first, its own last). */
type KnownFacts = FactsMessage & { decoded: Record<string, unknown>[] };
const facts = new Map<number, KnownFacts>();

/** A call with its task's facts (undefined: none under its number, a bug, answered as one in the call's turn). */
interface Call {
  m: CallMessage;
  f: KnownFacts | undefined;
}

// Calls run one at a time, in the order they came (what they record is per call, and the
// worker counts one slot of resources per executor).
const inbox: Call[] = [];
let draining = false;
function enqueue(m: CallMessage): void {
  inbox.push({ m, f: facts.get(m.facts) });
  if (!draining) void drain(); // each call reports its own outcome
}
async function drain(): Promise<void> {
  draining = true;
  let since = performance.now();
  for (let m = inbox.shift(); m !== undefined; m = inbox.shift()) {
    await run(m);
    // Answers leave at the end of a turn of the event loop (the channel gathers them): after a
    // millisecond of calls, let the turn end so they do not wait behind a long queue.
    if (performance.now() - since > YIELD_AFTER_MS) {
      await new Promise((r) => setImmediate(r));
      since = performance.now();
    }
  }
  draining = false;
}
const YIELD_AFTER_MS = 1;

/** The kwargs of step `i` of a task's chain (decoded once per task's facts). */
function kwargsOf(f: KnownFacts, i: number, bytes: Uint8Array): Record<string, unknown> {
  const kwargs = (f.decoded[i] ??= decodeKwargs(bytes));
  // A copy per call: a task that changes its kwargs object must not change the next call's.
  return { ...kwargs };
}
// Stop when the worker goes away (its end of the socket closes).
socket.on('close', () => process.exit(0));
socket.on('error', () => process.exit(0));

function send(reply: ExecutorReply): void {
  channel.send(reply);
}

// What tasks print goes to the worker as lines tagged with their call (the worker forwards them
// to the job's client), not to this process's stdout and stderr: sent at the end of the call,
// before its answer, and every OUTPUT_FLUSH_MS while a call that prints runs.
const capture = new OutputCapture(() => setTimeout(sendOutput, OUTPUT_FLUSH_MS).unref());
const OUTPUT_FLUSH_MS = 100;
function sendOutput(): void {
  const output = capture.take();
  if (output !== undefined) send({ kind: 'output', output });
}
for (const [stream, stderr] of [
  [process.stdout, false],
  [process.stderr, true],
] as const) {
  stream.write = ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((e?: Error | null) => void), cb?: (e?: Error | null) => void): boolean => {
    capture.write(stderr, chunk, typeof encoding === 'string' ? encoding : undefined);
    const done = typeof encoding === 'function' ? encoding : cb;
    if (done !== undefined) process.nextTick(done);
    return true;
  });
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

/** An input's bytes: in the message, or read from its file in the worker's shared memory. */
function bytesOf(p: Payload): Uint8Array {
  if ('ipc' in p) return p.ipc;
  const buf = readFileSync(p.file);
  // Arrow reads in place only at 8-byte aligned offsets (a large read gets a buffer of its own).
  return buf.byteOffset % 8 === 0 ? buf : new Uint8Array(buf);
}

/**
 * Each input's bytes and the whole table they decode to; a file that several inputs name (the
 * parts of a view of one object) is read and decoded once.
 */
function readInputs(inputs: CallMessage['inputs']): { bytes: Uint8Array; table: Table }[] {
  const read = (p: Payload): { bytes: Uint8Array; table: Table } => {
    const bytes = bytesOf(p);
    return { bytes, table: decodeIpc(bytes) };
  };
  if (inputs.length === 1) return [read(inputs[0]!)];
  const byFile = new Map<string, { bytes: Uint8Array; table: Table }>();
  return inputs.map((p) => {
    if (!('file' in p)) return read(p);
    let r = byFile.get(p.file);
    if (r === undefined) byFile.set(p.file, (r = read(p)));
    return r;
  });
}

let outSeq = 0;
/** A new file name in the shared folder, unique to this process. */
const outFile = (shared: SharedOut): string => join(shared.dir, outputFileName(process.pid, ++outSeq));

/**
 * A task's output as a reply carries it. A large one is written to its file straight from its
 * column buffers (a vectored write: no encoded copy in this process's memory).
 */
function outputOf(table: Table, shared: SharedOut | undefined): Payload {
  const pieces = shared === undefined ? undefined : ipcStreamParts(table);
  if (pieces === undefined) return payloadOf(encodeIpc(table), shared);
  return toFile(pieces.parts, pieces.byteLength, shared) ?? { ipc: joinIpcParts(pieces) };
}

/** Encoded bytes as a reply carries them: large ones as a file in shared memory. */
function payloadOf(ipc: Uint8Array, shared: SharedOut | undefined): Payload {
  return toFile([ipc], ipc.byteLength, shared) ?? { ipc };
}

/**
 * `bytes` bytes written as a new file in the shared folder when they are over its threshold;
 * undefined when they go in the reply instead: small, no shared folder, or the file cannot be
 * written (a full tmpfs: a container's /dev/shm is often 64 MiB).
 */
function toFile(parts: Uint8Array[], bytes: number, shared: SharedOut | undefined): Payload | undefined {
  if (shared === undefined || bytes <= shared.overBytes) return undefined;
  const file = outFile(shared);
  try {
    writeAllSync(file, parts);
    return { file, bytes };
  } catch {
    rmSync(file, { force: true });
    return undefined;
  }
}

/** A second name for an input's file, as the output of a task that returned its input. */
function linked(input: string, bytes: number, shared: SharedOut): Payload | undefined {
  const file = outFile(shared);
  try {
    linkSync(input, file);
    return { file, bytes };
  } catch {
    return undefined; // no hard links there: written again
  }
}

/**
 * The output as a view of the call's stored inputs when it is rows of them unchanged
 * (output-view.ts); its size is what those rows take in the inputs' bytes.
 */
function viewOf(result: Table, input: Table, m: CallMessage, read: readonly { bytes: Uint8Array; table: Table }[]): Output | undefined {
  const parts = outputView(
    result,
    input,
    m.inputs.map((i, k) => ({ table: i.objectId === undefined ? undefined : read[k]!.table, offset: i.offset, rows: i.rows })),
  );
  if (parts === undefined) return undefined;
  let bytes = 0;
  for (const p of parts) bytes += Math.ceil((read[p.input]!.bytes.byteLength * p.rows) / Math.max(1, read[p.input]!.table.numRows));
  return { view: parts.map((p) => ({ objectId: m.inputs[p.input]!.objectId!, offset: p.offset, rows: p.rows })), bytes };
}

const NOTHING_BEFORE: NonNullable<FactsMessage['before']> = [];

async function run({ m, f }: Call): Promise<void> {
  if (f === undefined) {
    // The worker sends a task's facts before its first call here: answered in order, as a bug.
    send({ kind: 'failed', callId: m.callId, code: DplErrorCode.INTERNAL, retryable: true, message: `executor ${process.pid} has no task facts numbered ${m.facts}; this is a dpl bug, please report it`, stack: '' });
    return;
  }
  observations = [];
  capture.setSource({ jobId: f.jobId, task: f.task, callId: m.callId });
  const started = performance.now();
  /** The task of the chain running now (a fused call runs several). */
  let running = f.task;
  try {
    let mod = modules.get(f.bundlePath);
    if (mod === undefined) {
      mod = importBundleFile(f.bundlePath, f.label);
      modules.set(f.bundlePath, mod);
    }
    const { taskMap } = (await mod).graph;
    const before = f.before ?? NOTHING_BEFORE;
    const read = readInputs(m.inputs);
    const slices = m.inputs.map((i, k) => tableRows(read[k]!.table, i.offset, i.rows));
    // Many small inputs (a batchSize of one-row batches) become one record batch: arrow's cost
    // is per batch at every boundary the task's output crosses after this.
    const input = slices.length === 1 ? slices[0]! : compactTable(concatTables(slices));
    // A fused call: each task on the one before's output; an empty output ends the chain (the
    // scheduler would not have called the next task on it).
    let result: Table = input;
    const stageRows: number[] | undefined = before.length > 0 ? [] : undefined;
    for (let i = 0; i <= before.length; i++) {
      const step = i < before.length ? before[i]! : f; // the call's own task last
      running = step.task;
      capture.setTask(step.task);
      const task = taskMap.get(step.task);
      if (task === undefined) throw new Error(`module ${f.label} has no task named ${JSON.stringify(step.task)}`);
      const out: unknown = await task.fn(result, kwargsOf(f, i, step.kwargs));
      if (!isTable(out)) throw notATable(out);
      result = ownTable(out);
      stageRows?.push(out.numRows);
      if (out.numRows === 0) break;
    }
    // A task that hands back its whole, single input (a filter that kept every row, a task run
    // for its side effects) sends back the bytes it got instead of encoding them again.
    const same = result === input && m.inputs.length === 1 && input.numRows === read[0]!.table.numRows;
    const first = m.inputs[0]!;
    // The same bytes: under a new name (a second link to the input's file, no copy) when they are a file.
    let out: Output | undefined = same && 'file' in first && f.shared !== undefined ? linked(first.file, first.bytes, f.shared) : undefined;
    // Rows of the inputs as they are (a slice, a pass-through of several): named, not written.
    if (out === undefined && f.views === true) out = viewOf(result, input, m, read);
    out ??= same ? payloadOf(read[0]!.bytes, f.shared) : outputOf(result, f.shared);
    const runUs = Math.round((performance.now() - started) * 1000);
    sendOutput();
    send({ kind: 'done', callId: m.callId, ...out, rows: result.numRows, observations: takeObservations(), runUs, stageRows });
  } catch (e) {
    const err = ensureError(e);
    sendOutput();
    send({
      kind: 'failed',
      callId: m.callId,
      code: isDplError(err) ? err.code : DplErrorCode.TASK_FAILED,
      // A module that cannot load, a task that returns no Table: no retry would help.
      retryable: isDplError(err) ? err.retryable : true,
      message: err.message,
      stack: err.stack ?? '',
      observations: takeObservations(),
      task: running === f.task ? undefined : running,
    });
  }
}

const sources = new Map<string, Iterator<unknown> | AsyncIterator<unknown>>();

/** Pulls of a job's generator, one after another in the order they came (the worker sends a few ahead). */
const pullTurns = new Map<string, Promise<void>>();
function pullInTurn(m: NextSource): void {
  const turn = (pullTurns.get(m.jobId) ?? Promise.resolve()).then(() => nextSource(m)); // each reports its own outcome
  pullTurns.set(m.jobId, turn);
  void turn.then(() => {
    if (pullTurns.get(m.jobId) === turn) pullTurns.delete(m.jobId);
  });
}

/** The next batch of the job's generator, which lives in this process for the whole job. */
async function nextSource(m: NextSource): Promise<void> {
  capture.setSource({ jobId: m.jobId, task: GENERATOR_TASK, callId: `source:${m.jobId}` });
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
    sendOutput();
    if (r.done === true) {
      send({ kind: 'source-end', jobId: m.jobId });
      return;
    }
    if (!isTable(r.value)) {
      throw new TypeError(`the generator yielded ${describe(r.value)}, not an Arrow Table; yield apache-arrow Tables`);
    }
    send({ kind: 'source-batch', jobId: m.jobId, ...outputOf(ownTable(r.value), m.shared), rows: r.value.numRows });
  } catch (e) {
    const err = ensureError(e);
    sendOutput();
    send({ kind: 'failed', callId: `source:${m.jobId}`, code: DplErrorCode.TASK_FAILED, message: `the generator threw: ${err.message}`, stack: err.stack ?? '' });
  }
}

send({ kind: 'ready' });
