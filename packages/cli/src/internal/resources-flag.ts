/**
 * Parses `--resources`: JSON (`'{"bigdb":1}'`) or `name=value` pairs (`bigdb=1,ssd=2`).
 */
import { resourceProblems, type ResourceMap } from '@dpl/core';

/**
 * @throws Error naming the flag, the rule and an example when the text is malformed or a value
 *   is not a number >= 0.
 */
export function parseResourcesFlag(text: string): ResourceMap {
  const trimmed = text.trim();
  let map: unknown;
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      map = JSON.parse(trimmed);
    } catch (e) {
      throw new Error(
        `--resources ${JSON.stringify(text)} is not valid JSON (${(e as Error).message}); write it like --resources '{"bigdb":1}' or bigdb=1,ssd=2`,
      );
    }
  } else {
    const out: Record<string, unknown> = {};
    for (const part of trimmed.split(',').filter((p) => p.trim() !== '')) {
      const at = part.indexOf('=');
      if (at <= 0) {
        throw new Error(`--resources ${JSON.stringify(text)}: ${JSON.stringify(part)} is not name=value; write it like bigdb=1,ssd=2 or '{"bigdb":1}'`);
      }
      const raw = part.slice(at + 1).trim();
      out[part.slice(0, at).trim()] = raw === '' ? NaN : Number(raw);
    }
    map = out;
  }
  const problems = resourceProblems('--resources', map);
  if (problems.length > 0) throw new Error(`${problems.join('; ')}; e.g. --resources '{"bigdb":1}'`);
  for (const reserved of ['CPU', 'GPU']) {
    if (reserved in (map as object)) {
      throw new Error(`--resources may not set ${reserved}; use --num-${reserved.toLowerCase()}s instead`);
    }
  }
  return map as ResourceMap;
}
