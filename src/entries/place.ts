/**
 * Placing a root's entries in a directory on disk, below both the base reader
 * (base/netboot.ts lays its initrd configuration into a copy of the base) and
 * the writers (emit/export-tree.ts lays each node's overlay into its tree).
 *
 * Nothing here follows a symlink the root holds: every parent is lstat'ed
 * component by component and must be a real directory, and a final path is
 * unlinked and created afresh with O_CREAT|O_EXCL|O_NOFOLLOW. Owners are set
 * only when the caller says the process may (`privileged`, decided once by
 * the build).
 */
import * as fsSync from 'node:fs';
import { constants } from 'node:fs';
import path from 'node:path';
import type { BaseEntry, BaseIndex } from '../base/open.js';
import { runTool } from '../tools.js';
import { OverlayConflictError, RootfsError } from './errors.js';
import { writeAll } from './io.js';
import { applyXattrs, requireXattrTools, type Xattrs } from './xattr.js';

/** How entries are placed: with owners (as root) or not, and with a journal that can undo it. */
export interface Placing {
  privileged: boolean;
  journal?: TreeJournal;
}

/** An entry of a node's root: a base entry, or one the overlay makes (with its bytes in memory). */
export interface NodeEntry extends BaseEntry {
  data?: Buffer;
}

export function lstatOrUndefined(p: string): fsSync.Stats | undefined {
  try {
    return fsSync.lstatSync(p);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * What an in-place revision changed in a tree, so it can be undone: every
 * path it would unlink (or an emptied directory it would remove) is renamed
 * into an aside directory on the same filesystem instead, and every path it
 * creates is noted. undo() removes what was created and renames the rest
 * back, newest first, leaving the tree as it was.
 */
export class TreeJournal {
  private readonly steps: (() => void)[] = [];
  private count = 0;
  constructor(private readonly aside: string) {}

  /** Moves `target` out of the way (it stays restorable) instead of unlinking it. */
  displace(target: string): void {
    if (this.count === 0) {
      // What a killed run left there belonged to a revision that is gone with its staging directory.
      fsSync.rmSync(this.aside, { recursive: true, force: true });
      fsSync.mkdirSync(this.aside, { recursive: true, mode: 0o700 });
    }
    const kept = path.join(this.aside, String(this.count++));
    fsSync.renameSync(target, kept);
    this.steps.push(() => fsSync.renameSync(kept, target));
  }

  created(target: string, dir = false): void {
    this.steps.push(() => (dir ? fsSync.rmdirSync(target) : fsSync.unlinkSync(target)));
  }

  undo(): void {
    for (const step of this.steps.reverse()) {
      try {
        step();
      } catch {
        // Keep going: one path that cannot be put back must not keep the others from it.
      }
    }
    this.steps.length = 0;
    fsSync.rmSync(this.aside, { recursive: true, force: true });
  }

  /** The revision is kept: what was displaced can go. */
  discard(): void {
    fsSync.rmSync(this.aside, { recursive: true, force: true });
  }
}

/** Unlinks, or with a journal moves aside. */
export function removeEntry(target: string, journal?: TreeJournal): void {
  if (journal) journal.displace(target);
  else fsSync.unlinkSync(target);
}

/**
 * Walks to the parent of `relative` under `dest`, one lstat per component:
 * each must be a real directory (a missing one is made 0755 root:root).
 */
export function safeParent(dest: string, relative: string, { privileged, journal }: Placing): string {
  const parts = relative.split('/');
  let dir = dest;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    const st = lstatOrUndefined(dir);
    if (!st) {
      fsSync.mkdirSync(dir, { mode: 0o755 });
      journal?.created(dir, true);
      fsSync.chmodSync(dir, 0o755);
      if (privileged) fsSync.lchownSync(dir, 0, 0);
      continue;
    }
    if (!st.isDirectory()) notADirectory(dest, relative, parts.slice(0, i + 1).join('/'), st);
  }
  return dir;
}

function notADirectory(dest: string, relative: string, at: string, st: fsSync.Stats): never {
  if (st.isSymbolicLink()) {
    const target = fsSync.readlinkSync(path.join(dest, at));
    throw new OverlayConflictError(
      relative,
      `${JSON.stringify(at)} in ${dest} is a symbolic link (-> ${target}); refusing to write through it`,
    );
  }
  throw new OverlayConflictError(relative, `${JSON.stringify(at)} in ${dest} is not a directory`);
}

function writeFile(target: string, entry: NodeEntry, privileged: boolean): void {
  // 0600 until the owner is set, so a secret is never readable by others, not even for a moment.
  const fd = fsSync.openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeAll(fd, entry.data!);
    if (privileged) fsSync.fchownSync(fd, entry.uid, entry.gid);
    fsSync.fchmodSync(fd, entry.mode); // after chown, which clears setuid bits
    fsSync.futimesSync(fd, entry.mtime, entry.mtime);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Lays overlay entries (sorted, as mergeOverlay returns them) into an existing tree. */
export function layOverlay(dest: string, entries: readonly NodeEntry[], placing: Placing): void {
  const { privileged, journal } = placing;
  for (const entry of entries) {
    const target = path.join(safeParent(dest, entry.path, placing), path.posix.basename(entry.path));
    const st = lstatOrUndefined(target);
    if (entry.type === 'dir') {
      if (st && !st.isDirectory()) notADirectory(dest, entry.path, entry.path, st);
      if (!st) {
        fsSync.mkdirSync(target, { mode: entry.mode });
        journal?.created(target, true);
        if (privileged) fsSync.lchownSync(target, entry.uid, entry.gid);
        fsSync.chmodSync(target, entry.mode);
      }
      continue;
    }
    if (st?.isDirectory())
      throw new OverlayConflictError(entry.path, `${dest} has a directory there; an overlay file cannot replace a directory`);
    // Unlink, then create: replacing a symlink replaces the link, and a hard link's other paths keep the base content.
    if (st) removeEntry(target, journal);
    if (entry.type === 'file') writeFile(target, entry, privileged);
    else fsSync.symlinkSync(entry.linkname!, target);
    journal?.created(target);
    if (entry.type === 'symlink') {
      if (privileged) fsSync.lchownSync(target, entry.uid, entry.gid);
      fsSync.lutimesSync(target, entry.mtime, entry.mtime);
    }
  }
}

/**
 * When the base was extracted without root, the copy lacks owners, device
 * nodes and privileged xattrs; as root they are put right from the index.
 * Xattrs are set from the index every time: `cp -a` drops them without a word
 * where the destination cannot hold them, and a lost capability would only
 * show on the node (ping: Operation not permitted). setfattr fails loudly.
 */
export async function reconcile(base: BaseIndex, dest: string, replaced: Set<string>, privileged: boolean): Promise<void> {
  if (!privileged) return;
  const abs = (p: string) => (p === '' ? dest : path.join(dest, p));
  if (!base.applied.owners || !base.applied.devices) {
    for (const entry of base.entries) {
      const target = abs(entry.path);
      if ((entry.type === 'char' || entry.type === 'block' || entry.type === 'fifo') && !lstatOrUndefined(target)) {
        const kind = entry.type === 'fifo' ? ['p'] : [entry.type === 'char' ? 'c' : 'b', String(entry.devmajor), String(entry.devminor)];
        await runTool('mknod', [target, ...kind], { what: `creating the device node ${target}` });
      }
      if (entry.type === 'hardlink') continue;
      fsSync.lchownSync(target, entry.uid, entry.gid);
      if (entry.type !== 'symlink') fsSync.chmodSync(target, entry.mode);
    }
  }
  const withXattrs = [...base.entries.withXattrs()];
  if (withXattrs.length) {
    await requireXattrTools('setfattr', `the file capabilities and other xattrs ${dest} must hold`);
    const items: [string, Xattrs][] = withXattrs.filter((e) => !replaced.has(e.path)).map((e) => [abs(e.path), e.xattrs!]);
    await applyXattrs(items).catch((error: Error) => {
      throw new RootfsError(`the base's xattrs (file capabilities) cannot be set in ${dest}: ${error.message}`);
    });
  }
}

/**
 * Where a path really is inside the root, following the base's symlinks the
 * way a chroot would (absolute targets start at the root, `..` stops there).
 * Only for error messages; undefined when the links loop.
 */
export function resolveInRoot(base: BaseIndex, relative: string): string | undefined {
  let pending = relative.split('/');
  const done: string[] = [];
  for (let hops = 0; pending.length;) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const entry = base.entries.get([...done, part].join('/'));
    if (entry?.type !== 'symlink') {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const target = entry.linkname!;
    if (target.startsWith('/')) done.length = 0;
    pending = [...target.split('/'), ...pending];
  }
  return done.join('/');
}
