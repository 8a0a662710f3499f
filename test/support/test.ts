/**
 * The test API every test file uses: uvu's shape (`test(name, fn)`, named
 * suites with a context object and their own before/after hooks) on top of
 * `node:test`, which runs the tests.
 *
 * Why node:test underneath (docs/tests-and-ci.md): it gives each test a timeout, runs
 * each file in its own process (a hung child or a leaked handle ends with its
 * file, `--test-force-exit`), runs files side by side, and reports a skipped
 * test as skipped. uvu has none of these. Its shape is kept so a test reads the
 * same as before, and its assertions (`uvu/assert`) are still used.
 *
 * A test's timeout is its tier's (NETROOT_TEST_TIMEOUT_MS, which scripts/test.ts
 * sets) unless it passes its own: `test(name, { timeout: ms }, fn)`. (Not
 * node's --test-timeout: that one bounds each whole file too.) A suite's
 * `before` hooks run inside its first test, so they are bounded by that test's
 * timeout; its `after` hooks run when the file's tests are done, bounded by
 * AFTER_TIMEOUT_MS.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { after as nodeAfter, test as nodeTest, type TestContext } from 'node:test';

type Hook<C> = (context: C) => unknown;
type Body<C> = (context: C) => unknown;
export interface TestOptions {
  /** Milliseconds before the test fails as timed out. */
  timeout?: number;
}

export interface Suite<C> {
  (name: string, body: Body<C>): void;
  (name: string, options: TestOptions, body: Body<C>): void;
  /** Registered, reported as skipped, never run. */
  skip(name: string, body?: Body<C>): void;
  before: ((hook: Hook<C>) => void) & { each(hook: Hook<C>): void };
  after: ((hook: Hook<C>) => void) & { each(hook: Hook<C>): void };
}

const AFTER_TIMEOUT_MS = 120_000;
/** A test's timeout unless it sets its own; scripts/test.ts sets one per tier. */
const DEFAULT_TIMEOUT_MS = Number(process.env.NETROOT_TEST_TIMEOUT_MS) || 90_000;

/** The node:test context of the test running now, for requires.ts's `canCheck`. */
export const runningTest = new AsyncLocalStorage<TestContext>();

export function suite<C extends object = Record<string, never>>(name?: string, context: C = {} as C): Suite<C> {
  const before: Hook<C>[] = [];
  const beforeEach: Hook<C>[] = [];
  const afterEach: Hook<C>[] = [];
  const afterAll: Hook<C>[] = [];
  let started: Promise<void> | undefined;
  const title = (t: string) => (name ? `${name}: ${t}` : t);

  const register = (testName: string, a: TestOptions | Body<C>, b?: Body<C>) => {
    const options = { timeout: DEFAULT_TIMEOUT_MS, ...(typeof a === 'function' ? {} : a) };
    const body = (typeof a === 'function' ? a : b) as Body<C>;
    nodeTest(title(testName), options, (t) =>
      runningTest.run(t, async () => {
        // Once per suite, before its first test, as uvu does; a failed setup fails every test of the suite.
        started ??= (async () => {
          for (const hook of before) await hook(context);
        })();
        await started;
        for (const hook of beforeEach) await hook(context);
        try {
          await body(context);
        } finally {
          for (const hook of afterEach) await hook(context);
        }
      }),
    );
  };
  const s = register as Suite<C>;
  s.skip = (testName) => {
    nodeTest.skip(title(testName));
  };
  s.before = Object.assign((hook: Hook<C>) => void before.push(hook), { each: (hook: Hook<C>) => void beforeEach.push(hook) });
  s.after = Object.assign(
    (hook: Hook<C>) => {
      if (afterAll.length === 0) {
        // Only a suite that started needs tearing down (a skipped one set nothing up).
        nodeAfter(
          async () => {
            if (!started) return;
            await started.catch(() => undefined);
            for (const h of afterAll) await h(context);
          },
          { timeout: AFTER_TIMEOUT_MS },
        );
      }
      afterAll.push(hook);
    },
    { each: (hook: Hook<C>) => void afterEach.push(hook) },
  );
  return s;
}

/** The file's default suite, as uvu's `test`. */
export const test = suite();
