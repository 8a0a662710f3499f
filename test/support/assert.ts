/** Assertions uvu lacks. */
import * as assert from 'uvu/assert';

/** The promise rejects, and its message matches when a pattern is given; returns the error. */
export async function rejects(run: () => Promise<unknown>, pattern?: RegExp): Promise<Error> {
  try {
    await run();
  } catch (error) {
    const e = error as Error;
    if (pattern) assert.match(e.message, pattern);
    return e;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}
