/**
 * Initrds the test builds itself (newc cpio, compressed several ways, one
 * wrapped by mkimage as Armbian's uInitrd) are read back, and the NFS-root
 * verdict names what is missing. Needs cpio, gzip, xz-utils, zstd, lz4 and
 * u-boot-tools (mkimage, dumpimage).
 */
import { test } from '../../support/test.js';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { canBootFromNfs, crc32, inspectInitrd, type InitrdInfo } from '../../../src/base/check/initrd.js';
import { RootfsError } from '../../../src/entries/errors.js';
import { rejects } from '../../support/assert.js';

const KVER = '6.1.0-netroot-arm64';
const MOD = `lib/modules/${KVER}`;
const NFS_TREE = {
  init: '#!/bin/sh\n',
  'scripts/nfs': '# initramfs-tools NFS root\n',
  'scripts/local': '# local root\n',
  [`${MOD}/kernel/fs/nfs/nfs.ko.xz`]: 'nfs',
  [`${MOD}/kernel/fs/nfs/nfsv3.ko.xz`]: 'nfsv3',
  [`${MOD}/kernel/net/sunrpc/sunrpc.ko.xz`]: 'sunrpc',
  [`${MOD}/kernel/drivers/net/ethernet/stmicro/stmmac/dwmac-sun8i.ko.xz`]: 'dwmac',
  [`${MOD}/kernel/drivers/net/phy/realtek.ko.xz`]: 'phy',
  [`${MOD}/modules.builtin`]: 'kernel/fs/ext4/ext4.ko\n',
};

let tmp: string;
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-initrd-'));
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const run = (command: string, args: string[], options: { cwd?: string; input?: Buffer | string } = {}) =>
  execa(command, args, { ...options, timeout: 60_000, encoding: 'buffer' });

let counter = 0;
/** A newc cpio of `files` (relative path → content), made by cpio itself. */
async function newc(files: Record<string, string>): Promise<Buffer> {
  const dir = path.join(tmp, `tree-${counter++}`);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  const list = (await run('find', ['.'], { cwd: dir })).stdout;
  return Buffer.from((await run('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: dir, input: Buffer.from(list) })).stdout);
}

async function compress(command: string, args: string[], data: Buffer): Promise<Buffer> {
  return Buffer.from((await run(command, args, { input: data })).stdout);
}

async function save(name: string, data: Buffer): Promise<string> {
  const file = path.join(tmp, name);
  await writeFile(file, data);
  return file;
}

async function uInitrd(name: string, payload: Buffer): Promise<string> {
  const input = await save(`${name}.payload`, payload);
  const out = path.join(tmp, name);
  // Armbian labels the ramdisk "-C gzip" whatever the payload really is; "none" is the honest label.
  await run('mkimage', ['-A', 'arm64', '-O', 'linux', '-T', 'ramdisk', '-C', 'none', '-n', 'uInitrd', '-d', input, out]);
  return out;
}

function assertNfsReady(info: InitrdInfo): void {
  assert.ok(info.hasNfsScript);
  assert.ok(info.files.includes('init'));
  assert.ok(info.files.includes(`${MOD}/kernel/fs/nfs/nfs.ko.xz`));
  assert.equal(info.nfsModules.sort(), [
    `${MOD}/kernel/fs/nfs/nfs.ko.xz`,
    `${MOD}/kernel/fs/nfs/nfsv3.ko.xz`,
    `${MOD}/kernel/net/sunrpc/sunrpc.ko.xz`,
  ]);
  assert.equal(info.netModules.sort(), [
    `${MOD}/kernel/drivers/net/ethernet/stmicro/stmmac/dwmac-sun8i.ko.xz`,
    `${MOD}/kernel/drivers/net/phy/realtek.ko.xz`,
  ]);
  assert.equal(info.builtinModules, ['kernel/fs/ext4/ext4.ko']);
  assert.equal(canBootFromNfs(info), { ok: true, missing: [] });
}

test('plain cpio: the file list matches `cpio -t`', async () => {
  const archive = await newc(NFS_TREE);
  const info = await inspectInitrd(await save('plain.cpio', archive));
  assert.is(info.format, 'raw');
  assert.is(info.compression, 'none');
  const listed = String((await execa('cpio', ['-t', '--quiet'], { input: archive, timeout: 60_000 })).stdout)
    .split('\n')
    .filter((l) => l !== '.' && l !== '');
  assert.equal(info.files, listed);
  assertNfsReady(info);
});

for (const [kind, command, args] of [
  ['gzip', 'gzip', ['-9c']],
  ['zstd', 'zstd', ['-19qc']],
  ['xz', 'xz', ['--check=crc32', '-c']],
  ['lz4', 'lz4', ['-lc']],
  ['lzma', 'xz', ['--format=lzma', '-c']],
] as const) {
  test(`${kind}-compressed initramfs`, async () => {
    const file = await save(`initrd.${kind}`, await compress(command, [...args], await newc(NFS_TREE)));
    const info = await inspectInitrd(file);
    assert.is(info.compression, kind);
    assert.equal(info.segments, [kind]);
    assertNfsReady(info);
  });
}

test('an early uncompressed microcode cpio before the zstd initramfs is read too', async () => {
  const early = await newc({ 'kernel/x86/microcode/GenuineIntel.bin': 'ucode' });
  const main = await compress('zstd', ['-qc'], await newc(NFS_TREE));
  const info = await inspectInitrd(await save('early.img', Buffer.concat([early, main])));
  assert.equal(info.segments, ['cpio', 'zstd']);
  assert.is(info.compression, 'zstd');
  assert.ok(info.files.includes('kernel/x86/microcode/GenuineIntel.bin'));
  assertNfsReady(info);
});

test("Armbian's uInitrd: the 64-byte uImage header is checked and stripped; dumpimage agrees", async () => {
  const file = await uInitrd('uInitrd', await compress('zstd', ['-qc'], await newc(NFS_TREE)));
  const listing = String((await execa('dumpimage', ['-l', file], { timeout: 60_000 })).stdout);
  assert.match(listing, /Image Name:\s+uInitrd/);
  assert.match(listing, /RAMDisk Image/);
  const info = await inspectInitrd(file);
  assert.is(info.format, 'uimage');
  assert.is(info.imageName, 'uInitrd');
  assert.is(info.compression, 'zstd');
  assertNfsReady(info);
});

test('a damaged uInitrd is refused with its data checksum', async () => {
  const file = await uInitrd('broken', await compress('gzip', ['-c'], await newc(NFS_TREE)));
  const bytes = await readFile(file);
  bytes[100] = bytes[100]! ^ 0xff;
  await writeFile(file, bytes);
  const error = await rejects(() => inspectInitrd(file), /data checksum is wrong/);
  assert.instance(error, RootfsError);
});

test('a uImage kernel is not taken for a ramdisk', async () => {
  const input = await save('kernel.bin', Buffer.from('not really a kernel'));
  const out = path.join(tmp, 'uImage');
  await run('mkimage', ['-A', 'arm64', '-O', 'linux', '-T', 'kernel', '-C', 'none', '-a', '0', '-e', '0', '-n', 'k', '-d', input, out]);
  await rejects(() => inspectInitrd(out), /type kernel, not a ramdisk/);
});

test('without scripts/nfs and nfs.ko it cannot boot from NFS, and says what to do', async () => {
  const tree: Record<string, string> = { ...NFS_TREE };
  delete tree['scripts/nfs'];
  delete tree[`${MOD}/kernel/fs/nfs/nfs.ko.xz`];
  const info = await inspectInitrd(await save('local-only.gz', await compress('gzip', ['-c'], await newc(tree))));
  assert.not.ok(info.hasNfsScript);
  const verdict = canBootFromNfs(info);
  assert.is(verdict.ok, false);
  assert.is(verdict.missing.length, 2);
  assert.match(verdict.missing[0]!, /scripts\/nfs/);
  assert.match(verdict.missing[1]!, /nfs\.ko.*MODULES=netboot/);
});

test('no network driver at all is named as missing', async () => {
  const info = await inspectInitrd(await save('nonet.cpio', await newc({ 'scripts/nfs': '', [`${MOD}/kernel/fs/nfs/nfs.ko`]: '' })));
  const verdict = canBootFromNfs(info);
  assert.is(verdict.ok, false);
  assert.equal(verdict.missing.length, 1);
  assert.match(verdict.missing[0]!, /network driver/);
  assert.match(verdict.missing[0]!, /netBuiltIn/, 'without modules.builtin the caller may know better');
  assert.ok(canBootFromNfs(info, { netBuiltIn: true }).ok);
});

test('NFS and the NIC built into the kernel (modules.builtin) need no modules', async () => {
  const tree = {
    'scripts/nfs': '',
    [`${MOD}/modules.builtin`]: 'kernel/fs/nfs/nfs.ko\nkernel/drivers/net/ethernet/stmicro/stmmac/dwmac-sun8i.ko\n',
  };
  const info = await inspectInitrd(await save('builtin.cpio', await newc(tree)));
  assert.equal(info.nfsModules, []);
  assert.equal(canBootFromNfs(info), { ok: true, missing: [] });
});

test("a board's modules (board.modules) are looked for by name, as files or built in, - and _ alike", async () => {
  const tree = {
    ...NFS_TREE,
    [`${MOD}/kernel/drivers/net/virtio_net.ko.xz`]: '',
    [`${MOD}/modules.builtin`]: 'kernel/drivers/virtio/virtio_mmio.ko\n',
  };
  const info = await inspectInitrd(await save('virtio.cpio', await newc(tree)));
  assert.ok(canBootFromNfs(info, { modules: ['virtio_net', 'virtio-mmio'] }).ok);
  const verdict = canBootFromNfs(info, { modules: ['virtio_net', 'net_failover', 'failover'] });
  assert.is(verdict.ok, false);
  assert.equal(verdict.missing.length, 1);
  assert.match(verdict.missing[0]!, /modules net_failover, failover \(board\.modules\)/);
});

test('something that is not an initramfs is refused', async () => {
  await rejects(() => inspectInitrd(path.join(tmp, 'absent')), /does not exist/);
  const text = await save('text', Buffer.from('hello world'));
  await rejects(() => inspectInitrd(text), /neither a cpio archive nor compressed data/);
  const cut = await save('cut.cpio', (await newc(NFS_TREE)).subarray(0, 300));
  await rejects(() => inspectInitrd(cut), /truncated/);
  const zeros = await save('empty', Buffer.alloc(1024));
  await rejects(() => inspectInitrd(zeros), /empty/);
});

test('crc32 is the zlib one U-Boot uses', () => {
  assert.is(crc32(Buffer.from('123456789')), 0xcbf43926);
});
