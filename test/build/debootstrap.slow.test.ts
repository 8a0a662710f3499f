/**
 * The opz3-netboot profile's base, debootstrap:bookworm:arm64:…: a real Debian
 * arm64 root made by mmdebstrap under qemu-user (about 30 minutes the first
 * time, then cached in the user's cache directory), with the cluster's
 * packages and a kernel whose initrd is built with MODULES=netboot and the
 * emulated board's virtio NIC. The lab's netboot-arm64 scenario boots the
 * same base, so it is built once for both.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../../src/build.js';
import { silentReporter } from '../../src/progress.js';
import { defaultCacheDir } from '../../src/base/open.js';
import { canBootFromNfs, inspectInitrd } from '../../src/base/check/initrd.js';

const PROFILE = path.resolve('profiles/opz3-netboot.yaml');
let tmp: string;

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-debootstrap-'));
  await writeFile(path.join(tmp, 'k3s'), '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('opz3-netboot (debootstrap:bookworm:arm64): bootable-looking trees and artifacts for every node', async () => {
  const result = await build({
    profile: PROFILE,
    cwd: tmp,
    secrets: path.join(tmp, 'secrets.yaml'),
    cacheDir: defaultCacheDir(),
    k3sBinary: path.join(tmp, 'k3s'),
    formats: ['tree', 'tar'],
    compress: ['gz'],
    out: path.join(tmp, 'out'),
    env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' },
    reporter: silentReporter,
  });
  assert.is(result.base?.arch, 'arm64');
  const root = path.join(tmp, 'out/opz3-netboot/rootfs/opz3-1-onder');
  // Really arm64, with the cluster's programs.
  // ELF header: magic, 64-bit class (2), little-endian (1), e_machine 183 = EM_AARCH64.
  const elf = readFileSync(path.join(root, 'usr/sbin/keepalived')).subarray(0, 20);
  assert.equal([elf.subarray(0, 4).toString('latin1'), elf[4], elf[5], elf.readUInt16LE(18)], ['\x7fELF', 2, 1, 183]);
  for (const program of [
    'usr/sbin/keepalived',
    'usr/sbin/mariadbd',
    'usr/lib/galera/libgalera_smm.so',
    'usr/sbin/iscsid',
    'sbin/mount.nfs',
  ]) {
    assert.ok(existsSync(path.join(root, program)), program);
  }
  for (const secret of ['etc/keepalived/keepalived.conf', 'etc/rancher/k3s/config.yaml', 'etc/netroot/k3s-datastore.sql']) {
    const st = statSync(path.join(root, secret));
    assert.is((st.mode & 0o777).toString(8), '600', secret);
    assert.equal([st.uid, st.gid], [0, 0], secret);
  }
  // From the base: perl-base ships /usr/bin/perl and perl5.36.0 as one file; /vmlinuz is a symlink; ping has a capability.
  assert.is(statSync(path.join(root, 'usr/bin/perl')).ino, statSync(path.join(root, 'usr/bin/perl5.36.0')).ino, 'hard link');
  assert.match(readlinkSync(path.join(root, 'vmlinuz')), /^boot\/vmlinuz-/);
  assert.match((await execa('getcap', [path.join(root, 'usr/bin/ping')])).stdout, /cap_net_raw[=+]ep/);
  // The kernel and an initrd that can mount the NFS root went to TFTP.
  const boot = path.join(tmp, 'out/opz3-netboot/tftp/boot/qemu-virt-arm64');
  assert.ok(statSync(path.join(boot, 'vmlinuz')).size > 1_000_000, 'kernel');
  // With the virtio NIC's modules (board.modules), so that no regeneration was needed.
  const verdict = canBootFromNfs(await inspectInitrd(path.join(boot, 'initrd.img')), {
    modules: ['virtio_net', 'virtio_mmio', 'net_failover', 'failover'],
  });
  assert.ok(verdict.ok, verdict.missing.join('; '));
  const check = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(tmp, 'out/opz3-netboot/artifacts'), reject: false });
  assert.is(check.exitCode, 0, check.stdout);
  assert.ok(readFileSync(path.join(tmp, 'out/opz3-netboot/artifacts/SHA256SUMS'), 'utf8').includes('opz3-4-top.tar.gz'));
});
