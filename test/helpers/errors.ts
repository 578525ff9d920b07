/**
 * Assertions on what a function throws, shared by the unit tests.
 */

/** What `fn` throws, or undefined when it returns. */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Asserts that `fn` throws an instance of `ctor` with exactly `message`. */
export function expectThrows(fn: () => unknown, ctor: new (...args: never[]) => Error, message: string): void {
  const caught = thrownBy(fn);
  expect(caught).toBeInstanceOf(ctor);
  expect((caught as Error).message).toBe(message);
}

/** The TypeError message `fn` throws (fails the test when it throws nothing or something else). */
export function typeErrorOf(fn: () => unknown): string {
  const caught = thrownBy(fn);
  expect(caught).toBeInstanceOf(TypeError);
  return (caught as TypeError).message;
}

/** What `promise` rejects with; fails the test when it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection, but the promise resolved');
}
