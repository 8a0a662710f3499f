/**
 * When a base's initrd cannot mount an NFS root: what is decided before any
 * chroot runs (the uInitrd remake, a base that cannot be regenerated, a build
 * without root). The regeneration itself runs in test/build/netboot.slow.test.ts.
 */
import { test } from '../support/test.js';
import { binWithout } from '../support/bin-without.js';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EXIT_MISSING_PROGRAM, MissingProgramError } from '../../src/errors.js';
import type { Cluster } from '../../src/profile/resolve.js';
import { openBase } from '../../src/base/open.js';
import { kernelVersions, netbootBase, uInitrdPlan } from '../../src/base/netboot.js';
import { hostArchitecture } from '../../src/base/debootstrap.js';
import { makeArmbianBase } from '../support/armbian-base.js';
import { rejects } from '../support/assert.js';

let tmp: string;
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-netboot-'));
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** netbootBase reads only the boards' initrd paths from the cluster. */
const cluster = { nodes: [{ board: { initrd: '/boot/uInitrd' } }, { board: { initrd: '/boot/uInitrd' } }] } as unknown as Cluster;

test("Armbian's uInitrd-VERSION is remade from initrd.img-VERSION with mkimage, as its post-update hook does", () => {
  assert.equal(uInitrdPlan('boot/uInitrd-6.6.31-current-sunxi64', true, 'arm64'), {
    from: 'boot/initrd.img-6.6.31-current-sunxi64',
    to: 'boot/uInitrd-6.6.31-current-sunxi64',
    args: ['-A', 'arm64', '-O', 'linux', '-T', 'ramdisk', '-C', 'none', '-n', 'uInitrd', '-d'],
  });
  assert.is(uInitrdPlan('boot/uInitrd-6.1.0-armmp', true, 'armhf')!.args[1], 'arm');
});

test('a raw initrd needs no mkimage: update-initramfs writes it itself', () => {
  assert.is(uInitrdPlan('boot/initrd.img-6.1.0-56-amd64', false, 'amd64'), undefined);
});

test('a U-Boot image without a version in its name is refused: which kernel it wraps is unknown', () => {
  assert.throws(() => uInitrdPlan('boot/uInitrd', true, 'arm64'), /not named uInitrd-VERSION/);
});

async function nonfsBase(name: string, extra: (root: string) => Promise<void> = async () => undefined): Promise<string> {
  const root = path.join(tmp, name);
  await makeArmbianBase(root, path.join(tmp, `work-${name}`), { initrdWithoutNfs: true });
  await extra(root);
  return root;
}

const withInitramfsTools = async (root: string) => {
  await mkdir(path.join(root, 'usr/sbin'), { recursive: true });
  await writeFile(path.join(root, 'usr/sbin/update-initramfs'), '#!/bin/sh\n', { mode: 0o755 });
};
const withModules = async (root: string) => {
  // lib -> usr/lib in the stand-in, as on a merged-/usr system.
  await mkdir(path.join(root, 'usr/lib/modules/6.6.31-current-sunxi64'), { recursive: true });
  await writeFile(path.join(root, 'usr/lib/modules/6.6.31-current-sunxi64/modules.dep'), '');
};

async function refused(root: string, pattern: RegExp, privileged = true): Promise<void> {
  const cacheDir = path.join(tmp, `cache-${path.basename(root)}`);
  const base = await openBase(root, { cacheDir });
  const error = await rejects(() => netbootBase(base, cluster, { cacheDir, identity: 'test', arch: 'arm64', privileged }), pattern);
  assert.is((error as { exitCode?: number }).exitCode, 2);
  assert.match(error.message, /the initrd \/boot\/uInitrd in the base cannot mount an NFS root: it lacks/);
  assert.not.ok(existsSync(path.join(cacheDir, 'netboot')), 'nothing was copied');
}

test('a base without initramfs-tools cannot be regenerated, and the error says what to do', async () => {
  await refused(
    await nonfsBase('no-tools', withModules),
    /has none \(no \/usr\/sbin\/update-initramfs\): install initramfs-tools in the base, or regenerate it in the base yourself: MODULES=netboot/,
  );
});

test('a base without kernel modules cannot be regenerated', async () => {
  await refused(await nonfsBase('no-modules', withInitramfsTools), /the base has none \(no \/lib\/modules\/VERSION\/modules\.dep\)/);
});

test('without root the chroot cannot run: the error says to run as root or do it by hand', async () => {
  const root = await nonfsBase('unprivileged', async (r) => {
    await withInitramfsTools(r);
    await withModules(r);
  });
  await refused(root, /needs root: run build-images as root \(e\.g\. with sudo\), or regenerate it in the base yourself/, false);
});

test('kernel versions are found through lib -> usr/lib', async () => {
  const base = await openBase(await nonfsBase('versions', withModules));
  assert.equal(kernelVersions(base), ['6.6.31-current-sunxi64']);
});

test('a base whose initrd can mount an NFS root is used as it is', async () => {
  const root = path.join(tmp, 'fine');
  await makeArmbianBase(root, path.join(tmp, 'work-fine'));
  const base = await openBase(root);
  const result = await netbootBase(base, cluster, {
    cacheDir: path.join(tmp, 'cache-fine'),
    identity: 'fine',
    arch: 'arm64',
    privileged: false,
  });
  assert.is(result.base, base);
  assert.is(result.identity, 'fine');
  assert.is(result.regenerated, false);
});

test('a regeneration checks the programs it runs before copying anything: without mkimage, a uInitrd cannot be remade', async () => {
  const root = await nonfsBase('no-mkimage', async (r) => {
    await withInitramfsTools(r);
    await withModules(r);
  });
  const cacheDir = path.join(tmp, 'cache-no-mkimage');
  const base = await openBase(root, { cacheDir });
  // This machine without u-boot-tools: a PATH of every program here but mkimage.
  const bin = await binWithout(tmp, ['mkimage']);
  const saved = process.env.PATH;
  process.env.PATH = bin;
  try {
    // The host's own architecture: no qemu-user needed, so the program check is what stops it.
    const error = await rejects(() =>
      netbootBase(base, cluster, { cacheDir, identity: 'no-mkimage', arch: hostArchitecture(), privileged: true }),
    );
    assert.instance(error, MissingProgramError);
    assert.is((error as MissingProgramError).exitCode, EXIT_MISSING_PROGRAM);
    assert.match(
      error.message,
      /^mkimage is not installed on this machine \(needed for remaking the board's uInitrd\): install the Debian package u-boot-tools/,
    );
  } finally {
    process.env.PATH = saved;
  }
  assert.not.ok(existsSync(path.join(cacheDir, 'netboot')), 'nothing was copied');
});
