/**
 * Python's own unittest, counted by `npm test` like any other test: a test
 * file runs a Python test module once (bounded), then registers one test per
 * Python test with its outcome, so each passes, fails and is named on its own.
 */
import path from 'node:path';
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { test } from './test.js';

interface PythonResult {
  id: string;
  ok: boolean;
  detail: string;
}

/** Runs `module` of the Python tests in `dir` (through its run.py) and registers each of its tests. */
export async function pythonTests(dir: string, module: string, timeoutMs: number): Promise<void> {
  const run = await execa('python3', [path.join(dir, 'run.py'), module], {
    cwd: dir,
    reject: false,
    timeout: timeoutMs,
    env: { PYTHONDONTWRITEBYTECODE: '1' },
  });
  const results: PythonResult[] = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as PythonResult);
  // A module that did not load, crashed or ran out of time is a failure of its own, never zero tests passed.
  if (run.exitCode !== 0 && results.every((r) => r.ok)) {
    test(`${module}: the Python tests ran to the end`, () => {
      assert.unreachable(
        `python3 run.py ${module} ${run.timedOut ? `ran out of its ${timeoutMs / 1000} s` : `exited ${run.exitCode}`}: ${run.stderr.slice(-2000)}`,
      );
    });
  }
  for (const result of results) {
    test(result.id, () => {
      if (result.detail) process.stdout.write(`${result.detail}\n`);
      assert.ok(result.ok, result.detail);
    });
  }
}
