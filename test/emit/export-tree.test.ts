import * as fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { requires } from '../support/requires.js';
import { openBase } from '../../src/base/open.js';
import { OverlayConflictError, RootfsError } from '../../src/entries/errors.js';
import { mergeOverlay } from '../../src/emit/overlay.js';
import { overlayRecord, reviseNodeTree, writeNodeTree } from '../../src/emit/export-tree.js';
import { layOverlay, resolveInRoot, TreeJournal } from '../../src/entries/place.js';
import { cleanup, exists, file, isRoot, link, makeBase, overlay, snapshot, tarOf, tempDir, rootCanCheck } from '../support/rootfs.js';

const test = suite('emit/export-tree');
test.after(cleanup);

const EPOCH = 1_700_000_000;

async function fixture(label: string) {
  const t = await tempDir(label);
  const sentinel = `${t}/sentinel`;
  fs.mkdirSync(sentinel);
  await makeBase(`${t}/base`, sentinel);
  return { t, sentinel, base: await openBase(`${t}/base`) };
}

test('a node tree is the base plus the overlay, with exact owners and modes', async () => {
  const { t, sentinel, base } = await fixture('tree');
  const result = await writeNodeTree(base, overlay('n1'), `${t}/n1`, { sourceDateEpoch: EPOCH, privileged: isRoot });
  const st = (p: string) => fs.lstatSync(path.join(t, 'n1', p));
  assert.equal([st('etc/netroot/secret').mode & 0o7777, st('etc/netroot/secret').uid, st('etc/netroot/secret').gid], [0o600, 0, 0]);
  assert.is(fs.readFileSync(`${t}/n1/etc/netroot/secret`, 'utf8'), 'token-n1\n');
  assert.is(st('etc/netroot/secret').mtime.getTime() / 1000, EPOCH);
  assert.equal([st('etc/rancher/k3s').mode & 0o7777, st('etc/rancher/k3s').uid], [0o755, 0]);
  assert.is(fs.readlinkSync(`${t}/n1/etc/systemd/system/multi-user.target.wants/k3s.service`), '/etc/systemd/system/k3s.service');
  // The absolute symlinks were replaced by files, not written through.
  assert.ok(st('etc/resolv.conf').isFile());
  assert.ok(st('etc/hosts').isFile());
  assert.equal(fs.readdirSync(sentinel), []);
  // Base things kept: capability, symlinks, sticky and setuid bits, devices.
  assert.match((await execa('getcap', [`${t}/n1/usr/bin/ping`])).stdout, /cap_net_raw=ep/);
  assert.is(fs.readlinkSync(`${t}/n1/lib`), 'usr/lib');
  assert.is(st('tmp').mode & 0o7777, 0o1777);
  assert.ok(st('run/initctl').isFIFO());
  if (rootCanCheck()) {
    assert.is(st('usr/bin/su').mode & 0o7777, 0o4755);
    assert.is(st('home/user/.profile').uid, 1000);
    assert.ok(st('dev/null').isCharacterDevice());
  }
  // Replacing one path of a hard link pair leaves the other with the base content.
  assert.is(fs.readFileSync(`${t}/n1/usr/bin/perl`, 'utf8'), '#!overlay perl\n');
  assert.is(st('usr/bin/perl5.36').size, 700);
  assert.equal(result.replaced, ['etc/hostname', 'etc/hosts', 'etc/resolv.conf', 'usr/bin/perl']);
  // The base itself is untouched.
  assert.is(fs.readFileSync(`${t}/base/etc/hostname`, 'utf8'), 'base\n');
});

test('hard links the overlay does not touch stay hard links', async () => {
  const { t, base } = await fixture('hardlinks');
  await writeNodeTree(base, [file('etc/hostname', 'n1\n')], `${t}/n1`, { privileged: isRoot });
  assert.is(fs.statSync(`${t}/n1/usr/bin/perl`).ino, fs.statSync(`${t}/n1/usr/bin/perl5.36`).ino);
});

test('a tree from the tarball base equals a tree from the directory base', async () => {
  const { t, base } = await fixture('from-tarball');
  const tarball = await openBase(await tarOf(`${t}/base`, `${t}/base.tar.zst`), { cacheDir: `${t}/cache` });
  await writeNodeTree(base, overlay('n1'), `${t}/a`, { sourceDateEpoch: EPOCH, privileged: isRoot });
  await writeNodeTree(tarball, overlay('n1'), `${t}/b`, { sourceDateEpoch: EPOCH, privileged: isRoot });
  assert.equal(await snapshot(`${t}/b`), await snapshot(`${t}/a`));
});

requires(isRoot, 'needs root to write owners')(
  'a base extracted without privileges is put right when the tree is written as root',
  async () => {
    const { t, base } = await fixture('reconcile');
    const unprivileged = await openBase(await tarOf(`${t}/base`, `${t}/base.tar`), { cacheDir: `${t}/cache`, privileged: false });
    await writeNodeTree(base, overlay('n1'), `${t}/a`, { sourceDateEpoch: EPOCH, privileged: isRoot });
    await writeNodeTree(unprivileged, overlay('n1'), `${t}/b`, { sourceDateEpoch: EPOCH, privileged: isRoot });
    assert.equal(await snapshot(`${t}/b`), await snapshot(`${t}/a`));
  },
);

test('an overlay under a hostile base symlink (etc -> sentinel) fails before anything is written, and the sentinel stays empty', async () => {
  const t = await tempDir('hostile');
  const sentinel = `${t}/sentinel`;
  fs.mkdirSync(sentinel);
  fs.mkdirSync(`${t}/base`);
  fs.symlinkSync(sentinel, `${t}/base/etc`);
  const base = await openBase(`${t}/base`);
  const error = await writeNodeTree(base, [file('etc/passwd', 'evil\n')], `${t}/n1`, { privileged: isRoot }).catch((e: Error) => e);
  assert.instance(error, OverlayConflictError);
  assert.is((error as OverlayConflictError).exitCode, 2);
  assert.match((error as Error).message, /overlay "etc\/passwd": its parent "etc" is a symbolic link/);
  assert.equal(fs.readdirSync(sentinel), []);
  assert.not.ok(exists(`${t}/n1`));
});

test('relative escapes (etc -> ../../..) resolve inside the root in the hint, and are refused too', async () => {
  const t = await tempDir('relative');
  fs.mkdirSync(`${t}/base/usr/etc`, { recursive: true });
  fs.symlinkSync('../../../usr/etc', `${t}/base/etc`);
  const base = await openBase(`${t}/base`);
  assert.is(resolveInRoot(base, 'etc/passwd'), 'usr/etc/passwd');
  assert.throws(() => mergeOverlay(base, [file('etc/passwd', 'x')], { mtime: 0 }), /resolves to "usr\/etc\/passwd"/);
});

test('layOverlay itself never follows a symlink on disk, even one the index does not know', async () => {
  const { t, sentinel, base } = await fixture('on-disk');
  const merge = mergeOverlay(base, [file('var/lib/k3s/token', 'secret\n', 0o600)], { mtime: EPOCH });
  fs.mkdirSync(`${t}/dest`);
  fs.symlinkSync(sentinel, `${t}/dest/var`); // appeared after indexing
  assert.throws(
    () => layOverlay(`${t}/dest`, merge.entries, { privileged: isRoot }),
    (e: Error) => e instanceof OverlayConflictError && /"var" in .* is a symbolic link/.test(e.message),
  );
  assert.equal(fs.readdirSync(sentinel), []);
  // A final-component symlink is replaced, not followed.
  fs.mkdirSync(`${t}/dest2/etc`, { recursive: true });
  fs.symlinkSync(`${sentinel}/hostname`, `${t}/dest2/etc/hostname`);
  layOverlay(`${t}/dest2`, mergeOverlay(base, [file('etc/hostname', 'n1\n')], { mtime: EPOCH }).entries, { privileged: isRoot });
  assert.ok(fs.lstatSync(`${t}/dest2/etc/hostname`).isFile());
  assert.equal(fs.readdirSync(sentinel), []);
});

test('the overlay may not replace a directory, nest under its own file, or write a path twice', async () => {
  const { base } = await fixture('rules');
  assert.throws(() => mergeOverlay(base, [file('usr/bin', 'x')], { mtime: 0 }), /the base has a directory there/);
  assert.throws(
    () => mergeOverlay(base, [file('etc/x', 'a'), file('etc/x/y', 'b')], { mtime: 0 }),
    /parent "etc\/x" is a file of the overlay/,
  );
  assert.throws(() => mergeOverlay(base, [file('etc/x', 'a'), link('etc/x', '/y')], { mtime: 0 }), /written twice/);
  assert.throws(() => mergeOverlay(base, [file('etc/passwd/x', 'a')], { mtime: 0 }), /is a file in the base, not a directory/);
  assert.throws(() => mergeOverlay(base, [file('./etc/x', 'a')], { mtime: 0 }), /not a plain relative path/);
});

test('the destination must be new or empty', async () => {
  const { t, base } = await fixture('dest');
  fs.mkdirSync(`${t}/busy`);
  fs.writeFileSync(`${t}/busy/file`, 'x');
  const error = await writeNodeTree(base, [], `${t}/busy`, { privileged: isRoot }).catch((e: Error) => e);
  assert.instance(error, RootfsError);
  assert.match((error as Error).message, /not an empty directory/);
  fs.mkdirSync(`${t}/empty`);
  await writeNodeTree(base, [], `${t}/empty`, { privileged: isRoot });
  assert.ok(exists(`${t}/empty/etc/passwd`));
});

test('a tree revised in place equals one built afresh, and its journal puts the old tree back exactly', async () => {
  const { t, base } = await fixture('journal');
  const overlayRecords = (files: ReturnType<typeof overlay>) => files.map(overlayRecord);
  const first = overlay('n1');
  await writeNodeTree(base, first, `${t}/tree`, { sourceDateEpoch: EPOCH, privileged: isRoot });
  const before = await snapshot(`${t}/tree`);
  // The second overlay drops files (one in a directory only the overlay made), adds others and removes base files.
  const second = [
    ...overlay('n2').filter((f) => !f.path.startsWith('etc/netroot/') && f.path !== 'etc/resolv.conf'),
    file('opt/new/thing', 'x\n'),
  ];
  const removes = ['etc/shadow'];
  // Left by a killed run: a displaced directory where this run's first displaced file would go.
  fs.mkdirSync(`${t}/aside/0`, { recursive: true });
  const journal = new TreeJournal(`${t}/aside`);
  await reviseNodeTree(
    base,
    second,
    `${t}/tree`,
    { dir: `${t}/tree`, overlay: overlayRecords(first), removes: [] },
    { sourceDateEpoch: EPOCH, removes, journal, privileged: isRoot },
  );
  await writeNodeTree(base, second, `${t}/fresh`, { sourceDateEpoch: EPOCH, removes, privileged: isRoot });
  assert.equal(await snapshot(`${t}/tree`), await snapshot(`${t}/fresh`));
  journal.undo();
  assert.equal(await snapshot(`${t}/tree`), before);
  assert.not.ok(exists(`${t}/aside`));
});
