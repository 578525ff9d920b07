/**
 * A malformed command line (exit code 2, with a usage hint), as opposed to a failed run.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Runs a yargs `.check()` body, marking what it throws as a usage error. */
export function usageCheck(fn: () => void): true {
  try {
    fn();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return true;
}
