/**
 * A node's full root tree at DEST: the base copied with `cp -a
 * --reflink=auto` (a reflink is nearly free on btrfs/XFS, a plain copy
 * elsewhere; either way owners, modes, hard links, device nodes and xattrs
 * are kept), then the overlay laid over it by the rules of overlay.ts.
 *
 * Laying the overlay never follows a symlink the base holds: every parent is
 * lstat'ed component by component and must be a real directory, and the final
 * path is unlinked and created afresh with O_CREAT|O_EXCL|O_NOFOLLOW. A base
 * `etc -> /` or `etc/resolv.conf -> /run/...` therefore can never make the
 * build write to the build host.
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import { constants } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from '../tools.js';
import type { PlannedFile } from '../plan/plan.js';
import { sourceDateEpoch } from './artifact.js';
import type { BaseIndex } from '../base/open.js';
import { isRoot } from '../privileges.js';
import { OverlayConflictError, RootfsError } from '../rootfs/errors.js';
import { writeAll } from '../rootfs/io.js';
import { mergeOverlay, type NodeEntry } from './overlay.js';
import { ancestors } from '../rootfs/paths.js';
import { applyXattrs, requireXattrTools, type Xattrs } from '../rootfs/xattr.js';

export interface TreeOptions {
  /** mtime of the overlay's files and new directories; default $SOURCE_DATE_EPOCH, else the base's newest mtime. */
  sourceDateEpoch?: number;
  /** Base paths the node must not have (patterns, see matchRemovals). */
  removes?: readonly string[];
}

export interface TreeResult {
  dest: string;
  /** Base paths the overlay replaced. */
  replaced: string[];
  /** Base paths removed (the plan's removals that matched). */
  removed?: string[];
  /** Paths the overlay wrote, new parent directories included. */
  written: string[];
}

function lstatOrUndefined(p: string): fsSync.Stats | undefined {
  try {
    return fsSync.lstatSync(p);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** DEST may not exist yet, or be an empty directory (a staging directory, say); anything else is refused. */
async function prepareDest(dest: string): Promise<void> {
  const st = lstatOrUndefined(dest);
  if (!st) return void (await mkdir(dest, { recursive: true, mode: 0o755 }));
  if (!st.isDirectory() || (await readdir(dest)).length > 0)
    throw new RootfsError(`tree destination ${dest} exists and is not an empty directory`);
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
function remove(target: string, journal?: TreeJournal): void {
  if (journal) journal.displace(target);
  else fsSync.unlinkSync(target);
}

/**
 * Walks to the parent of `relative` under `dest`, one lstat per component:
 * each must be a real directory (a missing one is made 0755 root:root).
 */
export function safeParent(dest: string, relative: string, journal?: TreeJournal): string {
  const parts = relative.split('/');
  let dir = dest;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    const st = lstatOrUndefined(dir);
    if (!st) {
      fsSync.mkdirSync(dir, { mode: 0o755 });
      journal?.created(dir, true);
      fsSync.chmodSync(dir, 0o755);
      if (isRoot()) fsSync.lchownSync(dir, 0, 0);
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

function writeFile(target: string, entry: NodeEntry): void {
  // 0600 until the owner is set, so a secret is never readable by others, not even for a moment.
  const fd = fsSync.openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeAll(fd, entry.data!);
    if (isRoot()) fsSync.fchownSync(fd, entry.uid, entry.gid);
    fsSync.fchmodSync(fd, entry.mode); // after chown, which clears setuid bits
    fsSync.futimesSync(fd, entry.mtime, entry.mtime);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Lays overlay entries (sorted, as mergeOverlay returns them) into an existing tree. */
export function layOverlay(dest: string, entries: readonly NodeEntry[], journal?: TreeJournal): void {
  for (const entry of entries) {
    const target = path.join(safeParent(dest, entry.path, journal), path.posix.basename(entry.path));
    const st = lstatOrUndefined(target);
    if (entry.type === 'dir') {
      if (st && !st.isDirectory()) notADirectory(dest, entry.path, entry.path, st);
      if (!st) {
        fsSync.mkdirSync(target, { mode: entry.mode });
        journal?.created(target, true);
        if (isRoot()) fsSync.lchownSync(target, entry.uid, entry.gid);
        fsSync.chmodSync(target, entry.mode);
      }
      continue;
    }
    if (st?.isDirectory())
      throw new OverlayConflictError(entry.path, `${dest} has a directory there; an overlay file cannot replace a directory`);
    // Unlink, then create: replacing a symlink replaces the link, and a hard link's other paths keep the base content.
    if (st) remove(target, journal);
    if (entry.type === 'file') writeFile(target, entry);
    else fsSync.symlinkSync(entry.linkname!, target);
    journal?.created(target);
    if (entry.type === 'symlink') {
      if (isRoot()) fsSync.lchownSync(target, entry.uid, entry.gid);
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
export async function reconcile(base: BaseIndex, dest: string, replaced: Set<string>): Promise<void> {
  if (!isRoot()) return;
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
 * Writes base + overlay at `dest`. Throws OverlayConflictError before copying
 * anything if the overlay does not fit the base. A later failure leaves
 * `dest` half-written: write into a staging directory (emit/staging.ts
 * writeAtomically) for all-or-nothing.
 */
export async function writeNodeTree(
  base: BaseIndex,
  files: readonly PlannedFile[],
  dest: string,
  options: TreeOptions = {},
): Promise<TreeResult> {
  const merge = mergeOverlay(base, files, { mtime: options.sourceDateEpoch ?? sourceDateEpoch(base), removes: options.removes ?? [] });
  dest = path.resolve(dest);
  await prepareDest(dest);
  // cp makes DEST itself: the same command as the `cp -a` the bench compares trees with (into an existing
  // directory cp treats every entry as possibly there; in 3 of 3 back-to-back pairs that copy was slower).
  await rmdir(dest);
  await runTool('cp', ['-a', '--reflink=auto', '-T', '--', base.root, dest], { what: `copying the base ${base.root} to ${dest}` });
  await reconcile(base, dest, merge.replaced);
  layOverlay(dest, merge.entries);
  for (const removed of merge.removed) {
    const target = path.join(safeParent(dest, removed), path.posix.basename(removed));
    if (lstatOrUndefined(target) && !lstatOrUndefined(target)!.isDirectory()) fsSync.unlinkSync(target);
  }
  return { dest, replaced: [...merge.replaced].sort(), removed: merge.removed, written: merge.entries.map((e) => e.path) };
}

/** A planned file as the build state records it: enough to tell whether it changed. */
const digests = new WeakMap<Buffer, string>();
export function overlayRecord(file: PlannedFile): string {
  let what = file.type === 'symlink' ? `-> ${file.target}` : digests.get(file.content!);
  if (what === undefined) {
    what = createHash('sha256').update(file.content!).digest('hex');
    digests.set(file.content!, what);
  }
  return `${file.path}\0${file.type}\0${file.mode}\0${file.uid}:${file.gid}\0${what}`;
}

export interface PreviousTree {
  dir: string;
  /** overlayRecord() of every file the previous build laid over the base. */
  overlay: string[];
  removes: string[];
}

/** Puts a base path back as the base has it (or removes it when the base has none). */
async function restoreFromBase(base: BaseIndex, dest: string, relative: string, journal?: TreeJournal): Promise<void> {
  const target = path.join(safeParent(dest, relative, journal), path.posix.basename(relative));
  const st = lstatOrUndefined(target);
  if (st?.isDirectory()) return;
  if (st) remove(target, journal);
  const entry = base.entries.get(relative);
  if (!entry || entry.type === 'dir') return;
  const source = entry.type === 'hardlink' ? entry.linkname! : relative;
  const copied = await runTool('cp', ['-a', '--', path.join(base.root, source), target], { accept: 'any' });
  if (lstatOrUndefined(target)) journal?.created(target);
  if (copied.status !== 0) throw new RootfsError(`restoring /${relative} from the base failed: ${String(copied.stderr).trim()}`);
  // What was copied decides, not the index: a base changed since it was indexed must not make chmod follow a link.
  const copiedAs = fsSync.lstatSync(target);
  if (isRoot()) fsSync.lchownSync(target, entry.uid, entry.gid);
  if (copiedAs.isFile() && !copiedAs.isSymbolicLink()) fsSync.chmodSync(target, entry.mode);
  if (entry.xattrs && copiedAs.isFile()) await applyXattrs([[target, entry.xattrs]]);
}

/**
 * A node's tree when the base is the one the previous build used: only what
 * the overlay changed is written, and what it no longer writes or removes is
 * put back from the base. The cost is the overlay's, not the base's.
 *
 * Without a journal the previous tree is hard-linked to `dest` first (it is
 * left as it was). With one, the previous tree is already at `dest` (moved
 * there) and is revised in place; the journal can undo it.
 */
export async function reviseNodeTree(
  base: BaseIndex,
  files: readonly PlannedFile[],
  dest: string,
  previous: PreviousTree,
  options: TreeOptions & { journal?: TreeJournal } = {},
): Promise<TreeResult> {
  const merge = mergeOverlay(base, files, { mtime: options.sourceDateEpoch ?? sourceDateEpoch(base), removes: options.removes ?? [] });
  const journal = options.journal;
  dest = path.resolve(dest);
  if (!journal) {
    await fsSync.promises.mkdir(path.dirname(dest), { recursive: true });
    await runTool('cp', ['-al', '--', previous.dir, dest], { what: `reusing ${previous.dir}` });
  }
  const before = new Set(previous.overlay);
  const now = new Map(files.map((f) => [f.path, overlayRecord(f)]));
  const changed = new Set([...now].filter(([, record]) => !before.has(record)).map(([p]) => p));
  const stale = previous.overlay.map((r) => r.split('\0')[0]!).filter((p) => !now.has(p));
  for (const p of stale) await restoreFromBase(base, dest, p, journal);
  // Directories only the old overlay needed (not in the base, not needed now) go with it, deepest first.
  const keep = new Set(merge.entries.filter((e) => e.type === 'dir').map((e) => e.path));
  const emptied = [...new Set(stale.flatMap((p) => ancestors(p)))].filter((d) => !base.entries.has(d) && !keep.has(d));
  for (const dir of emptied.sort((a, b) => b.length - a.length)) {
    const target = path.join(safeParent(dest, dir, journal), path.posix.basename(dir));
    if (!lstatOrUndefined(target)?.isDirectory() || fsSync.readdirSync(target).length > 0) continue;
    if (journal) journal.displace(target);
    else fsSync.rmdirSync(target);
  }
  layOverlay(
    dest,
    merge.entries.filter((e) => e.type === 'dir' || changed.has(e.path)),
    journal,
  );
  const removedBefore = new Set(previous.removes);
  for (const p of merge.removed) {
    if (removedBefore.has(p)) continue;
    const target = path.join(safeParent(dest, p, journal), path.posix.basename(p));
    if (lstatOrUndefined(target) && !lstatOrUndefined(target)!.isDirectory()) remove(target, journal);
  }
  const removedNow = new Set(merge.removed);
  for (const p of previous.removes) if (!removedNow.has(p) && !now.has(p)) await restoreFromBase(base, dest, p, journal);
  return { dest, replaced: [...merge.replaced].sort(), removed: merge.removed, written: [...changed].sort() };
}
