import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { suite } from './test.js';
import { missingTestPackages, missingTestPackagesLine } from './needs.js';
import { findProgram } from '../../src/tools.js';

const test = suite('support/needs');

test('a program found on PATH counts, one that is not names its package once; the slow tier needs more', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'netroot-needs-'));
  try {
    symlinkSync(findProgram('tar')!, path.join(dir, 'tar'));
    const missing = missingTestPackages('fast', { PATH: dir, sbin: [] });
    assert.not.ok(missing.includes('tar'));
    for (const p of ['keepalived', 'mariadb-server', 'zstd', 'u-boot-tools']) assert.ok(missing.includes(p), p);
    assert.is(missing.filter((p) => p === 'openssh-server').length, missing.includes('openssh-server') ? 1 : 0);
    assert.equal(missing, [...missing].sort());
    const slow = missingTestPackages('slow', { PATH: dir, sbin: [] });
    assert.ok(slow.includes('mmdebstrap') && !missing.includes('mmdebstrap'));
    assert.is(missingTestPackagesLine([]), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm test on a machine without the peers fails before any test, in one line naming the packages', async () => {
  const empty = mkdtempSync(path.join(os.tmpdir(), 'netroot-needs-path-'));
  try {
    const run = await execa(process.execPath, ['--import', 'tsx', 'scripts/test.ts'], {
      env: { ...process.env, PATH: empty },
      reject: false,
      timeout: 60_000,
    });
    assert.is(run.exitCode, 1, run.stderr);
    const lines = run.stderr.trim().split('\n');
    assert.is(lines.length, 1, run.stderr);
    assert.match(
      lines[0]!,
      /^scripts\/test\.ts: the tests need Debian packages that are not installed here: apt-get install [a-z0-9 .+-]*\btar\b/,
    );
    assert.is(run.stdout.trim(), '0 passed, 1 failed, 0 skipped');
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
