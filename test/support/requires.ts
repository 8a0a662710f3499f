/**
 * A test that can run only where `ok` holds (root, a kernel feature): elsewhere
 * uvu reports it as skipped, never as passed; under CI, where every test must
 * run, it fails and says what is missing.
 */
import { test } from 'uvu';

type Handler = Parameters<typeof test>[1];

export function requires(ok: boolean, why: string): (name: string, handler: Handler) => void {
  if (ok) return (name, handler) => test(name, handler);
  if (process.env.CI) {
    return (name) =>
      test(name, () => {
        throw new Error(`cannot run here, and CI runs every test: ${why}`);
      });
  }
  return (name, handler) => test.skip(name, handler);
}
