/**
 * Files every node gets the same (the k3s binary): added to the base's index
 * for the artifacts, so they are compressed once in the shared base rather
 * than once per node.
 */
import { stat } from 'node:fs/promises';
import type { BaseEntry, BaseIndex } from '../base/open.js';
import { RootfsError } from '../rootfs/errors.js';
import { ancestors, comparePaths } from '../rootfs/paths.js';

export interface LayerFile {
  path: string;
  /** Absolute path of the bytes. */
  content: string;
  mode: number;
}

export async function withClusterLayer(base: BaseIndex, files: readonly LayerFile[], mtime: number): Promise<BaseIndex> {
  if (files.length === 0) return base;
  const byPath = new Map(base.byPath);
  for (const file of files) {
    for (const dir of ancestors(file.path)) {
      const entry = byPath.get(dir);
      if (entry && entry.type !== 'dir')
        throw new RootfsError(`cannot add /${file.path} to the base: /${dir} is a ${entry.type} there, not a directory`);
      if (!entry) byPath.set(dir, { path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime });
    }
    const existing = byPath.get(file.path);
    if (existing?.type === 'dir') throw new RootfsError(`cannot add /${file.path} to the base: it is a directory there`);
    const entry: BaseEntry = {
      path: file.path,
      type: 'file',
      mode: file.mode,
      uid: 0,
      gid: 0,
      size: (await stat(file.content)).size,
      mtime,
      content: file.content,
    };
    byPath.set(file.path, entry);
  }
  // A base hard link to a replaced file would now point at the new content; such bases are refused.
  for (const entry of byPath.values()) {
    if (entry.type === 'hardlink' && files.some((f) => f.path === entry.linkname)) {
      throw new RootfsError(`cannot add /${entry.linkname} to the base: /${entry.path} is a hard link to it`);
    }
  }
  const entries = [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
  return { ...base, entries, byPath: new Map(entries.map((e) => [e.path, e])) };
}
