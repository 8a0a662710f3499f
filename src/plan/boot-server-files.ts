/**
 * The boot server's files, named once: where the build writes each (relative
 * to OUT/CLUSTER), and the directory a deploy puts each in on the boot server
 * host unless told otherwise. The plan, `render`, deploy and the lab read
 * these names from here.
 */
import path from 'node:path';

/** The boot server's kinds of file: TFTP files, exports(5), nfs-ganesha's exports, dnsmasq's configuration. */
export type BootFileKind = 'tftp' | 'exports' | 'ganesha' | 'dnsmasq';

/** The build's TFTP tree (OUT/CLUSTER/tftp): copied as it is into the TFTP root. */
export const TFTP_OUTPUT = 'tftp';

/** The cluster's one-per-cluster boot server files, as the build writes them. */
export function bootServerOutputs(cluster: string): Record<Exclude<BootFileKind, 'tftp'>, string> {
  return {
    dnsmasq: `dnsmasq/${cluster}.conf`,
    exports: `exports/${cluster}.exports`,
    ganesha: `exports/${cluster}.ganesha.conf`,
  };
}

/** Where each goes on the boot server host by default (the file keeps its name). */
export const BOOT_SERVER_DIRS: Record<Exclude<BootFileKind, 'tftp'>, string> = {
  dnsmasq: '/etc/dnsmasq.d',
  exports: '/etc/exports.d',
  ganesha: '/etc/ganesha',
};

/** A build output's file name on the boot server host. */
export const bootServerName = (output: string): string => path.posix.basename(output);
