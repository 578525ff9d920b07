/**
 * Joins the occurrences of a repeated array flag (`-s a=1 -s b=2 …`) into one (`--set-config
 * a=1 b=2 …`) at the end of the options, before yargs sees them: yargs-parser copies the whole
 * array at each repeat, so 10,000 `-s` flags took 33 s; one flag with 10,000 values takes
 * milliseconds. The values keep their order (the last assignment to a coordinate still wins).
 */

/** A flag that takes many values: its long name and its aliases, as typed (`-s`, `--setConfig`). */
export interface ArrayFlag {
  long: string;
  aliases: readonly string[];
}

export const PIPELINE_ARRAY_FLAGS: readonly ArrayFlag[] = [
  { long: '--set-config', aliases: ['-s', '--setConfig'] },
  { long: '--set-context', aliases: ['-c', '--setContext'] },
];

/**
 * `argv` with each flag of `flags` given more than once joined into one occurrence, placed
 * before `--` (or at the end). Occurrences whose value is missing or looks like a flag are left
 * where they are, for yargs to report.
 */
export function joinRepeatedFlags(argv: readonly string[], flags: readonly ArrayFlag[] = PIPELINE_ARRAY_FLAGS): string[] {
  const end = argv.indexOf('--');
  const options = end === -1 ? argv : argv.slice(0, end);
  const rest = end === -1 ? [] : argv.slice(end);
  const names = new Map<string, ArrayFlag>();
  for (const f of flags) for (const n of [f.long, ...f.aliases]) names.set(n, f);
  const values = new Map<ArrayFlag, string[]>();
  const kept: string[] = [];
  for (let i = 0; i < options.length; i++) {
    const token = options[i]!;
    const eq = token.startsWith('-') ? token.indexOf('=') : -1;
    const flag = names.get(eq === -1 ? token : token.slice(0, eq));
    if (flag === undefined) {
      kept.push(token);
      continue;
    }
    if (eq !== -1) {
      push(values, flag, token.slice(eq + 1));
    } else if (i + 1 < options.length && !options[i + 1]!.startsWith('-')) {
      push(values, flag, options[++i]!);
    } else {
      kept.push(token);
    }
  }
  let joined = false;
  for (const [flag, v] of values) {
    // A value that looks like a flag (from `-s=-x`) would not survive the join: leave it all.
    if (v.some((x) => x.startsWith('-'))) return [...argv];
    if (v.length > 1) joined = true;
    kept.push(flag.long, ...v);
  }
  // Nothing repeated: the command line as given, so yargs' messages quote what the user typed.
  return joined ? [...kept, ...rest] : [...argv];
}

function push(values: Map<ArrayFlag, string[]>, flag: ArrayFlag, value: string): void {
  const list = values.get(flag);
  if (list === undefined) values.set(flag, [value]);
  else list.push(value);
}
