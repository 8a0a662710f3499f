/**
 * The Raspberry Pi files of a base, as Debian and Raspberry Pi OS install them, laid into a small
 * stand-in base (armbian-base.ts gives it the packages netroot needs). Debian's raspi-firmware puts
 * the GPU firmware in /usr/lib/raspi-firmware (start4.elf, fixup4.dat, …: its file list), its kernel
 * hook copies linux-image-arm64's device trees to /boot/firmware, and /vmlinuz and /initrd.img link
 * to the versioned kernel and initrd. Raspberry Pi OS keeps the Pi 5's kernel_2712.img,
 * initramfs_2712, device tree and the shared start4.elf in /boot/firmware. The real firmware cannot
 * be fetched at test time (raspi-firmware is an arm64 package; this host is amd64): each file holds
 * a line that names it, so a test can tell which file was served where.
 */
import { execa } from 'execa';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

const KERNEL = '6.1.0-21-arm64';

async function put(root: string, rel: string, content: string | Buffer): Promise<void> {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), content);
  await chmod(path.join(root, rel), 0o644);
}

/** A raw gzip'd newc initramfs that mounts an NFS root: initramfs-tools' scripts/nfs, the NFS client and the board's NIC. */
async function initramfs(work: string, version: string, nic: string): Promise<Buffer> {
  const tree = path.join(work, `initramfs-${version}`);
  for (const [name, content] of Object.entries({
    init: '#!/bin/sh\n',
    'scripts/nfs': '# nfs boot\n',
    [`lib/modules/${version}/kernel/fs/nfs/nfs.ko`]: 'module',
    [`lib/modules/${version}/kernel/drivers/net/ethernet/${nic}`]: 'module',
  }))
    await put(tree, name, content);
  const list = (await execa('find', ['.'], { cwd: tree })).stdout;
  const cpio = await execa('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: tree, input: list, encoding: 'buffer' });
  const gz = await execa('gzip', ['-9n'], { input: Buffer.from(cpio.stdout), encoding: 'buffer' });
  return Buffer.from(gz.stdout);
}

/** Adds the Pi 4 (Debian) and Pi 5 (Raspberry Pi OS) boot files to a base made by makeArmbianBase. */
export async function addRaspberryPiFiles(root: string, work: string): Promise<void> {
  // Debian: linux-image-arm64, raspi-firmware and its kernel hook.
  await put(root, `boot/vmlinuz-${KERNEL}`, `Debian arm64 kernel ${KERNEL}\n`);
  await symlink(`boot/vmlinuz-${KERNEL}`, path.join(root, 'vmlinuz'));
  await put(root, `boot/initrd.img-${KERNEL}`, await initramfs(work, KERNEL, 'broadcom/genet/genet.ko'));
  await symlink(`boot/initrd.img-${KERNEL}`, path.join(root, 'initrd.img'));
  for (const file of ['bootcode.bin', 'start.elf', 'fixup.dat', 'start4.elf', 'fixup4.dat', 'start4x.elf', 'fixup4x.dat'])
    await put(root, `usr/lib/raspi-firmware/${file}`, `raspi-firmware ${file}\n`);
  await put(root, `usr/lib/linux-image-${KERNEL}/broadcom/bcm2711-rpi-4-b.dtb`, `Debian ${KERNEL} bcm2711-rpi-4-b.dtb\n`);
  await put(root, 'boot/firmware/bcm2711-rpi-4-b.dtb', `Debian ${KERNEL} bcm2711-rpi-4-b.dtb\n`);
  // Raspberry Pi OS: the Pi 5's kernel, its initramfs and device tree, and the Pi 4's firmware it also ships.
  await put(root, 'boot/firmware/kernel_2712.img', 'Raspberry Pi OS kernel_2712.img\n');
  await put(root, 'boot/firmware/initramfs_2712', await initramfs(work, '6.6.51+rpt-rpi-2712', 'cadence/macb.ko'));
  await put(root, 'boot/firmware/bcm2712-rpi-5-b.dtb', 'Raspberry Pi OS bcm2712-rpi-5-b.dtb\n');
  await put(root, 'boot/firmware/start4.elf', 'Raspberry Pi OS start4.elf\n');
}
