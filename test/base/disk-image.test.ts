/**
 * Disk images are read without mounting: the test makes its own (an ext4
 * filesystem by `mkfs.ext4 -d`, placed into a partitioned disk file with
 * sfdisk and dd) and checks that what comes out keeps modes, owners,
 * symlinks, hard links, device nodes and capabilities. Runs as root (chown,
 * mknod, setcap); needs e2fsprogs, fdisk, xz-utils, libcap2-bin, attr, and
 * fuse2fs for the fuse2fs method (skipped without /dev/fuse).
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { requires } from '../support/requires.js';
import { existsSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { UsageError } from '../../src/errors.js';
import { RootfsError } from '../../src/entries/errors.js';
import { extractDiskImage, findRootPartition, parseLsP, parseStat, type ExtractMethod } from '../../src/base/disk-image.js';
import { rejects } from '../support/assert.js';
import { isRoot } from '../support/rootfs.js';

const MiB = 1024 * 1024;
/** What fuse2fs needs here; whether mounting with it really works is checked once the image exists. */
const fusePresent = existsSync('/dev/fuse') && ['/usr/bin/fuse2fs', '/sbin/fuse2fs', '/usr/sbin/fuse2fs'].some((p) => existsSync(p));

let tmp: string;
/** MBR: 1 empty FAT-typed, 2 a larger ext4 without /etc/os-release, 3 the root. */
let mbrDisk: string;
/** GPT: an EFI system partition and the root, xz-compressed. */
let gptDiskXz: string;
let fuseUsable = false;

const run = (command: string, args: string[], options: { cwd?: string; input?: string } = {}) =>
  execa(command, args, { ...options, timeout: 120_000 });

async function makeStaging(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'etc'), { recursive: true });
  await mkdir(path.join(dir, 'usr/bin'), { recursive: true });
  await mkdir(path.join(dir, 'dev'));
  await mkdir(path.join(dir, 'tmp'));
  await chmod(path.join(dir, 'tmp'), 0o1777);
  await writeFile(path.join(dir, 'etc/os-release'), 'PRETTY_NAME="Armbian 25.2 bookworm"\nID=debian\n');
  await writeFile(path.join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  await chown(path.join(dir, 'etc/shadow'), 0, 42);
  await writeFile(path.join(dir, 'usr/bin/perl'), '#!perl\n', { mode: 0o755 });
  await link(path.join(dir, 'usr/bin/perl'), path.join(dir, 'usr/bin/perl5.36.0'));
  await symlink('perl', path.join(dir, 'usr/bin/perl5'));
  await run('cp', ['/bin/true', path.join(dir, 'usr/bin/ping')]);
  await run('setcap', ['cap_net_raw+ep', path.join(dir, 'usr/bin/ping')]);
  await writeFile(path.join(dir, 'usr/bin/su'), 'su', { mode: 0o755 });
  await chmod(path.join(dir, 'usr/bin/su'), 0o4755);
  await run('mknod', ['-m', '666', path.join(dir, 'dev/null'), 'c', '1', '3']);
  await run('mknod', ['-m', '600', path.join(dir, 'dev/initctl'), 'p']);
  await mkdir(path.join(dir, 'home/pi'), { recursive: true });
  await chown(path.join(dir, 'home/pi'), 1000, 1000);
  await symlink('../etc/os-release', path.join(dir, 'home/pi/link'));
  await run('chown', ['-h', '1000:1000', path.join(dir, 'home/pi/link')]);
  await writeFile(path.join(dir, 'home/pi/a file with spaces'), 'x');
  await run('setfattr', ['-n', 'user.comment', '-v', 'kept', path.join(dir, 'home/pi/a file with spaces')]);
}

async function mkfs(staging: string | undefined, file: string, size: number): Promise<void> {
  await run('mkfs.ext4', ['-q', '-F', ...(staging ? ['-d', staging] : []), file, `${size / MiB}M`]);
}

/** A disk file with the given partitions (sfdisk script lines) and filesystems dd'ed into place at their starts. */
async function makeDisk(
  file: string,
  size: number,
  label: 'dos' | 'gpt',
  parts: { line: string; start: number; fs?: string }[],
): Promise<void> {
  await run('truncate', ['-s', String(size), file]);
  await run('sfdisk', ['-q', file], { input: `label: ${label}\n${parts.map((p) => p.line).join('\n')}\n` });
  for (const p of parts) {
    if (p.fs) await run('dd', [`if=${p.fs}`, `of=${file}`, 'bs=512', `seek=${p.start}`, 'conv=notrunc,sparse', 'status=none']);
  }
}

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-image-'));
  // Building the images needs root; without it every test below is registered as skipped (or, under CI, failing) by requires().
  if (isRoot) await makeImages();
});

/** The MBR and GPT disk images the tests read, built in tmp. */
async function makeImages(): Promise<void> {
  const staging = path.join(tmp, 'staging');
  await makeStaging(staging);
  await mkfs(staging, path.join(tmp, 'root.ext4'), 32 * MiB);
  await mkfs(undefined, path.join(tmp, 'data.ext4'), 40 * MiB);
  mbrDisk = path.join(tmp, 'mbr.img');
  await makeDisk(mbrDisk, 80 * MiB, 'dos', [
    { line: 'start=2048, size=4096, type=c', start: 2048 },
    { line: 'start=6144, size=81920, type=83', start: 6144, fs: path.join(tmp, 'data.ext4') },
    { line: 'start=88064, size=65536, type=83', start: 88064, fs: path.join(tmp, 'root.ext4') },
  ]);
  const gpt = path.join(tmp, 'gpt.img');
  await makeDisk(gpt, 40 * MiB, 'gpt', [
    { line: 'start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B', start: 2048 },
    { line: 'start=10240, size=65536, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4', start: 10240, fs: path.join(tmp, 'root.ext4') },
  ]);
  await run('xz', ['-T1', '-0', gpt]);
  gptDiskXz = `${gpt}.xz`;
  fuseUsable = await canMountWithFuse2fs(path.join(tmp, 'root.ext4'));
}

/** fuse2fs needs the program, /dev/fuse and the right to mount; containers often lack the last two. */
async function canMountWithFuse2fs(fs: string): Promise<boolean> {
  if (!existsSync('/dev/fuse')) return false;
  const mountpoint = path.join(tmp, 'fuse-probe');
  await mkdir(mountpoint);
  try {
    const mounted = await execa('fuse2fs', ['-o', 'ro', fs, mountpoint], { timeout: 30_000, reject: false });
    if (mounted.exitCode !== 0) return false;
    await execa('umount', [mountpoint], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  } finally {
    await rm(mountpoint, { recursive: true, force: true });
  }
}

test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function inode(file: string): Promise<number> {
  return (await lstat(file)).ino;
}

async function assertFaithful(dest: string): Promise<void> {
  const mode = async (p: string) => (await lstat(path.join(dest, p))).mode & 0o7777;
  const owner = async (p: string) => {
    const s = await lstat(path.join(dest, p));
    return `${s.uid}:${s.gid}`;
  };
  assert.match(await readFile(path.join(dest, 'etc/os-release'), 'utf8'), /Armbian/);
  assert.is(await owner('etc/os-release'), '0:0');
  assert.is(await owner('etc/shadow'), '0:42');
  assert.is(await mode('etc/shadow'), 0o640);
  assert.is(await mode('tmp'), 0o1777, 'sticky bit');
  assert.is(await mode('usr/bin/su'), 0o4755, 'setuid bit');
  assert.is(await inode(path.join(dest, 'usr/bin/perl')), await inode(path.join(dest, 'usr/bin/perl5.36.0')), 'hard link');
  assert.is((await lstat(path.join(dest, 'usr/bin/perl'))).nlink, 2);
  assert.is(await readlink(path.join(dest, 'usr/bin/perl5')), 'perl');
  assert.is(await readlink(path.join(dest, 'home/pi/link')), '../etc/os-release');
  assert.is(await owner('home/pi/link'), '1000:1000', 'symlink owner');
  assert.is(await owner('home/pi'), '1000:1000');
  const getcap = await run('getcap', [path.join(dest, 'usr/bin/ping')]);
  assert.match(getcap.stdout, /cap_net_raw[=+]ep/);
  const comment = await run('getfattr', ['--only-values', '-n', 'user.comment', path.join(dest, 'home/pi/a file with spaces')]);
  assert.is(comment.stdout, 'kept');
  const devnull = await lstat(path.join(dest, 'dev/null'));
  assert.ok(devnull.isCharacterDevice());
  assert.is(devnull.rdev, (1 << 8) | 3);
  assert.is(devnull.mode & 0o7777, 0o666);
  assert.ok((await lstat(path.join(dest, 'dev/initctl'))).isFIFO());
}

/** `find`-style listing of a tree and all its xattrs, for comparing two extractions. */
async function listing(root: string): Promise<string> {
  const { stdout } = await run('find', ['.', '-printf', '%M %U:%G %n %s %T@ %p %l\\n'], { cwd: root });
  // getfattr complains about the dangling symlink home/pi/link but dumps everything else.
  const xattrs = await execa('getfattr', ['-R', '-P', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, timeout: 120_000, reject: false });
  return `${stdout.split('\n').sort().join('\n')}\n${xattrs.stdout}`;
}

const methods: ExtractMethod[] = ['debugfs', 'fuse2fs'];
for (const method of methods) {
  requires(isRoot && (method !== 'fuse2fs' || fusePresent), method === 'fuse2fs' ? 'needs root, fuse2fs and /dev/fuse' : 'needs root')(
    `${method}: the root partition of an MBR image, with everything a root needs kept`,
    async () => {
      if (method === 'fuse2fs') assert.ok(fuseUsable, 'fuse2fs is installed and /dev/fuse exists, but mounting with it failed');
      const dest = path.join(tmp, `out-${method}`);
      const result = await extractDiskImage(mbrDisk, dest, { method });
      assert.is(result.method, method);
      assert.equal(result.partition, { index: 3, start: 88064 * 512, size: 65536 * 512, type: '83' });
      await assertFaithful(dest);
    },
  );
}

requires(isRoot && fusePresent, 'needs root, fuse2fs and /dev/fuse')('both methods give the same tree', async () => {
  assert.ok(fuseUsable, 'fuse2fs is installed and /dev/fuse exists, but mounting with it failed');
  assert.fixture(await listing(path.join(tmp, 'out-debugfs')), await listing(path.join(tmp, 'out-fuse2fs')));
});

requires(isRoot, 'needs root to build the image')(
  'unprivileged: device nodes and capabilities are skipped with warnings, the rest is extracted',
  async () => {
    const dest = path.join(tmp, 'out-unprivileged');
    const result = await extractDiskImage(mbrDisk, dest, { privileged: false });
    assert.not.ok(existsSync(path.join(dest, 'dev/null')));
    assert.ok((await lstat(path.join(dest, 'dev/initctl'))).isFIFO());
    assert.is(await inode(path.join(dest, 'usr/bin/perl')), await inode(path.join(dest, 'usr/bin/perl5.36.0')));
    const warnings = result.warnings.join('\n');
    assert.match(warnings, /1 device node\(s\) not created: only root may \(first: \/dev\/null\)/);
    assert.match(warnings, /1 xattr\(s\) not applied, only root may set them: \/usr\/bin\/ping security.capability/);
    assert.match(warnings, /owners not applied/);
  },
);

requires(isRoot, 'needs root')('a GPT .img.xz is decompressed once into the cache and reused', async () => {
  const cacheDir = path.join(tmp, 'cache');
  const logs: string[] = [];
  const first = await extractDiskImage(gptDiskXz, path.join(tmp, 'gpt-1'), { cacheDir, log: (l) => logs.push(l) });
  assert.is(first.partition.index, 2);
  assert.is(first.partition.type.toLowerCase(), '0fc63daf-8483-4772-8e79-3d69d8477de4');
  await assertFaithful(path.join(tmp, 'gpt-1'));
  const cached = await readdir(path.join(cacheDir, 'images'));
  assert.is(cached.length, 1);
  assert.match(cached[0]!, /^[0-9a-f]{64}\.img$/);
  await extractDiskImage(gptDiskXz, path.join(tmp, 'gpt-2'), { cacheDir, log: (l) => logs.push(l) });
  assert.ok(logs.some((l) => l.startsWith('decompressed')));
  assert.ok(logs.some((l) => l.includes('decompressed earlier')));
  // Without a cache the temporary copy goes away.
  const before = (await readdir(os.tmpdir())).filter((n) => n.startsWith('netroot-image-')).length;
  await extractDiskImage(gptDiskXz, path.join(tmp, 'gpt-3'));
  assert.is((await readdir(os.tmpdir())).filter((n) => n.startsWith('netroot-image-')).length, before);
});

requires(isRoot, 'needs root')('an image with no Linux partition is refused, naming the image and what it has', async () => {
  const disk = path.join(tmp, 'fat-only.img');
  await makeDisk(disk, 8 * MiB, 'dos', [{ line: 'start=2048, type=c', start: 2048 }]);
  const dest = path.join(tmp, 'fat-out');
  const error = await rejects(() => extractDiskImage(disk, dest), /no Linux partition/);
  assert.instance(error, RootfsError);
  assert.is((error as RootfsError).exitCode, 2);
  assert.match(error.message, disk);
  assert.match(error.message, /1: type c/);
  assert.not.ok(existsSync(dest), 'nothing left behind');
});

requires(isRoot, 'needs root')(
  'a Linux partition without an ext filesystem, a file without a partition table, bad destinations',
  async () => {
    const blank = path.join(tmp, 'blank-linux.img');
    await makeDisk(blank, 8 * MiB, 'dos', [{ line: 'start=2048, type=83', start: 2048 }]);
    await rejects(() => findRootPartition(blank), /no Linux partition holds an ext2\/3\/4 filesystem/);
    const junk = path.join(tmp, 'junk.img');
    await writeFile(junk, Buffer.alloc(64 * 1024, 7));
    await rejects(() => extractDiskImage(junk, path.join(tmp, 'junk-out')), /no partition table/);
    const missing = await rejects(() => extractDiskImage(path.join(tmp, 'nope.img'), path.join(tmp, 'x')), /cannot be read/);
    assert.instance(missing, UsageError);
    const full = path.join(tmp, 'full');
    await mkdir(full);
    await writeFile(path.join(full, 'keep'), '');
    await rejects(() => extractDiskImage(mbrDisk, full), /is not empty/);
    assert.equal(await readdir(full), ['keep']);
  },
);

test('debugfs listings are parsed exactly', () => {
  const ls = '/2/040755/0/0/.//\n/2/040755/0/0/..//\n/13/104755/0/0/su/6/\n/14/120777/1000/1000/a b/8/\n/0/000000/0/0//0/\n';
  assert.equal(parseLsP(ls, ''), [
    { path: '', ino: 2, mode: 0o40755, uid: 0, gid: 0 },
    { path: 'su', ino: 13, mode: 0o104755, uid: 0, gid: 0 },
    { path: 'a b', ino: 14, mode: 0o120777, uid: 1000, gid: 1000 },
  ]);
  assert.equal(parseLsP('/15/040755/0/0/.//\n/16/020644/0/0/null/0/\n', 'dev'), [
    { path: 'dev/null', ino: 16, mode: 0o20644, uid: 0, gid: 0 },
  ]);
  assert.equal(
    parseStat('Inode: 17   Type: character special\n mtime: 0x6b082c6d:00000000 -- Thu\nDevice major/minor number: 01:03 (hex 01:03)\n'),
    {
      major: 1,
      minor: 3,
      mtime: 0x6b082c6d,
    },
  );
});
