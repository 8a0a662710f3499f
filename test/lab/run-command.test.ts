import * as assert from 'uvu/assert';
import { MissingProgramError } from '../../src/errors.js';
import { LabError } from '../../src/lab/errors.js';
import { run, tryRun } from '../../src/lab/run-command.js';
import { suite } from '../support/test.js';

const test = suite('lab/run-command');

test('any exit status is a result; run() turns a failure into a LabError with the command and what it said', async () => {
  const ok = await tryRun('sh', ['-c', 'echo out; echo err >&2']);
  assert.equal(ok, { ok: true, exitCode: 0, stdout: 'out', stderr: 'err' });
  const failed = await tryRun('sh', ['-c', 'echo why >&2; exit 3']);
  assert.equal([failed.ok, failed.exitCode, failed.stderr], [false, 3, 'why']);
  try {
    await run('sh', ['-c', 'echo why >&2; exit 3']);
    assert.unreachable('run() resolved');
  } catch (error) {
    assert.instance(error, LabError);
    assert.match(String(error), /sh -c echo why >&2; exit 3 failed \(exit 3\):\n {2}why/);
  }
});

test('a timeout is a failed result that says how long it ran', async () => {
  const started = Date.now();
  const result = await tryRun('sleep', ['30'], { timeoutMs: 300 });
  assert.ok(Date.now() - started < 10_000, `stopped in ${Date.now() - started} ms`);
  assert.is(result.ok, false);
  assert.is(result.exitCode, undefined);
  assert.match(result.stderr, /\(stopped after 0.3 s\)/);
});

test('a program that is not installed stops the lab with the shared "not installed" error, not a failed result', async () => {
  try {
    await tryRun('netroot-no-such-program', []);
    assert.unreachable('tryRun resolved');
  } catch (error) {
    assert.instance(error, MissingProgramError);
    assert.match(String((error as Error).message), /netroot-no-such-program/);
    assert.match(String((error as Error).message), /the lab/);
  }
});
