/**
 * The logging interface dpl's libraries take: a subset of pino's, so a pino logger fits as is.
 * Libraries default to {@link silentLogger}; only the CLI creates a real one.
 */

/** One logging method: `log.info({ task }, 'message')` or `log.info('message')`. */
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

/** A pino-compatible logger. */
export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): Logger;
  isLevelEnabled(level: string): boolean;
}

const noop: LogFn = () => undefined;

/** A logger that drops everything. */
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
  isLevelEnabled: () => false,
};
