/**
 * The worker's executor processes: one call at a time each, started on demand, reused while
 * idle, and replaced when one dies. A process that dies mid-call fails that call only.
 *
 * A process runs the calls of one pipeline module (one bundle, named by its content hash): an ES
 * module cannot be unloaded, so a process that ran another module's calls would keep that
 * module's memory and let its state (globals, patched built-ins, caches) reach the next job.
 * Jobs of the same module reuse its warm processes, module-level state included; another
 * module's calls get fresh ones.
 */
import type { ChildProcess } from 'node:child_process';
import { unlink } from 'node:fs';
import type { Socket } from 'node:net';
import { DplError, DplErrorCode, TaskError, callFailureMessage, type Logger, type Observation } from '@dpl/core';
import { FrameChannel } from './channel';
import { forkExecutor, type EarlyExecutors, type ExecutorLaunch } from './fork';
import { outputFileOf, type ExecutorReply, type ExecutorRequest, type NextSource, type Output, type RunCall, type SharedOut, type CallFacts } from './protocol';
import { GENERATOR_TASK, NO_CALL, OutputCapture, type OutputLines, type OutputSource } from './task-output';

/** The output: its bytes, a file in the worker's shared memory that the caller now owns, or a view of stored objects. */
export type ExecutorResult = Output & {
  rows: number;
  /** What the task recorded with observe/increment/param/timer. */
  observations?: Observation[];
  /** How long the call ran in its executor, in microseconds (decoding and encoding included). */
  runUs?: number;
  /** A fused call: the rows out of each task of its chain that ran. */
  stageRows?: number[];
};

interface Busy {
  call: RunCall;
  resolve: (r: ExecutorResult) => void;
  reject: (e: Error) => void;
  attempt: number;
  timeoutMs: number;
  timer: NodeJS.Timeout | undefined;
  /** Set when the call outlived its timeout and the process was killed for it. */
  timedOutMs?: number;
}

interface Executor {
  /** Its process, channel and readiness. */
  proc: Started;
  alive: boolean;
  /** CUDA_VISIBLE_DEVICES it was started with ('' = none). */
  gpus: string;
  /**
   * The calls sent to it and not answered yet, in the order it runs them: the first one is
   * running, the others wait in the process (the calls of one lease, sent ahead so that the
   * process goes from one to the next without waiting for the worker).
   */
  busy: Busy[];
  /** The lease whose calls it runs while busy. */
  lease: string | undefined;
  /** The bundle its calls are of since its first call (undefined: none yet); it runs no other. */
  module: string | undefined;
  /**
   * The task of the last call it was given: an idle process that ran a task takes that task's
   * next lease before another of the module's (its compiled code and type feedback are that
   * task's: on the README pipeline, whose three tasks share two executors, 0.93× the
   * executors' CPU, own time within noise; design record 0001, round 13).
   */
  task: string | undefined;
  /** When it last finished a call (ms since the epoch). */
  idleSince: number;
  /** The call it ran last (what it prints between calls is that call's). */
  last: OutputSource | undefined;
}

/**
 * An executor process and where its messages, output and exit go: an idle executor can become
 * a job's generator process by changing its role.
 */
interface Started {
  child: ChildProcess;
  channel: Channel;
  ready: Promise<void>;
  /** Whether `ready` has resolved. */
  isReady: boolean;
  role: Role;
  /** The number in the name of the last output file it announced (`<pid>-<n>.arrow`; 0: none). */
  lastFile: number;
  /** The task facts sent to it, by the number its calls name them with, oldest first. */
  facts: Map<CallFacts, number>;
}

interface Role {
  reply(m: ExecutorReply): void;
  exit(code: number | null, signal: NodeJS.Signals | null): void;
  /** Whose output what it prints now is (the running call's, the generator's). */
  current(): OutputSource | undefined;
  error(e: Error): void;
}

type Channel = FrameChannel<ExecutorReply, ExecutorRequest>;

/** Task facts a process keeps at most; past it, the oldest are forgotten (and sent again if needed). */
const FACTS_PER_PROCESS = 64;

/** How long an idle executor has to exit by itself once its pool stops. */
const STOP_GRACE_MS = 5_000;

/** Idle executors older than this are stopped. */
const EXECUTOR_IDLE_TIMEOUT_MS = 60_000;

/** A job's generator, in an executor process of its own for the whole job. */
interface SourceProcess {
  proc: Started;
  alive: boolean;
  /** Pulls sent to it and not answered yet, in order (it answers them in the order they came). */
  pending: { resolve: (r: ExecutorResult | undefined) => void; reject: (e: Error) => void }[];
}

export interface ExecutorPoolOptions {
  /**
   * Idle processes kept for reuse at most. Starting one costs far more than a call (a fork and
   * loading arrow), so idle ones are kept until EXECUTOR_IDLE_TIMEOUT_MS, not stopped at once.
   */
  maxIdle: number;
  /** How executors start (heap limit, Node flags); Node's defaults when not given. */
  launch?: ExecutorLaunch;
  /** What tasks print, in lines tagged with their call. */
  onOutput?: (output: OutputLines[]) => void;
  /**
   * An executor process is gone and every message it sent has been read: output files of its
   * numbered past `lastFile` (`<pid>-<n>.arrow`, n > lastFile) were never announced (a call
   * killed while writing one) and belong to nobody.
   */
  onGone?: (pid: number, lastFile: number) => void;
}

export class ExecutorPool {
  private readonly executors = new Set<Executor>();
  private readonly sources = new Map<string, SourceProcess>();
  private stopped = false;
  private readonly maxIdle: number;
  private readonly launch: ExecutorLaunch;
  private readonly onOutput: (output: OutputLines[]) => void;
  private readonly onGone: (pid: number, lastFile: number) => void;

  private readonly reaper: NodeJS.Timeout;
  /** Numbers task facts are sent under (unique in this pool). */
  private factsSeq = 0;

  constructor(
    private readonly log: Logger,
    options: ExecutorPoolOptions,
  ) {
    this.maxIdle = options.maxIdle;
    this.launch = options.launch ?? { memoryMb: undefined, nodeFlags: [], scheduling: 'batch' };
    this.onOutput = options.onOutput ?? (() => undefined);
    this.onGone = options.onGone ?? (() => undefined);
    this.reaper = setInterval(() => this.reapIdle(), EXECUTOR_IDLE_TIMEOUT_MS / 4);
    this.reaper.unref();
  }

  /**
   * Runs a call in an idle executor (or a new one) with the given GPUs visible. A call running
   * longer than `timeoutMs` (0: no limit) has its process killed and fails. Calls of the same
   * `lease` go to the executor already running that lease's calls and wait there in order; a
   * call that waited in a process that died before it started runs again elsewhere.
   */
  run(call: RunCall, attempt: number, gpus: string, timeoutMs = 0, lease?: string): Promise<ExecutorResult> {
    if (this.stopped) return Promise.reject(new TaskError(call.facts.task, call.callId, attempt, 'the worker is stopping'));
    const module = call.facts.bundlePath;
    const target = this.executorFor(lease, gpus, module, call.facts.task) ?? this.spawn(gpus);
    target.lease = lease;
    target.module = module;
    target.task = call.facts.task;
    const result = new Promise<ExecutorResult>((resolve, reject) => {
      target.busy.push({ call, resolve, reject, attempt, timeoutMs, timer: undefined });
    });
    // A started process takes the call now (no turn of the event loop in between); a new one once ready.
    if (target.proc.isReady) this.dispatch(target, call);
    else void target.proc.ready.then(() => this.dispatch(target, call));
    return result;
  }

  /** Sends a call queued on `target` into its process, once that process is ready. */
  private dispatch(target: Executor, call: RunCall): void {
    const busy = target.busy.find((b) => b.call === call);
    // Not there: its process died while the call waited to be sent, and the call went to another.
    if (busy === undefined) return;
    if (!target.alive) {
      target.busy.splice(target.busy.indexOf(busy), 1);
      busy.reject(new TaskError(call.facts.task, call.callId, busy.attempt, `task ${JSON.stringify(call.facts.task)}: its executor process could not start`));
      this.trimIdle();
      return;
    }
    this.send(target.proc, call);
    if (target.busy[0] === busy) this.startTimer(target, busy);
  }

  /** A call into a process: its task's facts first, if that process has not had them. */
  private send(proc: Started, call: RunCall): void {
    let id = proc.facts.get(call.facts);
    if (id === undefined) {
      id = ++this.factsSeq;
      if (proc.facts.size >= FACTS_PER_PROCESS) {
        const [oldest, oldId] = proc.facts.entries().next().value!;
        proc.facts.delete(oldest);
        proc.channel.send({ kind: 'forget', ids: [oldId] });
      }
      proc.facts.set(call.facts, id);
      proc.channel.send({ kind: 'facts', id, ...call.facts });
    }
    proc.channel.send({ kind: 'run', facts: id, callId: call.callId, inputs: call.inputs, inputIds: call.inputIds });
  }

  /**
   * Starts `n` executors without GPUs ahead of the first calls (Ray prestarts its workers too):
   * starting one takes a fork and loading arrow, which the first calls would otherwise wait for.
   * Unused ones go like any idle executor. Those of `early` that were started the same way are
   * taken first.
   */
  prestart(n: number, early?: EarlyExecutors): void {
    const taken = early?.take(this.launch, n) ?? [];
    for (const child of taken) this.spawn('', child);
    for (let i = taken.length; i < n && !this.stopped; i++) this.spawn('');
  }

  /**
   * The executor already running `lease`'s calls, else an idle one with these GPUs that has
   * `module` loaded (the one that last ran `task` first), else an idle one that has run nothing
   * yet; undefined: start one.
   */
  private executorFor(lease: string | undefined, gpus: string, module: string, task: string): Executor | undefined {
    let warm: Executor | undefined;
    let same: Executor | undefined;
    let fresh: Executor | undefined;
    for (const e of this.executors) {
      if (e.gpus !== gpus) continue;
      if (lease !== undefined && e.lease === lease && e.alive) return e;
      if (e.busy.length !== 0) continue;
      if (e.module === module) {
        warm ??= e;
        if (e.task === task) same ??= e;
      } else if (e.module === undefined) fresh ??= e;
    }
    return same ?? warm ?? fresh;
  }

  /** Arms the timeout of the call that now runs in `ex`. */
  private startTimer(ex: Executor, busy: Busy): void {
    if (busy.timeoutMs <= 0 || busy.timer !== undefined) return;
    busy.timer = setTimeout(() => {
      if (ex.busy[0] !== busy) return;
      busy.timedOutMs = busy.timeoutMs;
      ex.proc.child.kill('SIGKILL');
    }, busy.timeoutMs);
  }

  /**
   * The next batch of a job's generator (started on first use), or undefined once it is
   * exhausted.
   * @throws DplError(TASK_FAILED) when the generator throws, yields a non-Table or its process dies.
   */
  async nextSource(jobId: string, bundlePath: string, label: string, shared?: SharedOut): Promise<ExecutorResult | undefined> {
    let src = this.sources.get(jobId);
    if (src === undefined) {
      // An idle executor that has run nothing or only this module's calls becomes the
      // generator's process (no wait for a new one to start), and a new executor takes its
      // place; else a new process.
      const idle = this.stopped ? undefined : this.idleExecutor('', bundlePath);
      let proc: Started;
      if (idle !== undefined) {
        this.executors.delete(idle);
        proc = idle.proc;
        this.spawn('');
      } else proc = this.started(forkExecutor('', this.launch));
      src = this.generatorProcess(jobId, proc);
    }
    await src.proc.ready;
    if (!src.alive) throw new DplError(DplErrorCode.TASK_FAILED, "the generator's process could not start");
    const current = src;
    const result = new Promise<ExecutorResult | undefined>((resolve, reject) => current.pending.push({ resolve, reject }));
    const msg: NextSource = { kind: 'source-next', jobId, bundlePath, label, shared };
    current.proc.channel.send(msg);
    return result;
  }

  /** `proc` as the process of a job's generator, for the whole job. */
  private generatorProcess(jobId: string, proc: Started): SourceProcess {
    const created: SourceProcess = { proc, alive: proc.child.exitCode === null, pending: [] };
    this.sources.set(jobId, created);
    const source: OutputSource = { jobId, task: GENERATOR_TASK, callId: `source:${jobId}` };
    proc.role = {
      current: () => source,
      error: (e) => this.log.warn({ err: e.message, jobId }, 'generator process error'),
      reply: (m) => {
        if (m.kind === 'output') return this.onOutput(m.output);
        const p = created.pending.shift();
        if (p === undefined) return dropFile(m);
        if (m.kind === 'source-batch') p.resolve(payload(m, m.rows));
        else if (m.kind === 'source-end') p.resolve(undefined);
        else if (m.kind === 'failed') p.reject(new DplError(DplErrorCode.TASK_FAILED, m.message, { details: { stack: m.stack } }));
      },
      exit: (code, signal) => {
        created.alive = false;
        if (this.sources.get(jobId) === created) this.sources.delete(jobId);
        const why = new DplError(
          DplErrorCode.TASK_FAILED,
          `the generator's process ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`,
        );
        for (const p of created.pending.splice(0)) p.reject(why);
      },
    };
    return created;
  }

  /** An idle executor with these GPUs, not holding a lease, that has run no module but `module`. */
  private idleExecutor(gpus: string, module: string): Executor | undefined {
    for (const e of this.executors) {
      if (e.gpus === gpus && e.alive && e.busy.length === 0 && e.lease === undefined && (e.module === undefined || e.module === module)) return e;
    }
    return undefined;
  }

  /**
   * Wires a new process: its messages, output and exit go to its `role` (a role that does
   * nothing until one is given); 'ready' resolves `ready`, as does its exit.
   */
  private started(child: ChildProcess): Started {
    let resolveReady: () => void = () => undefined;
    const markReady = (): void => {
      proc.isReady = true;
      resolveReady();
    };
    const proc: Started = {
      child,
      channel: undefined as unknown as Channel,
      ready: new Promise((r) => (resolveReady = r)),
      isReady: false,
      role: { reply: () => undefined, exit: () => undefined, current: () => undefined, error: () => undefined },
      lastFile: 0,
      facts: new Map(),
    };
    const socket = child.stdio[3] as Socket;
    proc.channel = new FrameChannel(socket, (m) => {
      if (m.kind === 'ready') return markReady();
      if ('file' in m) proc.lastFile = Math.max(proc.lastFile, outputFileOf(m.file)?.n ?? 0);
      proc.role.reply(m);
    });
    // Gone: exited, and its socket read to the end (no announcement of a file is still on its way).
    let exited = false;
    let drained = false;
    const gone = (): void => {
      if (exited && drained && child.pid !== undefined) this.onGone(child.pid, proc.lastFile);
    };
    socket.on('close', () => {
      drained = true;
      gone();
    });
    // What reaches the process's stdout and stderr without going through its console (native
    // code, Node's own messages such as running out of heap) is its current call's.
    forwardOutput(child, () => proc.role.current(), this.onOutput);
    child.on('error', (e) => proc.role.error(e));
    child.on('exit', (code, signal) => {
      markReady();
      proc.role.exit(code, signal);
      exited = true;
      gone();
    });
    return proc;
  }

  /** Stops a job's generator process, if it has one. */
  closeSource(jobId: string): void {
    const src = this.sources.get(jobId);
    if (src === undefined) return;
    this.sources.delete(jobId);
    src.proc.child.kill();
  }

  /**
   * Stops every executor: a busy one is killed (its call may never return); an idle one sees its
   * socket close and exits by itself, so that Node's exit work runs there (`--cpu-prof` in
   * DPL_EXECUTOR_NODE_OPTIONS writes its profile).
   */
  stop(): void {
    this.stopped = true;
    clearInterval(this.reaper);
    for (const ex of this.executors) {
      if (ex.busy.length === 0 && ex.alive) {
        ex.proc.channel.close();
        // One that does not go (something of a task's still running there) is killed after all.
        setTimeout(() => ex.proc.child.kill('SIGKILL'), STOP_GRACE_MS).unref();
      } else ex.proc.child.kill('SIGKILL');
    }
    this.executors.clear();
    for (const src of this.sources.values()) src.proc.child.kill('SIGKILL');
    this.sources.clear();
  }

  /** A new executor, or `child` (started without GPUs before this pool existed) as one. */
  private spawn(gpus: string, child = forkExecutor(gpus, this.launch)): Executor {
    const proc = this.started(child);
    const ex: Executor = {
      proc,
      alive: true,
      gpus,
      busy: [],
      lease: undefined,
      module: undefined,
      task: undefined,
      idleSince: Date.now(),
      last: undefined,
    };
    this.executors.add(ex);
    proc.role = {
      current: () => {
        const c = ex.busy[0]?.call;
        if (c !== undefined) ex.last = { jobId: c.facts.jobId, task: c.facts.task, callId: c.callId };
        return ex.last;
      },
      error: (e) => this.log.warn({ err: e.message }, 'executor process error'),
      reply: (m) => this.answered(ex, m),
      exit: (code, signal) => this.died(ex, code, signal),
    };
    return ex;
  }

  /** An executor's message about its calls. */
  private answered(ex: Executor, m: ExecutorReply): void {
    if (m.kind === 'output') return this.onOutput(m.output);
    if (m.kind !== 'done' && m.kind !== 'failed') return;
    const busy = ex.busy[0];
    if (busy === undefined || busy.call.callId !== m.callId) return dropFile(m);
    ex.busy.shift();
    clearTimeout(busy.timer);
    const next = ex.busy[0];
    if (next !== undefined) this.startTimer(ex, next);
    else {
      ex.lease = undefined;
      ex.idleSince = Date.now();
      this.trimIdle();
    }
    if (m.kind === 'done') busy.resolve(payload(m, m.rows, m));
    else busy.reject(callFailed(busy, m.message, { remoteStack: m.stack, details: { code: m.code, observations: m.observations }, retryable: m.retryable }, m.task));
  }

  /** An executor's process exited: the calls in it fail, or run again. */
  private died(ex: Executor, code: number | null, signal: NodeJS.Signals | null): void {
    ex.alive = false;
    this.executors.delete(ex);
    const unanswered = ex.busy;
    ex.busy = [];
    ex.lease = undefined;
    for (const b of unanswered) clearTimeout(b.timer);
    const busy = unanswered[0];
    if (busy === undefined) return;
    if (unanswered.length > 1) {
      // Several calls were in the process: the one that brought it down is not known (the
      // answers of the last ones it finished may not have been written). They run again one
      // at a time, each alone in its process, where a call that kills its process fails by
      // itself (one at a time: a burst of new processes could take the machine's memory).
      this.log.warn({ calls: unanswered.length, code, signal }, 'executor process died with several calls in it; running them again one at a time');
      void (async () => {
        for (const w of unanswered) await this.run(w.call, w.attempt, ex.gpus, w.timeoutMs).then(w.resolve, w.reject);
      })(); // each call's promise carries its own outcome
      return;
    }
    let why: string;
    if (busy.timedOutMs !== undefined) {
      why = `it ran longer than its timeoutMs of ${busy.timedOutMs} ms and its executor process was killed`;
    } else {
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      this.log.warn({ task: busy.call.facts.task, batchId: busy.call.callId, code, signal }, 'executor process died during a task');
      why = `its executor process ${how} (a crash, process.exit() or running out of memory in the task)`;
    }
    busy.reject(callFailed(busy, why, { details: { code: DplErrorCode.TASK_FAILED } }));
  }

  /** Stops the idle executors beyond maxIdle (the longest idle first). */
  private trimIdle(): void {
    let idle = 0;
    for (const e of this.executors) if (e.busy.length === 0) idle++;
    if (idle <= this.maxIdle) return; // the common case, without sorting
    const longest = [...this.executors].filter((e) => e.busy.length === 0).sort((a, b) => b.idleSince - a.idleSince);
    for (const ex of longest.slice(this.maxIdle)) this.retire(ex);
  }

  /** Stops executors idle for longer than EXECUTOR_IDLE_TIMEOUT_MS. */
  private reapIdle(): void {
    const now = Date.now();
    for (const ex of this.executors) {
      if (ex.busy.length === 0 && now - ex.idleSince > EXECUTOR_IDLE_TIMEOUT_MS) this.retire(ex);
    }
  }

  private retire(ex: Executor): void {
    this.executors.delete(ex);
    ex.proc.child.kill();
  }
}

/**
 * A reply's output (and a call's figures), without the reply's other fields: one object per
 * answer, built in one go (not spread into another).
 */
function payload(m: Output, rows: number, done?: Pick<ExecutorResult, 'observations' | 'runUs' | 'stageRows'>): ExecutorResult {
  const observations = done?.observations;
  const runUs = done?.runUs;
  const stageRows = done?.stageRows;
  if ('view' in m) return { view: m.view, bytes: m.bytes, rows, observations, runUs, stageRows };
  return 'file' in m ? { file: m.file, bytes: m.bytes, rows, observations, runUs, stageRows } : { ipc: m.ipc, rows, observations, runUs, stageRows };
}

/** An output nobody will read (its call was given up, its generator ended): its file, if it has one, is removed. */
export function dropFile(m: ExecutorReply | Output): void {
  if ('file' in m) unlink(m.file, () => undefined);
}

/** The error of a failed call, worded by the run policy: `task "t" failed on batch t#0 (…): <why>`. */
function callFailed(busy: { call: RunCall; attempt: number }, why: string, options: ConstructorParameters<typeof TaskError>[4], task?: string): TaskError {
  const { call, attempt } = busy;
  const { facts } = call;
  const who = task ?? facts.task;
  // In a fused call, say so: the tasks before the one that failed run again with it.
  const chain = facts.before === undefined ? '' : ` (tasks ${[...facts.before.map((b) => b.task), facts.task].join(' → ')} ran fused in one call)`;
  return new TaskError(who, call.callId, attempt, callFailureMessage(who, call.callId, call.inputIds, attempt, facts.maxAttempts, why) + chain, options);
}

/** Forwards what a process writes to its stdout and stderr as lines of `current()`'s call. */
function forwardOutput(child: ChildProcess, current: () => OutputSource | undefined, onOutput: (output: OutputLines[]) => void): void {
  let scheduled = false;
  const send = (): void => {
    scheduled = false;
    const output = capture.take();
    if (output !== undefined) onOutput(output);
  };
  const capture = new OutputCapture(() => {
    if (!scheduled) setImmediate(send);
    scheduled = true;
  });
  for (const [stream, stderr] of [
    [child.stdout, false],
    [child.stderr, true],
  ] as const) {
    if (stream === null) continue;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      capture.setSource(current() ?? NO_CALL);
      capture.write(stderr, chunk);
    });
    // The last words of a process that died (a fatal error) come without a newline, maybe.
    stream.on('end', send);
  }
}
