/**
 * dpl's version, from @dpl/core's package.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The version every dpl process reports (head status, worker registration, `dpl --version`). */
export const DPL_VERSION: string = (
  JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
).version;
