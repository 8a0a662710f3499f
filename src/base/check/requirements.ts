/**
 * What a base must hold for the cluster's nodes, read from its dpkg database
 * (var/lib/dpkg/status), and the architecture it is built for.
 */
import type { Cluster } from '../../profile/resolve.js';
import type { BaseIndex } from '../open.js';
import { readInstalledPackages } from '../dpkg.js';
import { RootfsError } from '../../entries/errors.js';
import type { BaseFacts } from '../../plan/context.js';

/** Packages every node runs, and those only servers run. */
export function requiredPackages(cluster: Cluster): { all: string[]; servers: string[] } {
  const { profile } = cluster;
  const all = ['nfs-common', 'e2fsprogs', ...(profile.longhorn.enabled ? ['open-iscsi'] : [])];
  const sst = profile.galera.sstMethod === 'mariabackup' ? 'mariadb-backup' : 'rsync';
  // python3 runs the Galera recovery decision and exchange (galera-recovery); stunnel4 encrypts
  // rsync state transfers (wsrep_sst_rsync refuses an unencrypted one once TLS is configured).
  const servers = cluster.servers.length
    ? ['keepalived', 'mariadb-server', 'galera-4', 'python3', sst, ...(sst === 'rsync' ? ['stunnel4'] : [])]
    : [];
  return { all, servers };
}

export function allRequiredPackages(cluster: Cluster): string[] {
  const { all, servers } = requiredPackages(cluster);
  return [...new Set([...all, ...servers])].sort();
}

/** A base that can serve the cluster's nodes. */
export interface CheckedBase {
  /** Debian architecture of the base (arm64, armhf, amd64). */
  arch: string;
  packages: number;
  /** What the rendered files depend on in it (plan/context.ts). */
  facts: BaseFacts;
}

/** Fails naming every missing package; a debootstrap base is built with them, any other base must already hold them. */
export async function checkBase(base: BaseIndex, cluster: Cluster): Promise<CheckedBase> {
  const installed = await readInstalledPackages(base.root).catch(() => undefined);
  if (!installed || installed.size === 0) {
    throw new RootfsError(
      `the base ${base.source} has no dpkg database (var/lib/dpkg/status): netroot needs a Debian or Armbian root filesystem`,
    );
  }
  const missing = allRequiredPackages(cluster).filter((name) => !installed.has(name));
  if (missing.length) {
    throw new RootfsError(
      `the base ${base.source} lacks packages the cluster's nodes need: ${missing.join(', ')}. ` +
        `Install them into the base (apt-get install ${missing.join(' ')} in a chroot of it), ` +
        `or build one with them: --base debootstrap:bookworm:ARCH`,
    );
  }
  const arch = installed.get('dpkg')?.architecture || installed.get('base-files')?.architecture;
  if (!arch)
    throw new RootfsError(`the base ${base.source} does not say its architecture (no dpkg or base-files package in its dpkg database)`);
  return {
    arch,
    packages: installed.size,
    facts: {
      mariadbVersion: installed.get('mariadb-server')?.version ?? null,
      systemdResolved: installed.has('systemd-resolved'),
      chrony: installed.has('chrony'),
      timesyncd: installed.has('systemd-timesyncd'),
    },
  };
}
