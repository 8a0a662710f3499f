import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from './support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { cachedFile, stageIntoCache } from '../src/cache.js';
import { rejects } from './support/assert.js';

const test = suite('cache');
let dir = '';
test.before.each(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-cache-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a directory entry appears whole under its name, made private parents, with what build returned', async () => {
  const final = path.join(dir, 'bases/abc');
  const returned = await stageIntoCache(
    final,
    async (staging) => {
      assert.not.ok(existsSync(final), 'not visible while it is built');
      await mkdir(staging);
      await writeFile(path.join(staging, 'index.json'), '{}');
      return 42;
    },
    { parentMode: 0o700 },
  );
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
  await rejects(
    () =>
      stageIntoCache(final, async (staging) => {
        await mkdir(staging);
        // rm must not follow a symlink the staged base holds.
        symlinkSync(outside, path.join(staging, 'etc'));
        throw new Error('extraction failed');
      }),
    /extraction failed/,
  );
  assert.equal(readdirSync(path.join(dir, 'packed')), []);
  assert.ok(existsSync(path.join(outside, 'keep')), 'what the symlink points at is untouched');
});

test("another process's entry, there first, is kept", async () => {
  const final = path.join(dir, 'image-roots/d');
  mkdirSync(final, { recursive: true });
  writeFileSync(path.join(final, 'theirs'), '');
  let told = 0;
  await stageIntoCache(
    final,
    async (staging) => {
      await mkdir(staging);
      await writeFile(path.join(staging, 'mine'), '');
    },
    { onKeptTheirs: () => told++ },
  );
  assert.equal(readdirSync(final), ['theirs']);
  assert.equal(readdirSync(path.dirname(final)), ['d']);
  assert.is(told, 1, 'the caller is told that what it built is not what is there');
  // Its own entry put in place: not told.
  await stageIntoCache(path.join(dir, 'image-roots/e'), (staging) => mkdir(staging), { onKeptTheirs: () => told++ });
  assert.is(told, 1);
});

test("a file entry replaces an older file; a killed run's temporary is swept, a live one is not", async () => {
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

test('cachedFile: concurrent builds of one key both succeed, temporaries of dead runs are swept', async () => {
  const stale = path.join(dir, '.x.tar.tmp-999999999-abcd');
  const live = path.join(dir, `.y.tar.tmp-${process.pid}-beef`);
  await writeFile(stale, 'half');
  await writeFile(live, 'in progress');
  const final = path.join(dir, 'x.tar');
  const build = (content: string) => async (temporary: string) => {
    await writeFile(temporary, content);
    await new Promise((resolve) => setTimeout(resolve, 50));
  };
  const [a, b] = await Promise.all([cachedFile(final, build('same')), cachedFile(final, build('same'))]);
  assert.ok(a.built && b.built);
  assert.equal((await readdir(dir)).sort(), ['.y.tar.tmp-' + process.pid + '-beef', 'x.tar']);
  assert.is((await cachedFile(final, build('other'))).built, false);
  await rejects(
    () =>
      cachedFile(path.join(dir, 'z.tar'), async (t) => {
        await writeFile(t, 'partial');
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.not.ok((await readdir(dir)).some((n) => n.includes('z.tar')));
});

test('cachedFile: a build that another live process is making is waited for, and made here if that process dies without it', async () => {
  const final = path.join(dir, 'w.tar');
  const builder = execa('sleep', ['30'], { reject: false });
  const theirs = path.join(dir, `.w.tar.tmp-${builder.pid}-abcd`);
  await writeFile(theirs, 'in progress');
  let builtHere = 0;
  const build = async (temporary: string) => {
    builtHere++;
    await writeFile(temporary, 'mine');
  };
  const waited: number[] = [];
  setTimeout(() => void writeFile(final, 'theirs').then(() => rm(theirs)), 300);
  const result = await cachedFile(final, build, { pollMs: 50, onWait: (pid) => waited.push(pid) });
  assert.equal(waited, [builder.pid]);
  assert.is(result.built, false);
  assert.is(builtHere, 0);
  assert.is(await readFile(final, 'utf8'), 'theirs');

  // Killed before it renamed its file into place: this run builds it.
  const other = path.join(dir, 'v.tar');
  await writeFile(path.join(dir, `.v.tar.tmp-${builder.pid}-abcd`), 'half');
  setTimeout(() => builder.kill('SIGKILL'), 300);
  const again = await cachedFile(other, build, { pollMs: 50 });
  await builder;
  assert.is(again.built, true);
  assert.is(builtHere, 1);
  assert.is(await readFile(other, 'utf8'), 'mine');
});
