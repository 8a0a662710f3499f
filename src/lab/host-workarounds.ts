/**
 * What the lab switches off in every node because of the machine it runs on,
 * decided from the host alone: a profile describes boards, and never needs to
 * know which kernel the lab's host has. Each one is listed in the lab's report.
 */
import { readFile } from 'node:fs/promises';

export interface HostWorkaround {
  /** The line in the report's "switched off in containers". */
  switchedOff: string;
  /** Given to every node's systemd, as a kernel passes its command line on. */
  systemdArguments: string[];
}

/** What the host offers that the nodes' units depend on. */
export interface HostFacts {
  /** /proc/filesystems: the filesystems the host's kernel has now. */
  filesystems: string;
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

export async function readHostWorkarounds(): Promise<HostWorkaround[]> {
  return hostWorkarounds({ filesystems: await readFile('/proc/filesystems', 'utf8') });
}
