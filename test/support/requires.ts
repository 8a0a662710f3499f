/**
 * A test that can run only where `ok` holds (root, a kernel feature, a
 * program): elsewhere the runner reports it as skipped, never as passed; under
 * CI, where every test must run, it fails and says what is missing.
 */
import { runningTest, test, type TestOptions } from './test.js';

type Body = () => unknown;

export function requires(ok: boolean, why: string): (name: string, a: TestOptions | Body, b?: Body) => void {
  if (ok) return (name, a, b) => (typeof a === 'function' ? test(name, a) : test(name, a, b!));
  if (process.env.CI) {
    return (name) =>
      test(name, () => {
        throw new Error(`cannot run here, and CI runs every test: ${why}`);
      });
  }
  return (name) => test.skip(`${name} (skipped: ${why})`);
}

/**
 * For the part of a test that only some machines can check (owners and device
 * nodes need root): true where it can run. Elsewhere the test goes on with
 * the rest and is reported as skipped, with the reason; under CI it fails.
 *   if (canCheck(isRoot, 'owners need root')) assert.is(entry.uid, 1000);
 */
export function canCheck(ok: boolean, why: string): boolean {
  if (ok) return true;
  if (process.env.CI) throw new Error(`cannot check here, and CI checks everything: ${why}`);
  const t = runningTest.getStore();
  if (!t) throw new Error('canCheck() is for use inside a test');
  t.skip(`part not checked: ${why}`);
  return false;
}
