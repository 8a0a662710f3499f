/**
 * A test that can run only where `ok` holds (root, a kernel feature, a
 * program): elsewhere the runner reports it as skipped, never as passed; under
 * CI, where every test must run, it fails and says what is missing.
 */
import { test, type TestOptions } from './test.js';

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
