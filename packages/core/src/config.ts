/**
 * Configuration by dotted coordinates (`round.kwargs.decimals`), by object, and from YAML files.
 * This is the one module that parses coordinates; its messages quote the full coordinate.
 */
import { readFileSync, statSync } from 'node:fs';
import type { parseDocument } from 'yaml';
import { ConfigError } from './errors';
import type { PipelineTaskOptions } from './model/task';
import { isPlainObject } from './model/task';
import { describe } from './resources';
import { didYouMean } from './internal/names';
import { formatBytes } from './internal/bytes';

/** Task fields that configuration may set, with the dplutils (snake_case) spellings they accept. */
const FIELD_ALIASES: Readonly<Record<string, keyof PipelineTaskOptions>> = {
  kwargs: 'kwargs',
  contextKwargs: 'contextKwargs',
  context_kwargs: 'contextKwargs',
  numCpus: 'numCpus',
  num_cpus: 'numCpus',
  numGpus: 'numGpus',
  num_gpus: 'numGpus',
  resources: 'resources',
  batchSize: 'batchSize',
  batch_size: 'batchSize',
  required: 'required',
  maxRetries: 'maxRetries',
  max_retries: 'maxRetries',
  timeoutMs: 'timeoutMs',
  timeout_ms: 'timeoutMs',
};

/** Fields whose value is an object: a deeper coordinate sets one key, an object merges keys. */
const MAP_FIELDS: ReadonlySet<keyof PipelineTaskOptions> = new Set(['kwargs', 'contextKwargs', 'resources']);

const FIELD_LIST = 'kwargs, contextKwargs, numCpus, numGpus, resources, batchSize, required, maxRetries, timeoutMs';

/** One change to one task's settings, already resolved from a coordinate or object. */
export interface ConfigChange {
  /** The coordinate it came from, for messages (`round.kwargs.decimals`). */
  readonly path: string;
  readonly task: string;
  readonly field: keyof PipelineTaskOptions;
  /** For map fields: the keys to set (merged into the existing map). Otherwise the new value. */
  readonly value: unknown;
  readonly merge: boolean;
}

/** What a YAML configuration file holds. */
export interface ConfigFile {
  context: Record<string, unknown>;
  config: Record<string, unknown>;
}

/**
 * Parses a text value from the command line as JSON, falling back to the text itself (`2` → 2,
 * `[1,2]` → [1, 2], `true` → true, `null` → null, `abc` → "abc"), as dplutils does.
 */
export function parseConfigValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * Splits `key=value` (from `-s`/`-c`) at the first `=` and parses the value with
 * {@link parseConfigValue}.
 * @throws ConfigError when there is no `=` or the key is empty.
 */
export function parseAssignment(text: string, flag: string): [string, unknown] {
  const at = text.indexOf('=');
  if (at <= 0 || text.slice(0, at).trim() === '') {
    throw new ConfigError(
      text,
      `${flag} ${JSON.stringify(text)} is not key=value; write it like ${flag} ` +
        (flag === '-c' ? 'db_path=/data/db' : 'round.kwargs.decimals=2'),
    );
  }
  return [text.slice(0, at).trim(), parseConfigValue(text.slice(at + 1))];
}

/**
 * Resolves a dotted coordinate and its value into a change. Returns the problem as a string
 * instead when the coordinate is malformed or names an unknown field (the task's existence is
 * checked by the caller, who knows the graph).
 */
export function changeFromCoordinate(path: string, value: unknown): ConfigChange | string {
  const parts = typeof path === 'string' ? path.split('.') : [];
  if (parts.length < 2 || parts.some((p) => p === '')) {
    return `config coordinate ${describe(path)} must be task.field[.key], e.g. round.kwargs.decimals or round.batchSize`;
  }
  const [task, rawField, ...rest] = parts as [string, string, ...string[]];
  // hasOwn: inherited names such as "constructor" or "toString" are not task fields.
  const field = Object.hasOwn(FIELD_ALIASES, rawField) ? FIELD_ALIASES[rawField] : undefined;
  if (field === undefined) {
    return `config coordinate ${JSON.stringify(path)}: task field ${JSON.stringify(rawField)} is unknown${didYouMean(rawField, Object.keys(FIELD_ALIASES))}; known fields: ${FIELD_LIST}`;
  }
  if (rest.length === 0) {
    return { path, task, field, value, merge: MAP_FIELDS.has(field) && isPlainObject(value) };
  }
  if (!MAP_FIELDS.has(field)) {
    return `config coordinate ${JSON.stringify(path)}: ${field} is a single value and has no key ${JSON.stringify(rest.join('.'))}`;
  }
  // round.kwargs.a.b = v sets kwargs.a to { b: v } merged over what kwargs.a already holds.
  return { path, task, field, value: nest(rest, value), merge: true };
}

function nest(keys: readonly string[], value: unknown): Record<string, unknown> {
  let out: unknown = value;
  for (let i = keys.length - 1; i >= 0; i--) out = { [keys[i]!]: out };
  return out as Record<string, unknown>;
}

/**
 * Resolves a configuration object `{ task: { field: value } }` into changes, collecting problems.
 */
export function changesFromObject(config: unknown, origin: string): { changes: ConfigChange[]; problems: string[] } {
  const changes: ConfigChange[] = [];
  const problems: string[] = [];
  if (!isPlainObject(config)) {
    problems.push(`${origin} must be an object of task name to settings, got ${describe(config)}`);
    return { changes, problems };
  }
  for (const [task, settings] of Object.entries(config)) {
    if (!isPlainObject(settings)) {
      problems.push(`${origin}: settings of task ${JSON.stringify(task)} must be an object of field to value, got ${describe(settings)}`);
      continue;
    }
    // An empty map changes nothing, but still names a task that must exist.
    if (Object.keys(settings).length === 0) changes.push({ path: task, task, field: 'kwargs', value: {}, merge: true });
    for (const [field, value] of Object.entries(settings)) {
      const change = changeFromCoordinate(`${task}.${field}`, value);
      if (typeof change === 'string') problems.push(change);
      else changes.push(change);
    }
  }
  return { changes, problems };
}

/**
 * Applies a change to task options, merging map fields one level deep (kwargs set by a deeper
 * coordinate merge their nested objects too).
 */
export function applyChange(options: PipelineTaskOptions, change: ConfigChange): PipelineTaskOptions {
  const current = options[change.field];
  if (change.merge && isPlainObject(change.value)) {
    return { ...options, [change.field]: deepMerge(isPlainObject(current) ? current : {}, change.value) };
  }
  return { ...options, [change.field]: change.value };
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** The largest config file read (4 MiB). */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

/**
 * Reads a YAML configuration file with `context:` and `config:` sections.
 * @throws ConfigError naming the file when it cannot be read, is over MAX_CONFIG_FILE_BYTES, is
 * not YAML, or has the wrong shape.
 */
export function readConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    // Settings, not data: a large file takes seconds per MiB to parse, and memory many times its size.
    const size = statSync(file).size;
    if (size > MAX_CONFIG_FILE_BYTES) {
      throw new ConfigError(
        file,
        `config file ${file} is ${formatBytes(size)}; dpl reads config files of at most ${formatBytes(MAX_CONFIG_FILE_BYTES)}: ` +
          'keep data out of it (write it to a file and pass its path, e.g. -c data_path=PATH)',
      );
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(file, `cannot read config file ${file}: ${(e as Error).message}`, { cause: e });
  }
  // Loaded here, not with the module: only a process reading a config file needs it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const doc = (require('yaml') as { parseDocument: typeof parseDocument }).parseDocument(text);
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    throw new ConfigError(file, `config file ${file} is not valid YAML: ${err.message.split('\n')[0]}`, {
      cause: err,
    });
  }
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) return { context: {}, config: {} };
  if (!isPlainObject(data)) {
    throw new ConfigError(file, `config file ${file} must hold a mapping with context: and config: sections, got ${describe(data)}`);
  }
  const unknown = Object.keys(data).filter((k) => k !== 'context' && k !== 'config');
  if (unknown.length > 0) {
    throw new ConfigError(
      file,
      `config file ${file} has unknown section${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; only context: and config: are read`,
    );
  }
  const context = data.context ?? {};
  const config = data.config ?? {};
  if (!isPlainObject(context)) {
    throw new ConfigError(file, `config file ${file}: context: must be a mapping of key to value, got ${describe(context)}`);
  }
  if (!isPlainObject(config)) {
    throw new ConfigError(file, `config file ${file}: config: must be a mapping of task name to settings, got ${describe(config)}`);
  }
  return { context, config };
}
