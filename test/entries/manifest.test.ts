/**
 * A tree's manifest: type, mode, owner and sha256 per path, state subtrees
 * left out; cached digests are reused only for files that did not change,
 * even when a rewrite keeps the size and puts the mtime back.
 */
import { mkdir, mkdtemp, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { readManifest, type HashCache } from '../../src/entries/manifest.js';

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
