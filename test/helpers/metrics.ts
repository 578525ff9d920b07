/**
 * Reading the head's Prometheus text, for tests and benchmarks.
 */

/** Samples of a Prometheus text exposition: `name{a="x",b="y"}` → value. */
export function prometheusSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** `host:port` of a head's HTTP endpoints, from what `dpl head start` printed. */
export function dashboardAddress(headStdout: string): string {
  const m = /status API: https?:\/\/(\S+)\/api\/status/.exec(headStdout);
  if (m === null) throw new Error(`no "status API:" line in the head's output:\n${headStdout}`);
  return m[1]!;
}
