import * as fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { defaultCacheDir, directoryIdentity, openBase, type BaseIndex } from '../../src/base/open.js';
import { BaseArchiveError } from '../../src/entries/errors.js';
import { cleanup, LONG_PATH, makeBase, tarOf, tempDir, rootCanCheck } from '../support/rootfs.js';

const test = suite('base/open');
test.after(cleanup);

/** The index minus where content lives, which differs between a directory and its extraction. */
const comparable = (base: BaseIndex) =>
  [...base.entries].map(({ content: _c, ...rest }) => ({
    ...rest,
    xattrs: rest.xattrs && Object.fromEntries(Object.entries(rest.xattrs).map(([k, v]) => [k, v.toString('hex')])),
  }));

test('default cache dir follows XDG_CACHE_HOME, else ~/.cache', () => {
  assert.is(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/netroot');
  assert.ok(defaultCacheDir({}).endsWith('/.cache/netroot'));
});

test('a directory base is indexed with types, owners, modes, links, hard links and xattrs', async () => {
  const t = await tempDir('dir');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const base = await openBase(`${t}/base`);
  const at = (p: string) => base.entries.get(p)!;
  assert.is(base.kind, 'directory');
  assert.is(base.entries.at(0).path, '');
  assert.equal(
    [...base.entries].map((e) => e.path),
    [...base.entries].map((e) => e.path).sort(),
  );
  assert.is(at('etc/resolv.conf').type, 'symlink');
  assert.is(at('etc/resolv.conf').linkname, '/run/systemd/resolve/stub-resolv.conf');
  assert.is(at('usr/bin/perl').type, 'file');
  assert.is(at('usr/bin/perl').content, path.join(base.root, 'usr/bin/perl'));
  assert.is(at('usr/bin/perl5.36').type, 'hardlink');
  assert.is(at('usr/bin/perl5.36').linkname, 'usr/bin/perl');
  assert.is(at('usr/bin/ping').xattrs?.['security.capability']?.length, 20);
  // A symlink's own attributes, never its target's (nor a host file's).
  assert.is(at('usr/bin/ping6').xattrs, undefined);
  assert.is(at('etc/host-link').xattrs, undefined);
  assert.is(at('etc/tagged').xattrs?.['user.tag']?.toString('hex'), '00ff80');
  assert.is(at('tmp').mode, 0o1777);
  assert.is(at('run/initctl').type, 'fifo');
  assert.ok(at(LONG_PATH));
  if (rootCanCheck()) {
    assert.is(at('usr/bin/su').mode, 0o4755);
    assert.is(at('etc/shadow').gid, 42);
    assert.is(at('home/user/.profile').uid, 1000);
    assert.equal([at('dev/null').type, at('dev/null').devmajor, at('dev/null').devminor], ['char', 1, 3]);
  }
});

for (const ext of ['tar', 'tar.gz', 'tar.xz', 'tar.zst']) {
  test(`a .${ext} base indexes exactly like the directory it was made from, and its cache keeps the metadata`, async () => {
    const t = await tempDir('tarball');
    await makeBase(`${t}/base`, `${t}/sentinel`);
    const dir = await openBase(`${t}/base`);
    const tarball = await openBase(await tarOf(`${t}/base`, `${t}/base.${ext}`), { cacheDir: `${t}/cache` });
    assert.is(tarball.kind, 'tarball');
    assert.match(tarball.digest!, /^[0-9a-f]{64}$/);
    assert.ok(tarball.root.startsWith(`${t}/cache/bases/${tarball.digest}/`));
    assert.equal(comparable(tarball), comparable(dir));
    const cached = (p: string) => fs.lstatSync(path.join(tarball.root, p));
    assert.is(cached('usr/bin/perl').ino, cached('usr/bin/perl5.36').ino);
    assert.ok(cached('etc/resolv.conf').isSymbolicLink());
    assert.is((await execa('getcap', [path.join(tarball.root, 'usr/bin/ping')])).stdout.split(' ').pop(), 'cap_net_raw=ep');
    if (rootCanCheck()) {
      assert.is(cached('usr/bin/su').mode & 0o7777, 0o4755);
      assert.is(cached('home/user/.profile').uid, 1000);
      assert.ok(cached('dev/null').isCharacterDevice());
    }
    assert.is(fs.statSync(`${t}/cache/bases`).mode & 0o777, 0o700);
  });
}

test('a directory base keeps its identity while unchanged, and a rewrite with size and mtime put back changes it', async () => {
  const t = await tempDir('identity');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const first = await directoryIdentity(`${t}/base`);
  assert.match(first, /^[0-9a-f]{64}$/);
  assert.is(await directoryIdentity(`${t}/base`), first, 'unchanged');
  // Same size, same mtime, other bytes: only ctime (and the content) tell.
  const file = `${t}/base/etc/hostname`;
  await execa('cp', ['-p', file, `${t}/reference`]);
  const before = fs.statSync(file, { bigint: true });
  fs.writeFileSync(file, 'X'.repeat(Number(before.size)));
  await execa('touch', ['-r', `${t}/reference`, file]);
  const after = fs.statSync(file, { bigint: true });
  assert.equal([after.size, after.mtimeNs, after.ino], [before.size, before.mtimeNs, before.ino]);
  const changed = await directoryIdentity(`${t}/base`);
  assert.is.not(changed, first, 'content rewritten with size and mtime kept');
  assert.is(await directoryIdentity(`${t}/base`), changed);
  // Another file copied over it with cp -p: same size and mtime again.
  fs.writeFileSync(`${t}/reference`, 'Y'.repeat(Number(before.size)));
  await execa('touch', ['-r', file, `${t}/reference`]);
  await execa('cp', ['-p', `${t}/reference`, file]);
  assert.is.not(await directoryIdentity(`${t}/base`), changed, 'cp -p');
});

test("a directory base's index is cached under its identity and read back the same", async () => {
  const t = await tempDir('dir-index');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const identity = await directoryIdentity(`${t}/base`);
  const walked = await openBase(`${t}/base`);
  const first = await openBase(`${t}/base`, { cacheDir: `${t}/cache`, identity });
  const cached = await openBase(`${t}/base`, { cacheDir: `${t}/cache`, identity });
  assert.equal(comparable(first), comparable(walked));
  assert.equal(comparable(cached), comparable(walked));
  assert.equal({ ...cached, entries: undefined }, { ...walked, entries: undefined });
  // Another identity (the directory changed): walked again, not taken from the cache.
  fs.writeFileSync(`${t}/base/etc/new`, 'new\n');
  const changed = await openBase(`${t}/base`, { cacheDir: `${t}/cache`, identity: await directoryIdentity(`${t}/base`) });
  assert.ok(changed.entries.has('etc/new'));
});

test('a directory identity does not follow symlinks out of the base', async () => {
  const t = await tempDir('identity-links');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const first = await directoryIdentity(`${t}/base`);
  fs.mkdirSync(`${t}/sentinel`, { recursive: true });
  fs.writeFileSync(`${t}/sentinel/hosts`, 'not part of the base');
  assert.is(await directoryIdentity(`${t}/base`), first);
});

test('without getfattr a directory base is not read: the error names the attr package, exit 3 (a missing program)', async () => {
  const t = await tempDir('no-attr');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  fs.mkdirSync(`${t}/empty-bin`);
  // A PATH without the attr tools (nor anything else): openBase of a directory needs no other program.
  const script = `import('${path.resolve('src/base/open.ts')}').then((m) => m.openBase(process.argv[1])).then(() => console.log('opened'), (e) => { console.log(e.name, e.exitCode, e.message); })`;
  const run = await execa(process.execPath, ['--import', 'tsx', '-e', script, `${t}/base`], {
    env: { PATH: `${t}/empty-bin` },
    extendEnv: false,
    timeout: 60_000,
  });
  assert.match(
    run.stdout,
    /^MissingProgramError 3 getfattr is not installed on this machine \(needed for the file capabilities and other xattrs of the directory base .*\): install the Debian package attr \(apt-get install attr\)$/,
  );
});

test('a tarball is extracted once: the second open reuses the cache', async () => {
  const t = await tempDir('reuse');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const tarball = await tarOf(`${t}/base`, `${t}/base.tar.gz`);
  const first = await openBase(tarball, { cacheDir: `${t}/cache` });
  fs.writeFileSync(path.join(first.root, 'marker'), 'still the same extraction');
  const second = await openBase(tarball, { cacheDir: `${t}/cache` });
  assert.is(second.root, first.root);
  assert.ok(fs.existsSync(path.join(second.root, 'marker')));
  assert.equal(fs.readdirSync(`${t}/cache/bases`), [first.digest]);
  // The first open hands back the table it extracted, moved with its tree; the second reads it from the cache.
  assert.equal({ ...first, entries: undefined }, { ...second, entries: undefined });
  assert.equal(comparable(first), comparable(second));
  assert.is(first.entries.get('usr/bin/perl')!.content, path.join(second.root, 'usr/bin/perl'));
  assert.ok(fs.existsSync(first.entries.get('usr/bin/perl')!.content!), 'the content path is in the cache, not in the staging directory');
});

test('without privileges, owners and device nodes are in the index only', async () => {
  const t = await tempDir('unpriv');
  await makeBase(`${t}/base`, `${t}/sentinel`);
  const base = await openBase(await tarOf(`${t}/base`, `${t}/base.tar`), { cacheDir: `${t}/cache`, privileged: false });
  assert.equal(base.applied, { owners: false, devices: false, xattrs: false });
  assert.ok(base.warnings.some((w) => w.includes('not applied')));
  assert.is(base.entries.get('usr/bin/ping')!.xattrs?.['security.capability']?.length, 20);
  if (rootCanCheck()) {
    assert.is(base.entries.get('home/user/.profile')!.uid, 1000);
    assert.is(fs.lstatSync(path.join(base.root, 'home/user/.profile')).uid, 0);
    assert.is(base.entries.get('dev/null')!.type, 'char');
    assert.not.ok(fs.existsSync(path.join(base.root, 'dev/null')));
  }
});

test('a missing base and a non-tar file are clear errors', async () => {
  const t = await tempDir('missing');
  const missing = await openBase(`${t}/nope.tar.gz`).catch((e: Error) => e);
  assert.match(String(missing), /does not exist/);
  fs.writeFileSync(`${t}/junk.tar`, Buffer.alloc(4096, 0x41));
  const junk = await openBase(`${t}/junk.tar`, { cacheDir: `${t}/cache` }).catch((e: Error) => e);
  assert.instance(junk, BaseArchiveError);
  assert.match(String(junk), /is this a tar archive/);
});

// ---------------------------------------------------------------------------
// Hostile and broken archives

interface Hostile {
  t: string;
  sentinel: string;
  cache: string;
}

async function hostile(label: string): Promise<Hostile> {
  const t = await tempDir(label);
  const sentinel = `${t}/sentinel`;
  fs.mkdirSync(`${t}/src/etc`, { recursive: true });
  fs.writeFileSync(`${t}/src/x`, 'evil\n');
  fs.writeFileSync(`${t}/src/etc/passwd`, 'evil\n');
  return { t, sentinel, cache: `${t}/cache` };
}

async function rejects(h: Hostile, archive: string, member: string, why: RegExp): Promise<void> {
  const error = await openBase(archive, { cacheDir: h.cache }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(error, BaseArchiveError);
  const e = error as BaseArchiveError;
  assert.is(e.exitCode, 2);
  assert.is(e.member, member);
  assert.match(e.message, why);
  assert.ok(e.message.startsWith(archive), e.message);
  // Nothing outside the cache, and no half-extracted staging left inside it.
  assert.not.ok(fs.existsSync(h.sentinel), `${h.sentinel} was written`);
  assert.equal(fs.existsSync(`${h.cache}/bases`) ? fs.readdirSync(`${h.cache}/bases`) : [], []);
}

test('a member with ".." components is rejected and nothing lands outside', async () => {
  const h = await hostile('dotdot');
  const up = '../'.repeat(24) + h.sentinel.slice(1);
  await execa('tar', ['-cPf', `${h.t}/h.tar`, '-C', `${h.t}/src`, '--transform', `s,^x$,${up}/x,`, 'x']);
  await rejects(h, `${h.t}/h.tar`, `${up}/x`, /has a "\.\." component/);
});

test('an absolute member is rejected', async () => {
  const h = await hostile('abs');
  await execa('tar', ['-cPf', `${h.t}/h.tar.gz`, '-z', '-C', `${h.t}/src`, '--transform', `s,^x$,${h.sentinel}/abs,`, 'x']);
  await rejects(h, `${h.t}/h.tar.gz`, `${h.sentinel}/abs`, /is an absolute path/);
});

test('a write below a symlink the archive made (etc -> outside, then etc/passwd) is rejected', async () => {
  const h = await hostile('symlink');
  fs.mkdirSync(`${h.t}/a`);
  fs.symlinkSync(h.sentinel, `${h.t}/a/etc`);
  fs.mkdirSync(h.sentinel);
  await execa('tar', ['-cf', `${h.t}/h.tar`, '-C', `${h.t}/a`, './etc']);
  await execa('tar', ['-rf', `${h.t}/h.tar`, '-C', `${h.t}/src`, './etc/passwd']);
  const error = (await openBase(`${h.t}/h.tar`, { cacheDir: h.cache }).catch((e: unknown) => e)) as BaseArchiveError;
  assert.instance(error, BaseArchiveError);
  assert.is(error.member, './etc/passwd');
  assert.match(error.message, /its parent "etc" is a symbolic link .*refusing to write through it/);
  assert.equal(fs.readdirSync(h.sentinel), []);
  assert.equal(fs.readdirSync(`${h.cache}/bases`), []);
});

test('the same attack with a relative link (etc -> ../../..) is rejected too', async () => {
  const h = await hostile('relsymlink');
  fs.mkdirSync(`${h.t}/a`);
  fs.symlinkSync('../../../../../../../..', `${h.t}/a/etc`);
  await execa('tar', ['-cf', `${h.t}/h.tar`, '-C', `${h.t}/a`, './etc']);
  await execa('tar', ['-rf', `${h.t}/h.tar`, '-C', `${h.t}/src`, './etc/passwd']);
  await rejects(h, `${h.t}/h.tar`, './etc/passwd', /symbolic link \(-> \.\.\/\.\.\//);
});

test('a hard link pointing outside the archive is rejected', async () => {
  const h = await hostile('hardlink');
  fs.linkSync(`${h.t}/src/x`, `${h.t}/src/y`);
  // 'R': rename only the link target, so member y is a hard link to ../../outside.
  await execa('tar', ['-cPf', `${h.t}/h.tar`, '-C', `${h.t}/src`, '--transform', 's,^x$,../../outside,R', 'x', 'y']);
  await rejects(h, `${h.t}/h.tar`, 'y', /hard link to "\.\.\/\.\.\/outside", outside the archive/);
});

test('a hard link to a member that is not an earlier file is rejected', async () => {
  const h = await hostile('hardlink2');
  fs.linkSync(`${h.t}/src/x`, `${h.t}/src/y`);
  await execa('tar', ['-cPf', `${h.t}/h.tar`, '-C', `${h.t}/src`, '--transform', 's,^x$,etc/shadow,R', 'x', 'y']);
  await rejects(h, `${h.t}/h.tar`, 'y', /not an earlier regular file/);
});

test('a duplicate member is rejected rather than guessed at', async () => {
  const h = await hostile('dup');
  await execa('tar', ['-cf', `${h.t}/h.tar`, '-C', `${h.t}/src`, './x']);
  await execa('tar', ['-rf', `${h.t}/h.tar`, '-C', `${h.t}/src`, './x']);
  await rejects(h, `${h.t}/h.tar`, './x', /appears twice/);
});

test('truncated archives are clear errors: plain, gzip, xz and zstd', async () => {
  const h = await hostile('truncated');
  fs.writeFileSync(`${h.t}/src/big`, Buffer.alloc(300_000, 7));
  const cases: [string, RegExp][] = [
    ['h.tar', /truncated inside this member/],
    ['h.tar.gz', /truncated or corrupt \(gzip: unexpected end of file\)/],
    ['h.tar.xz', /truncated or corrupt \(.*[Uu]nexpected end of input/],
    ['h.tar.zst', /truncated or corrupt/],
  ];
  for (const [name, why] of cases) {
    const full = await tarOf(`${h.t}/src`, `${h.t}/full-${name}`);
    const bytes = fs.readFileSync(full);
    fs.writeFileSync(`${h.t}/${name}`, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const error = await openBase(`${h.t}/${name}`, { cacheDir: h.cache }).catch((e: Error) => e);
    assert.instance(error, BaseArchiveError, name);
    assert.match((error as Error).message, why, `${name}: ${(error as Error).message}`);
    assert.equal(fs.readdirSync(`${h.cache}/bases`), [], name);
  }
  // Cut exactly at a block boundary after the first member: no end-of-archive marker.
  const plain = fs.readFileSync(`${h.t}/full-h.tar`);
  fs.writeFileSync(`${h.t}/cut.tar`, plain.subarray(0, 1024));
  const error = await openBase(`${h.t}/cut.tar`, { cacheDir: h.cache }).catch((e: Error) => e);
  assert.match(String(error), /truncated/);
});

test("a directory is walked in path order, where 'a-b' comes between 'a' and 'a/x', and a cached index reads back the same", async () => {
  const t = await tempDir('order');
  for (const dir of ['a/x', 'a.d', 'é/ü']) fs.mkdirSync(`${t}/base/${dir}`, { recursive: true });
  for (const file of ['a-b', 'a/x/y', 'a0', 'é/ü/z', 'é-']) fs.writeFileSync(`${t}/base/${file}`, file);
  const walked = await openBase(`${t}/base`);
  const paths = [...walked.entries].map((e) => e.path);
  assert.equal(paths, ['', 'a', 'a-b', 'a.d', 'a/x', 'a/x/y', 'a0', 'é', 'é-', 'é/ü', 'é/ü/z']);
  assert.equal(paths, [...paths].sort());
  const identity = await directoryIdentity(`${t}/base`);
  await openBase(`${t}/base`, { cacheDir: `${t}/cache`, identity });
  const cached = await openBase(`${t}/base`, { cacheDir: `${t}/cache`, identity });
  assert.equal(comparable(cached), comparable(walked));
  assert.is(cached.entries.get('é/ü/z')!.size, Buffer.byteLength('é/ü/z'));
});
