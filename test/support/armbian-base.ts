/**
 * A small stand-in for an Armbian root filesystem: what netroot reads from a
 * base (dpkg database, /boot symlinks to versioned kernel, uInitrd and device
 * tree) and what it must preserve (a hard link, symlinks, a file capability,
 * setuid) or remove (the image's SSH host keys).
 */
import { execa } from 'execa';
import { chmod, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

const PACKAGES = [
  'base-files',
  'dpkg',
  'e2fsprogs',
  'galera-4',
  'keepalived',
  'mariadb-server',
  'nfs-common',
  'open-iscsi',
  'python3',
  'rsync',
  'stunnel4',
  'mariadb-backup',
  'systemd-resolved',
  'systemd-timesyncd',
];

export interface BaseOptions {
  arch?: string;
  /** Packages left out of the dpkg database. */
  without?: string[];
  /** Build the initrd without the NFS client and boot script. */
  initrdWithoutNfs?: boolean;
}

async function put(root: string, rel: string, content: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), content);
  await chmod(path.join(root, rel), mode);
}

function dpkgStatus(arch: string, without: string[]): string {
  return PACKAGES.filter((p) => !without.includes(p))
    .map((p) => `Package: ${p}\nStatus: install ok installed\nPriority: optional\nArchitecture: ${arch}\nVersion: 1.0\nDescription: ${p}\n`)
    .join('\n');
}

/** A uInitrd (U-Boot legacy ramdisk around a gzip'd newc cpio) the way Armbian ships one. */
async function uInitrd(root: string, work: string, withNfs: boolean): Promise<void> {
  const tree = path.join(work, 'initrd-tree');
  const files: Record<string, string> = {
    init: '#!/bin/sh\n',
    'lib/modules/6.6.31-current-sunxi64/kernel/drivers/net/ethernet/stmicro/stmmac/dwmac-sun8i.ko': 'module',
    ...(withNfs ? { 'scripts/nfs': '# nfs boot\n', 'lib/modules/6.6.31-current-sunxi64/kernel/fs/nfs/nfs.ko': 'module' } : {}),
  };
  for (const [name, content] of Object.entries(files)) await put(tree, name, content);
  const list = (await execa('find', ['.'], { cwd: tree })).stdout;
  const cpio = await execa('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: tree, input: list, encoding: 'buffer' });
  const gz = await execa('gzip', ['-9n'], { input: Buffer.from(cpio.stdout), encoding: 'buffer' });
  await writeFile(path.join(work, 'initrd.gz'), Buffer.from(gz.stdout));
  await mkdir(path.join(root, 'boot'), { recursive: true });
  await execa('mkimage', [
    '-A',
    'arm64',
    '-O',
    'linux',
    '-T',
    'ramdisk',
    '-C',
    'gzip',
    '-n',
    'uInitrd',
    '-d',
    path.join(work, 'initrd.gz'),
    path.join(root, 'boot/uInitrd-6.6.31-current-sunxi64'),
  ]);
}

export async function makeArmbianBase(root: string, work: string, options: BaseOptions = {}): Promise<void> {
  await mkdir(root, { recursive: true });
  await mkdir(work, { recursive: true });
  await put(root, 'var/lib/dpkg/status', dpkgStatus(options.arch ?? 'arm64', options.without ?? []));
  await put(root, 'etc/os-release', 'PRETTY_NAME="Armbian 24.5.1 bookworm"\nID=debian\n');
  await put(root, 'etc/hostname', 'orangepizero3\n');
  await put(root, 'etc/fstab', 'UUID=1234 / ext4 defaults,noatime,commit=600,errors=remount-ro 0 1\n');
  await put(root, 'etc/ssh/sshd_config', 'Include /etc/ssh/sshd_config.d/*.conf\n');
  await put(root, 'etc/ssh/ssh_host_ed25519_key', 'THE IMAGE-WIDE KEY\n', 0o600);
  await put(root, 'etc/ssh/ssh_host_rsa_key', 'THE IMAGE-WIDE RSA KEY\n', 0o600);
  await put(root, 'etc/ssh/ssh_host_rsa_key.pub', 'ssh-rsa AAAA image\n');
  await put(root, 'etc/machine-id', '0123456789abcdef0123456789abcdef\n', 0o444);
  await put(root, 'root/.not_logged_in_yet', '');
  await symlink('/run/systemd/resolve/stub-resolv.conf', path.join(root, 'etc/resolv.conf'));
  await put(root, 'usr/bin/perl', '#!perl\n', 0o755);
  await link(path.join(root, 'usr/bin/perl'), path.join(root, 'usr/bin/perl5.36.0'));
  await execa('cp', ['/bin/true', path.join(root, 'usr/bin/ping')]);
  await execa('setcap', ['cap_net_raw+ep', path.join(root, 'usr/bin/ping')]);
  await put(root, 'usr/bin/su', 'su\n', 0o4755);
  await mkdir(path.join(root, 'usr/local/bin'), { recursive: true });
  await mkdir(path.join(root, 'usr/lib/systemd/system'), { recursive: true });
  await symlink('usr/lib', path.join(root, 'lib'));
  await put(root, 'boot/Image-6.6.31-current-sunxi64', 'ARM64 KERNEL IMAGE\n');
  await symlink('Image-6.6.31-current-sunxi64', path.join(root, 'boot/Image'));
  await uInitrd(root, work, !options.initrdWithoutNfs);
  await symlink('uInitrd-6.6.31-current-sunxi64', path.join(root, 'boot/uInitrd'));
  await put(root, 'boot/dtb-6.6.31-current-sunxi64/allwinner/sun50i-h618-orangepi-zero3.dtb', 'DTB\n');
  await symlink('dtb-6.6.31-current-sunxi64', path.join(root, 'boot/dtb'));
  await mkdir(path.join(root, 'tmp'), { mode: 0o1777 });
  await chmod(path.join(root, 'tmp'), 0o1777);
}

/** A partitioned disk image like Armbian's, built without mounting: mkfs.ext4 -d, then sfdisk and dd. */
export async function makeDiskImage(root: string, image: string): Promise<void> {
  const fs = `${image}.root.ext4`;
  await execa('mkfs.ext4', ['-q', '-F', '-d', root, fs, '48M']);
  await execa('truncate', ['-s', '64M', image]);
  await execa('sfdisk', ['-q', image], { input: 'label: dos\nstart=8192, size=98304, type=83\n' });
  await execa('dd', [`if=${fs}`, `of=${image}`, 'bs=512', 'seek=8192', 'conv=notrunc,sparse', 'status=none']);
}
