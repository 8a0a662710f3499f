import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from './support/test.js';
import * as assert from 'uvu/assert';
import { stageIntoCache } from '../src/cache.js';
import { rejects } from './support/assert.js';

const test = suite('cache/stageIntoCache');
let dir = '';
test.before.each(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-cache-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a directory entry appears whole under its name, made private parents, with what build returned', async () => {
  const final = path.join(dir, 'bases/abc');
  const returned = await stageIntoCache(final, async (staging) => {
    assert.not.ok(existsSync(final), 'not visible while it is built');
    await mkdir(staging);
    await writeFile(path.join(staging, 'index.json'), '{}');
    return 42;
  }, { parentMode: 0o700 });
  assert.is(returned, 42);
  assert.is(readFileSync(path.join(final, 'index.json'), 'utf8'), '{}');
  assert.is(statSync(path.join(dir, 'bases')).mode & 0o777, 0o700);
  assert.equal(readdirSync(path.join(dir, 'bases')), ['abc'], 'no temporary left');
});

test('a failed build leaves neither the entry nor its temporary, and the error propagates', async () => {
  const final = path.join(dir, 'packed/k');
  const outside = path.join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'keep'), '');
  await rejects(() => stageIntoCache(final, async (staging) => {
    await mkdir(staging);
    // rm must not follow a symlink the staged base holds.
    symlinkSync(outside, path.join(staging, 'etc'));
    throw new Error('extraction failed');
  }), /extraction failed/);
  assert.equal(readdirSync(path.join(dir, 'packed')), []);
  assert.ok(existsSync(path.join(outside, 'keep')), 'what the symlink points at is untouched');
});

test("another process's entry, there first, is kept", async () => {
  const final = path.join(dir, 'image-roots/d');
  mkdirSync(final, { recursive: true });
  writeFileSync(path.join(final, 'theirs'), '');
  await stageIntoCache(final, async (staging) => {
    await mkdir(staging);
    await writeFile(path.join(staging, 'mine'), '');
  });
  assert.equal(readdirSync(final), ['theirs']);
  assert.equal(readdirSync(path.dirname(final)), ['d']);
});

test('a file entry replaces an older file; a killed run\'s temporary is swept, a live one is not', async () => {
  const final = path.join(dir, 'digests.json');
  writeFileSync(final, 'old');
  const dead = path.join(dir, '.digests.json.tmp-999999999-00000000');
  const live = path.join(dir, `.other.tmp-${process.pid}-00000000`);
  writeFileSync(dead, '');
  writeFileSync(live, '');
  await stageIntoCache(final, (staging) => writeFile(staging, 'new'));
  assert.is(readFileSync(final, 'utf8'), 'new');
  assert.not.ok(existsSync(dead));
  assert.ok(existsSync(live));
});

