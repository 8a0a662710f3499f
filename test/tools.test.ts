/**
 * The runner of external programs: a missing program, a non-zero exit and a
 * timeout each end in a ToolError of one shape, and requirePrograms names every
 * missing program at once with its Debian package.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from './support/test.js';
import * as assert from 'uvu/assert';
import { EXIT_FAILURE, EXIT_MISSING_PROGRAM, MissingProgramError, ToolError } from '../src/errors.js';
import { findProgram, requirePrograms, runTool, startTool, stderrTail } from '../src/tools.js';
import { rejects } from './support/assert.js';
import { requires } from './support/requires.js';

let tmp = '';
let stubs = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-tools-'));
  stubs = path.join(tmp, 'bin');
  await mkdir(stubs);
  // A program that writes twelve lines to stderr and exits 3.
  await writeFile(path.join(stubs, 'complains'), '#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "line $i" >&2; done\nexit 3\n');
  await chmod(path.join(stubs, 'complains'), 0o755);
});
test.after(() => rm(tmp, { recursive: true, force: true }));

test('not installed: a MissingProgramError naming the Debian package, exit 3', async () => {
  // A PATH of one empty directory: getfattr is not there, whatever this machine has.
  const empty = path.join(tmp, 'empty');
  await mkdir(empty, { recursive: true });
  const error = await rejects(() => runTool('getfattr', ['--version'], { env: { PATH: empty }, why: 'reading file capabilities' }));
  assert.instance(error, MissingProgramError);
  assert.instance(error, ToolError);
  const e = error as MissingProgramError;
  assert.is(e.failure, 'missing');
  assert.is(e.exitCode, EXIT_MISSING_PROGRAM);
  assert.is(e.program, 'getfattr');
  assert.equal(
    e.missing.map((m) => m.package),
    ['attr'],
  );
  assert.is(
    e.message,
    'getfattr is not installed on this machine (needed for reading file capabilities): install the Debian package attr (apt-get install attr)',
  );
});

test('not installed: a program no table knows is named as its own package', async () => {
  const error = (await rejects(() => runTool('netroot-no-such-program', []))) as MissingProgramError;
  assert.is(error.failure, 'missing');
  assert.is(error.exitCode, EXIT_MISSING_PROGRAM);
  assert.match(
    error.message,
    /^netroot-no-such-program is not installed on this machine: install the Debian package netroot-no-such-program/,
  );
});

test('a non-zero exit: a ToolError with the status and the end of stderr, exit 1', async () => {
  const error = (await rejects(() => runTool(path.join(stubs, 'complains'), [], { what: 'complaining' }))) as ToolError;
  assert.instance(error, ToolError);
  assert.not.instance(error, MissingProgramError);
  assert.is(error.failure, 'failed');
  assert.is(error.exitCode, EXIT_FAILURE);
  assert.is(error.status, 3);
  assert.equal(error.stderrTail, ['line 5', 'line 6', 'line 7', 'line 8', 'line 9', 'line 10', 'line 11', 'line 12']);
  assert.match(error.message, /^complaining failed \(complains exit 3\):\n {2}line 5\n/);
  assert.match(error.message, /line 12$/);
});

test('a non-zero exit the caller accepts is returned, not thrown', async () => {
  const result = await runTool(path.join(stubs, 'complains'), [], { accept: [0, 3] });
  assert.is(result.status, 3);
  assert.match(result.stderr, /line 12/);
  const any = await runTool('sh', ['-c', 'echo out; exit 9'], { accept: 'any' });
  assert.is(any.status, 9);
  assert.is(any.stdout, 'out');
});

test('a timeout: the program is stopped and a ToolError says so, exit 1', async () => {
  const started = Date.now();
  const error = (await rejects(() => runTool('sleep', ['30'], { timeout: 300, what: 'waiting' }))) as ToolError;
  assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
  assert.instance(error, ToolError);
  assert.is(error.failure, 'timeout');
  assert.is(error.exitCode, EXIT_FAILURE);
  assert.is(error.status, undefined);
  assert.match(error.message, /^waiting did not finish within 0\.3 s and was stopped \(sleep\)$/);
});

test('a timeout is thrown even when any exit status is accepted', async () => {
  const error = (await rejects(() => runTool('sleep', ['30'], { timeout: 200, accept: 'any' }))) as ToolError;
  assert.is(error.failure, 'timeout');
});

test('streamed: the same three shapes once the program ends', async () => {
  const missing = startTool('netroot-no-such-program', [], { streamStdout: true });
  const error = (await rejects(() => missing.done())) as ToolError;
  assert.is(error.failure, 'missing');
  const piped = startTool('cat', [], { stdin: 'pipe', streamStdout: true });
  piped.child.stdin!.end('through cat');
  let out = '';
  for await (const chunk of piped.child.stdout as AsyncIterable<Buffer>) out += chunk.toString();
  assert.is((await piped.done()).status, 0);
  assert.is(out, 'through cat');
});

test('a daemon: its output in files, and stop() ends it with the signal given', async () => {
  const log = path.join(tmp, 'daemon.log');
  const daemon = startTool('sh', ['-c', 'echo started; echo complaint >&2; exec sleep 60'], {
    stdoutFile: log,
    stderrFile: `${log}.err`,
  });
  const said = async (): Promise<string> => (await readFile(log, 'utf8').catch(() => '')).trim();
  for (let i = 0; i < 100 && (await said()) !== 'started'; i++) await new Promise((r) => setTimeout(r, 50));
  const begun = Date.now();
  await daemon.stop(10_000, 'SIGTERM');
  assert.ok(Date.now() - begun < 5_000, 'sleep ends on SIGTERM, long before the grace');
  assert.is(daemon.child.signalCode, 'SIGTERM');
  assert.is(await said(), 'started');
  assert.is((await readFile(`${log}.err`, 'utf8')).trim(), 'complaint');
});

test('stop(): a program that ignores the signal is killed once the grace has passed', async () => {
  const stubborn = startTool('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done'], { streamStdout: true });
  await new Promise((resolve) => stubborn.child.stdout!.once('data', resolve));
  const begun = Date.now();
  await stubborn.stop(500, 'SIGTERM');
  const took = Date.now() - begun;
  assert.ok(took >= 450 && took < 5_000, `killed after the 500-ms grace, not before or much later (${took} ms)`);
  assert.is(stubborn.child.signalCode, 'SIGKILL');
  await stubborn.stop(500); // already gone: returns at once
});

test('streamed stderr: read as it comes, with stdout streamed beside it', async () => {
  const both = startTool('sh', ['-c', 'echo out; echo err >&2'], { streamStdout: true, streamStderr: true });
  let out = '';
  let err = '';
  both.child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  both.child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const result = await both.done();
  assert.is(result.status, 0);
  assert.is(result.stderr, '', 'streamed, not collected');
  assert.is(out.trim(), 'out');
  assert.is(err.trim(), 'err');
});

test('requirePrograms: every missing program in one error, with one apt-get install line', async () => {
  // A PATH holding only sh: getfattr, setfattr (both attr), mkimage and zstd are missing.
  const only = path.join(tmp, 'only-sh');
  await mkdir(only, { recursive: true });
  await symlink(findProgram('sh')!, path.join(only, 'sh'));
  requirePrograms([{ program: 'sh', why: 'scripts' }], only);
  let error: unknown;
  try {
    requirePrograms(
      [
        { program: 'getfattr', why: 'reading capabilities' },
        { program: 'setfattr', why: 'writing capabilities' },
        { program: 'sh', why: 'scripts' },
        { program: 'mkimage', why: 'the uInitrd' },
        { program: 'zstd', why: '.tar.zst artifacts' },
        { program: 'zstd', why: 'a zstd base' },
      ],
      only,
    );
  } catch (caught) {
    error = caught;
  }
  assert.instance(error, MissingProgramError);
  const e = error as MissingProgramError;
  assert.is(e.exitCode, EXIT_MISSING_PROGRAM);
  assert.equal(
    e.missing.map((m) => m.program),
    ['getfattr', 'setfattr', 'mkimage', 'zstd'],
  );
  assert.is(
    e.message,
    [
      '4 programs netroot needs are not installed on this machine:',
      '  - getfattr (Debian package attr), for reading capabilities',
      '  - setfattr (Debian package attr), for writing capabilities',
      '  - mkimage (Debian package u-boot-tools), for the uInitrd',
      '  - zstd (Debian package zstd), for .tar.zst artifacts, a zstd base',
      'Install them (apt-get install attr u-boot-tools zstd).',
    ].join('\n'),
  );
});

requires(existsSync('/usr/sbin/debugfs'), 'needs /usr/sbin/debugfs (Debian package e2fsprogs)')(
  'a program installed in sbin but not on PATH is told apart from a missing one',
  () => {
    let error: unknown;
    try {
      requirePrograms([{ program: 'debugfs', why: 'reading a disk image' }], path.join(tmp, 'only-sh'));
    } catch (caught) {
      error = caught;
    }
    assert.instance(error, MissingProgramError);
    assert.is(
      (error as Error).message,
      'debugfs is not on PATH (needed for reading a disk image), though it is installed at /usr/sbin/debugfs: add /usr/sbin to PATH',
    );
  },
);

test('stderrTail: the last lines, without blanks and \\r progress redraws', () => {
  assert.equal(stderrTail('a\n\nb\r 10%\r 100%\nc\n', 3), [' 10%', ' 100%', 'c']);
});
