/**
 * The root logger of a `dpl` process: pino, JSON lines on stderr, readable lines on a terminal.
 */
import pino from 'pino';
import type PinoPretty from 'pino-pretty';
import type { Logger } from '@dpl/core';

/** Log levels the CLI accepts (any case). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Normalises a `-v` value (`INFO` → `info`).
 * @throws Error naming the accepted levels.
 */
export function parseLogLevel(value: string): LogLevel {
  const level = String(value).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new Error(`log level ${JSON.stringify(value)} is unknown; use one of ${LOG_LEVELS.join(', ')}`);
  }
  return level as LogLevel;
}

/** A pino logger on stderr at `level`, pretty when stderr is a terminal. */
export function createLogger(level: LogLevel): Logger {
  if (process.stderr.isTTY) {
    // Loaded only for a terminal (~14 ms of every start otherwise: runs in scripts and CI print JSON).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pretty = require('pino-pretty') as typeof PinoPretty;
    return pino({ level }, pretty({ destination: 2, sync: true, ignore: 'pid,hostname' }));
  }
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}
