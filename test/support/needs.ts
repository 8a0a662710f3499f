/**
 * The Debian packages the tests need on this machine: the real programs that read rendered files
 * (test/support/peers.ts), the tools the root filesystem tests compare against, and for the slow tier
 * the base builder and the lab's containers. scripts/test.ts checks them before any test starts, so a
 * machine without them hears one `apt-get install` line instead of a handful of ENOENT failures.
 * .ci/run installs the same packages.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** A package and what shows it is installed: a program (on PATH or in an sbin directory) or a file. */
interface Need {
  package: string;
  program?: string;
  file?: string;
}

const FAST: Need[] = [
  { package: 'keepalived', program: 'keepalived' },
  { package: 'mariadb-server', program: 'mariadbd' },
  { package: 'mariadb-client', program: 'mariadb' },
  { package: 'dnsmasq-base', program: 'dnsmasq' },
  // systemd-analyze verify of the rendered units that pull in iscsid.service.
  { package: 'open-iscsi', file: '/lib/systemd/system/iscsid.service' },
  // The node's sshd_config.d is read through this machine's sshd and its sshd_config.
  { package: 'openssh-server', file: '/etc/ssh/sshd_config' },
  { package: 'openssh-server', program: 'sshd' },
  { package: 'openssh-client', program: 'ssh-keygen' },
  { package: 'openssl', program: 'openssl' },
  { package: 'rsync', program: 'rsync' },
  { package: 'systemd', program: 'systemd-analyze' },
  { package: 'iproute2', program: 'ip' },
  { package: 'util-linux', program: 'nsenter' },
  { package: 'python3', program: 'python3' },
  { package: 'tar', program: 'tar' },
  { package: 'gzip', program: 'gzip' },
  { package: 'xz-utils', program: 'xz' },
  { package: 'zstd', program: 'zstd' },
  { package: 'lz4', program: 'lz4' },
  { package: 'cpio', program: 'cpio' },
  { package: 'e2fsprogs', program: 'mkfs.ext4' },
  { package: 'fdisk', program: 'sfdisk' },
  { package: 'libcap2-bin', program: 'getcap' },
  { package: 'attr', program: 'getfattr' },
  { package: 'u-boot-tools', program: 'mkimage' },
  { package: 'fuse2fs', program: 'fuse2fs' },
];

const SLOW: Need[] = [
  { package: 'mmdebstrap', program: 'mmdebstrap' },
  { package: 'podman', program: 'podman' },
];

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Where programs are looked for: PATH, and the sbin directories a user's PATH may lack. */
export interface Places {
  PATH: string;
  sbin: readonly string[];
}

function installed(need: Need, places: Places): boolean {
  if (need.file) return existsSync(need.file);
  return [...places.PATH.split(':').filter(Boolean), ...places.sbin].some((dir) => existsSync(path.join(dir, need.program!)));
}

/** The packages a tier's tests need that are not installed here, sorted, each once. */
export function missingTestPackages(
  tier: 'fast' | 'slow' | 'all',
  places: Places = { PATH: process.env.PATH ?? '', sbin: SBIN },
): string[] {
  const needs = tier === 'fast' ? FAST : [...FAST, ...SLOW];
  return [...new Set(needs.filter((n) => !installed(n, places)).map((n) => n.package))].sort();
}

/** The one line that says so, or undefined when nothing is missing. */
export function missingTestPackagesLine(missing: readonly string[]): string | undefined {
  if (missing.length === 0) return undefined;
  return `the tests need Debian packages that are not installed here: apt-get install ${missing.join(' ')}`;
}
