/**
 * The kernel, initrd and device tree each board boots, copied from the base
 * into the TFTP tree. Armbian's /boot/Image, /boot/uInitrd and /boot/dtb are
 * symlinks to versioned files: they are followed inside the base only.
 */
import { readFile } from 'node:fs/promises';
import type { Cluster } from '../profile/resolve.js';
import type { PlannedFile } from '../plan/plan.js';
import { bootFiles } from '../plan/context.js';
import type { BaseEntry, BaseIndex } from './open.js';
import { RootfsError } from '../entries/errors.js';
import { resolveInRoot } from '../entries/place.js';

/** The regular file a path names inside the base, links followed within it. */
export function fileInBase(base: BaseIndex, absolutePath: string, what: string): BaseEntry {
  const real = resolveInRoot(base, absolutePath.replace(/^\/+/, ''));
  let entry = real === undefined ? undefined : base.entries.get(real);
  if (entry?.type === 'hardlink') entry = base.entries.get(entry.linkname!);
  if (!entry || entry.type !== 'file' || !entry.content) {
    const where = real !== undefined && real !== absolutePath.replace(/^\/+/, '') ? ` (it leads to /${real})` : '';
    throw new RootfsError(
      `the board's ${what} ${absolutePath} is not a file in the base ${base.source}${where}; check board.${what} in the profile`,
    );
  }
  return entry;
}

/** The initrd was checked (and if need be regenerated) before: see netboot.ts. */
export async function planBootFiles(base: BaseIndex, cluster: Cluster): Promise<PlannedFile[]> {
  const out = new Map<string, PlannedFile>();
  for (const node of cluster.nodes) {
    const targets = bootFiles(node);
    const wanted: [string, string | undefined, string | undefined][] = [
      ['kernel', node.board.kernel, targets.kernel],
      ['initrd', node.board.initrd, targets.initrd],
      // No device tree: U-Boot passes its own.
      ['fdt', node.board.fdt, targets.fdt],
      ...node.board.firmware.map((file, i): [string, string, string | undefined] => ['firmware', file, targets.firmware[i]]),
    ];
    for (const [what, inBase, at] of wanted) {
      if (!inBase || !at) continue;
      const target = `tftp/${at}`;
      if (out.has(target)) continue;
      const entry = fileInBase(base, inBase, what);
      out.set(target, {
        path: target,
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        content: await readFile(entry.content!),
        source: `base ${inBase}`,
      });
    }
  }
  return [...out.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Name under which a cluster-wide file (the k3s binary) is added to every node. */
export function clusterFile(pathInRoot: string, content: Buffer, mode: number, source: string): PlannedFile {
  return { path: pathInRoot, type: 'file', mode, uid: 0, gid: 0, content, source };
}

export const K3S_PATH = 'usr/local/bin/k3s';
