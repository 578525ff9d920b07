/**
 * What the CLI prints for people: tables and previews on stdout. (Logs go to stderr via pino.)
 */
import type { Table } from 'apache-arrow';

/** stdout's own write, kept for `print` while other writes to stdout go to stderr. */
const writeStdout = process.stdout.write.bind(process.stdout);

/** Writes lines to stdout. The one place the CLI prints output. */
export function print(text: string): void {
  writeStdout(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Sends what anything but `print` writes to stdout (task code run in this process, with
 * `--in-process`) to stderr, above the progress line, so stdout holds only the CLI's output;
 * returns the function that puts stdout back.
 */
export function strayStdoutToStderr(): () => void {
  const stdout = process.stdout;
  const own = Object.getOwnPropertyDescriptor(stdout, 'write');
  const toStderr = (...args: unknown[]): boolean => {
    liveLine?.clear();
    const ok = (process.stderr.write.bind(process.stderr) as (...a: unknown[]) => boolean)(...args);
    liveLine?.redraw();
    return ok;
  };
  Object.defineProperty(stdout, 'write', { value: toStderr, configurable: true, writable: true });
  return () => {
    if (own === undefined) delete (stdout as { write?: unknown }).write; // back to the prototype's
    else Object.defineProperty(stdout, 'write', own);
  };
}

/** A line redrawn in place at the bottom of the terminal (the progress), if one is shown. */
export interface LiveLine {
  /** Takes the line off the screen, the cursor at the start of its row. */
  clear(): void;
  /** Draws it again. */
  redraw(): void;
}

let liveLine: LiveLine | undefined;

/** Shows `line` under what printError prints from now on (undefined: none). */
export function setLiveLine(line: LiveLine | undefined): void {
  liveLine = line;
}

/**
 * Writes one line to stderr (errors, notices and task output for people, not logs), above the
 * progress line: never onto its end.
 */
export function printError(text: string): void {
  liveLine?.clear();
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  liveLine?.redraw();
}

/** Formats rows as an aligned text table; numbers are right-aligned. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells: (string | number)[]): string =>
    cells
      .map((c, i) => (typeof c === 'number' ? String(c).padStart(widths[i]!) : String(c).padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function cell(v: unknown): string {
  let s: string;
  if (v === null || v === undefined) s = 'null';
  else if (typeof v === 'number') s = Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  else if (typeof v === 'bigint' || typeof v === 'boolean') s = v.toString();
  else if (typeof v === 'string') s = v;
  else s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? typeof v;
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** The first `limit` rows of a table as a text table. */
export function previewTable(table: Table, limit = 5): string {
  const names = table.schema.fields.map((f) => f.name);
  const rows: string[][] = [];
  for (let i = 0; i < Math.min(limit, table.numRows); i++) {
    const row = table.get(i);
    rows.push(names.map((n) => cell(row?.[n])));
  }
  const more = table.numRows > limit ? `\n... ${table.numRows - limit} more rows` : '';
  return formatTable(names, rows) + more;
}
