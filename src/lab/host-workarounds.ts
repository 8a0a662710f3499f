/**
 * What the lab switches off or stands in for in every node because its nodes
 * are containers on this machine, decided by the lab alone: a profile describes
 * boards, and never needs to know which kernel the lab's host has or what a
 * container cannot do. Each one is listed in the lab's report.
 */
import { readFile } from 'node:fs/promises';

export interface HostWorkaround {
  /** The line in the report's "switched off in containers". */
  switchedOff: string;
  /** Given to every node's systemd, as a kernel passes its command line on. */
  systemdArguments: string[];
  /** Each node whose profile has local storage gets a directory of the lab's, mounted where its ext4 filesystem would be. */
  localStorage?: boolean;
}

/** What the host offers that the nodes' units depend on. */
export interface HostFacts {
  /** /proc/filesystems: the filesystems the host's kernel has now. */
  filesystems: string;
}

/** What the profile turns on that a container cannot do. */
export interface ClusterFacts {
  /** Some node keeps containerd's and Longhorn's state on local ext4 (storage.enabled). */
  localStorage: boolean;
  /** Longhorn, and with it iscsid on every node (longhorn.enabled). */
  longhorn: boolean;
}

export function hostWorkarounds(host: HostFacts): HostWorkaround[] {
  const filesystems = new Set(host.filesystems.split('\n').map((line) => line.trim().split(/\s+/).pop()));
  const found: HostWorkaround[] = [];
  // nfs-common's rpc_pipefs mount needs SUNRPC; a container shares the host's kernel and cannot load a module.
  if (!filesystems.has('rpc_pipefs'))
    found.push({
      switchedOff:
        "the rpc_pipefs mount of nfs-common (systemd.mask=run-rpc_pipefs.mount on every node): this host's kernel has no SUNRPC (no rpc_pipefs in /proc/filesystems) and a container cannot load it; a board's NFS-root kernel has it",
      systemdArguments: ['systemd.mask=run-rpc_pipefs.mount'],
    });
  return found;
}

export function containerWorkarounds(cluster: ClusterFacts): HostWorkaround[] {
  const found: HostWorkaround[] = [];
  // A container sees no disk and may not set up a loop device; netroot-local-storage finds the
  // lab's directory already mounted and runs the rest of its script (the directories, the binds).
  if (cluster.localStorage)
    found.push({
      switchedOff:
        "the local ext4 filesystem (storage.enabled): a container can neither see a disk nor loop-mount an image, so each node gets a directory of the lab's, mounted where the filesystem would be; netroot-local-storage finds it mounted and binds /var/lib/rancher and the rest onto it. The real-kernel boot (netboot-arm64) covers the ext4 image",
      systemdArguments: [],
      localStorage: true,
    });
  // iscsid talks to the kernel's iSCSI transport over a netlink socket that is not in a container's
  // network namespace, and needs iscsi_tcp, which a container cannot load.
  if (cluster.longhorn)
    found.push({
      switchedOff:
        "iscsid, Longhorn's iSCSI initiator (systemd.mask=iscsid.service iscsid.socket on every node): the kernel's iSCSI netlink is not in a container's network namespace and a container cannot load iscsi_tcp; Longhorn's manifests are placed as on a board, and the k3s stand-in does not run them",
      systemdArguments: ['systemd.mask=iscsid.service', 'systemd.mask=iscsid.socket'],
    });
  return found;
}

export async function readHostWorkarounds(cluster: ClusterFacts): Promise<HostWorkaround[]> {
  return [...containerWorkarounds(cluster), ...hostWorkarounds({ filesystems: await readFile('/proc/filesystems', 'utf8') })];
}
