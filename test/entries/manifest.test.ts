/**
 * A tree's manifest: type, mode, owner and sha256 per path, state subtrees
 * left out; cached digests are reused only for files that did not change,
 * even when a rewrite keeps the size and puts the mtime back.
 */
import { mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { loadHashCache, readManifest, saveHashCache, type HashCache } from '../../src/entries/manifest.js';

const Manifest = suite('deploy manifest');
let dir: string;
Manifest.before.each(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-manifest-'));
});
Manifest.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

Manifest('files, links and directories; state subtrees left out', async () => {
  await mkdir(path.join(dir, 'etc'));
  await writeFile(path.join(dir, 'etc/hostname'), 'n1\n', { mode: 0o644 });
  await symlink('/run/resolv.conf', path.join(dir, 'etc/resolv.conf'));
  await mkdir(path.join(dir, 'var/lib/mysql'), { recursive: true });
  await writeFile(path.join(dir, 'var/lib/mysql/ibdata1'), 'x');
  const m = await readManifest(dir, ['var/lib/mysql']);
  assert.equal(Object.keys(m).sort(), ['etc', 'etc/hostname', 'etc/resolv.conf', 'var', 'var/lib']);
  assert.equal(m['etc/hostname'], { t: 'f', m: 0o644, u: process.getuid!(), g: process.getgid!(), s: 3, h: sha('n1\n') });
  assert.is(m['etc/resolv.conf']!.l, '/run/resolv.conf');
});

Manifest('a cached digest is used for an unchanged file, never for a rewritten one', async () => {
  const file = path.join(dir, 'f');
  await writeFile(file, 'aaaa');
  const cache: HashCache = new Map();
  assert.is((await readManifest(dir, [], cache))['f']!.h, sha('aaaa'));
  assert.is(cache.size, 1);
  // A cached digest that lies is believed for an unchanged file: proof the cache is used.
  const [key] = [...cache.keys()];
  cache.set(key!, 'from-the-cache');
  assert.is((await readManifest(dir, [], cache))['f']!.h, 'from-the-cache');
  // Rewritten with the same size and its mtime put back: the ctime still moved.
  const before = await stat(file);
  await new Promise((r) => setTimeout(r, 20));
  await writeFile(file, 'bbbb');
  await utimes(file, before.atime, before.mtime);
  assert.is((await readManifest(dir, [], cache))['f']!.h, sha('bbbb'));
});

Manifest('the cache file is rewritten when many digests are new, not for the few files a deploy changed', async () => {
  const tree = path.join(dir, 'tree');
  await mkdir(tree);
  for (let i = 0; i < 100; i++) await writeFile(path.join(tree, `f${i}`), `file ${i}\n`);
  const file = path.join(dir, 'cache.json');
  // The file as written (key, digest, key, digest…), not as loadHashCache reads it.
  const saved = async () => {
    const flat = JSON.parse(await readFile(file, 'utf8')) as string[];
    return new Map(flat.flatMap((k, i) => (i % 2 === 0 ? [[k, flat[i + 1]!] as const] : [])));
  };
  // A small tree with no cache yet: written, however few its files.
  const small = path.join(dir, 'small');
  await mkdir(small);
  for (let i = 0; i < 3; i++) await writeFile(path.join(small, `s${i}`), `small ${i}\n`);
  const smallCache = await loadHashCache(path.join(dir, 'small.json'));
  await readManifest(small, [], smallCache);
  await saveHashCache(path.join(dir, 'small.json'), smallCache);
  assert.is((await loadHashCache(path.join(dir, 'small.json'))).size, 3);
  // The first read hashes all 100: written.
  let cache = await loadHashCache(file);
  await readManifest(tree, [], cache);
  await saveHashCache(file, cache);
  assert.is((await saved()).size, 100);
  // One file changed: read again now and at every later run, but the file is not rewritten for it.
  await writeFile(path.join(tree, 'f0'), 'changed\n');
  cache = await loadHashCache(file);
  const one = await readManifest(tree, [], cache);
  assert.is(one['f0']!.h, sha('changed\n'));
  await saveHashCache(file, cache);
  const kept = await saved();
  assert.is(kept.size, 100);
  assert.not.ok([...kept.values()].includes(sha('changed\n')), 'the cache file is as it was');
  assert.is((await readManifest(tree, [], await loadHashCache(file)))['f0']!.h, sha('changed\n'), 'and never believed for f0');
  // Forty changed: written, holding the tree as it is now.
  for (let i = 0; i < 40; i++) await writeFile(path.join(tree, `f${i}`), `changed ${i}\n`);
  cache = await loadHashCache(file);
  await readManifest(tree, [], cache);
  await saveHashCache(file, cache);
  const rewritten = await saved();
  assert.is(rewritten.size, 100);
  assert.ok([...rewritten.values()].includes(sha('changed 39\n')));
});
