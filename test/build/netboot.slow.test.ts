/**
 * A tarball base whose initrd cannot mount an NFS root: the build regenerates
 * the initramfs for real (MODULES=netboot, update-initramfs in a chroot of a
 * private copy), the initrd it puts on TFTP passes the NFS check, and the next
 * build reuses the regenerated copy. The base is made from the amd64 Debian
 * base mmdebstrap builds into the user's cache (built here if absent), trimmed
 * of what neither the check nor update-initramfs needs, so the test stays in
 * about a minute on a native amd64 chroot.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build, type BuildOptions } from '../../src/build.js';
import { scratchBuildOptions } from '../support/build.js';
import { defaultCacheDir } from '../../src/base/open.js';
import { buildDebootstrapBase } from '../../src/base/debootstrap.js';
import { canBootFromNfs, inspectInitrd } from '../../src/base/check/initrd.js';

const SPEC =
  'debootstrap:bookworm:amd64:dbus,e2fsprogs,galera-4,iproute2,keepalived,linux-image-amd64,mariadb-server,nfs-common,python3,rsync,stunnel4,systemd-sysv';
/** Not read by the NFS check or update-initramfs; dropping them halves the base. */
const TRIM = [
  './var/lib/mysql/*',
  './usr/share/locale/*',
  './usr/share/doc/*',
  './usr/share/man/*',
  ...['drivers/gpu', 'drivers/media', 'drivers/infiniband', 'drivers/iio', 'drivers/staging', 'sound', 'drivers/net/wireless'].map(
    (d) => `./usr/lib/modules/*/kernel/${d}`,
  ),
];
let tmp: string;

test.before(async () => {
  if (process.arch !== 'x64') throw new Error('this test chroots into an amd64 base natively; run it on amd64');
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-netboot-build-'));
  await writeFile(path.join(tmp, 'k3s'), '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
  // Debian's kernel in place of a board's; the base has no open-iscsi, so no Longhorn.
  await writeFile(
    path.join(tmp, 'debian-amd64.yaml'),
    `extends: ${path.resolve('profiles/opz3.yaml')}\nboard: { name: debian-amd64, kernel: /vmlinuz, initrd: /initrd.img, fdt: null, console: ttyS0 }\nlonghorn: { enabled: false }\n`,
  );
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function options(out: string, base: string): BuildOptions {
  return scratchBuildOptions(tmp, path.join(tmp, 'debian-amd64.yaml'), base, out);
}

/** An initramfs made without MODULES=netboot, as far as the NFS check goes: no scripts/nfs, no NFS or NIC modules. */
async function initrdWithoutNfs(file: string): Promise<void> {
  const tree = path.join(tmp, 'initrd-tree');
  await mkdir(path.join(tree, 'scripts'), { recursive: true });
  await writeFile(path.join(tree, 'init'), '#!/bin/sh\n', { mode: 0o755 });
  await writeFile(path.join(tree, 'scripts/local'), '# local root only\n');
  const cpio = await execa('cpio', ['-o', '-H', 'newc', '--quiet'], {
    cwd: tree,
    input: 'init\nscripts\nscripts/local\n',
    encoding: 'buffer',
  });
  const gz = await execa('gzip', ['-9n'], { input: Buffer.from(cpio.stdout), encoding: 'buffer' });
  await writeFile(file, Buffer.from(gz.stdout));
}

const nfsVerdict = async (file: string) => canBootFromNfs(await inspectInitrd(file));

test('a tarball base whose initrd cannot mount NFS is regenerated once, in a copy, and its initrd goes to TFTP', async () => {
  const debootstrap = await buildDebootstrapBase(SPEC, { cacheDir: defaultCacheDir() });
  const root = path.join(tmp, 'root');
  await mkdir(root);
  await execa('tar', ['-xpf', debootstrap, '-C', root, ...TRIM.map((t) => `--exclude=${t}`)]);
  await rm(path.join(root, 'etc/initramfs-tools/conf.d/netroot-netboot.conf'));
  const initrdName = readdirSync(path.join(root, 'boot')).find((n) => n.startsWith('initrd.img-'))!;
  await initrdWithoutNfs(path.join(root, 'boot', initrdName));
  assert.not.ok((await nfsVerdict(path.join(root, 'boot', initrdName))).ok, 'the base starts without NFS');
  const tarball = path.join(tmp, 'base.tar');
  await execa('tar', ['--numeric-owner', '--xattrs', '-cf', tarball, '-C', root, '.']);
  await rm(root, { recursive: true, force: true });

  const first = await build(options('out1', tarball));
  assert.is(first.base?.initrdRegenerated, 'now');
  const tftpInitrd = (out: string) => path.join(tmp, out, 'opz3/tftp/boot/debian-amd64/initrd.img');
  const verdict = await nfsVerdict(tftpInitrd('out1'));
  assert.ok(verdict.ok, verdict.missing.join('; '));
  // The nodes get the netboot setting too, so a kernel update on a node keeps an initrd that boots from NFS.
  const conf = path.join(tmp, 'out1/opz3/rootfs/opz3-1-onder/etc/initramfs-tools/conf.d/netroot-netboot.conf');
  assert.match(readFileSync(conf, 'utf8'), /^MODULES=netboot$/m);
  // The cached extraction of the tarball is left as it was.
  const bases = path.join(tmp, 'cache/bases');
  const extracted = path.join(
    bases,
    readdirSync(bases).find((n) => !n.startsWith('.'))!,
    'tree',
  );
  assert.not.ok((await nfsVerdict(path.join(extracted, 'boot', initrdName))).ok, 'the extraction was not changed');
  assert.not.ok(existsSync(path.join(extracted, 'etc/initramfs-tools/conf.d/netroot-netboot.conf')));

  // Another output directory: the base is read again, and the regenerated copy is reused.
  const second = await build(options('out2', tarball));
  assert.is(second.base?.initrdRegenerated, 'cached');
  assert.equal(readFileSync(tftpInitrd('out2')), readFileSync(tftpInitrd('out1')));
  // The first output again: nothing changed, so the base is not read at all.
  const third = await build(options('out1', tarball));
  assert.is(third.base?.reused, true);
});
