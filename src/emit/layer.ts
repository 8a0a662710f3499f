/**
 * Files every node gets the same (the k3s binary): added to the base's index
 * for the artifacts, so they are compressed once in the shared base rather
 * than once per node.
 */
import { stat } from 'node:fs/promises';
import type { BaseEntry, BaseIndex } from '../base/open.js';
import { RootfsError } from '../entries/errors.js';
import { ancestors } from '../entries/paths.js';

export interface LayerFile {
  path: string;
  /** Absolute path of the bytes. */
  content: string;
  mode: number;
}

export async function withClusterLayer(base: BaseIndex, files: readonly LayerFile[], mtime: number): Promise<BaseIndex> {
  if (files.length === 0) return base;
  const changes = new Map<string, BaseEntry>();
  const find = (p: string) => changes.get(p) ?? base.entries.get(p);
  for (const file of files) {
    for (const dir of ancestors(file.path)) {
      const entry = find(dir);
      if (entry && entry.type !== 'dir')
        throw new RootfsError(`cannot add /${file.path} to the base: /${dir} is a ${entry.type} there, not a directory`);
      if (!entry) changes.set(dir, { path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime });
    }
    if (find(file.path)?.type === 'dir') throw new RootfsError(`cannot add /${file.path} to the base: it is a directory there`);
    changes.set(file.path, {
      path: file.path,
      type: 'file',
      mode: file.mode,
      uid: 0,
      gid: 0,
      size: (await stat(file.content)).size,
      mtime,
      content: file.content,
    });
  }
  // A base hard link to a replaced file would now point at the new content; such bases are refused.
  const added = new Set(files.map((f) => f.path));
  for (let i = 0; i < base.entries.length; i++) {
    if (base.entries.type(i) !== 'hardlink') continue;
    const entry = base.entries.at(i);
    if (added.has(entry.linkname!)) throw new RootfsError(`cannot add /${entry.linkname} to the base: /${entry.path} is a hard link to it`);
  }
  return { ...base, entries: base.entries.withChanges([...changes.values()]) };
}
