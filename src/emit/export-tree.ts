/**
 * A node's full root tree at DEST: the base copied with `cp -a
 * --reflink=auto` (a reflink is nearly free on btrfs/XFS, a plain copy
 * elsewhere; either way owners, modes, hard links, device nodes and xattrs
 * are kept), then the overlay laid over it by the rules of overlay.ts (with
 * entries/place.ts).
 *
 * Laying the overlay never follows a symlink the base holds: every parent is
 * lstat'ed component by component and must be a real directory, and the final
 * path is unlinked and created afresh with O_CREAT|O_EXCL|O_NOFOLLOW. A base
 * `etc -> /` or `etc/resolv.conf -> /run/...` therefore can never make the
 * build write to the build host.
 */
import * as fsSync from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { contentDigest } from './tree-digests.js';
import { runTool } from '../tools.js';
import type { PlannedFile } from '../plan/plan.js';
import { sourceDateEpoch } from './epoch.js';
import type { BaseIndex } from '../base/open.js';
import { RootfsError } from '../entries/errors.js';
import { mergeOverlay } from './overlay.js';
import { layOverlay, lstatOrUndefined, reconcile, removeEntry, safeParent, TreeJournal, type Placing } from '../entries/place.js';
import { ancestors } from '../entries/paths.js';
import { applyXattrs } from '../entries/xattr.js';

export interface TreeOptions {
  /** Running as root: owners, devices and privileged xattrs are set (decided once, by the build). */
  privileged: boolean;
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

/** DEST may not exist yet, or be an empty directory (a staging directory, say); anything else is refused. */
async function prepareDest(dest: string): Promise<void> {
  const st = lstatOrUndefined(dest);
  if (!st) return void (await mkdir(dest, { recursive: true, mode: 0o755 }));
  if (!st.isDirectory() || (await readdir(dest)).length > 0)
    throw new RootfsError(`tree destination ${dest} exists and is not an empty directory`);
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
  options: TreeOptions,
): Promise<TreeResult> {
  const merge = mergeOverlay(base, files, { mtime: options.sourceDateEpoch ?? sourceDateEpoch(base), removes: options.removes ?? [] });
  const placing: Placing = { privileged: options.privileged };
  dest = path.resolve(dest);
  await prepareDest(dest);
  // cp makes DEST itself: the same command as the `cp -a` the bench compares trees with (into an existing
  // directory cp treats every entry as possibly there; in 3 of 3 back-to-back pairs that copy was slower).
  await rmdir(dest);
  await runTool('cp', ['-a', '--reflink=auto', '-T', '--', base.root, dest], { what: `copying the base ${base.root} to ${dest}` });
  await reconcile(base, dest, merge.replaced, options.privileged);
  layOverlay(dest, merge.entries, placing);
  for (const removed of merge.removed) {
    const target = path.join(safeParent(dest, removed, placing), path.posix.basename(removed));
    if (lstatOrUndefined(target) && !lstatOrUndefined(target)!.isDirectory()) fsSync.unlinkSync(target);
  }
  return { dest, replaced: [...merge.replaced].sort(), removed: merge.removed, written: merge.entries.map((e) => e.path) };
}

/** A planned file as the build state records it: enough to tell whether it changed. */
export function overlayRecord(file: PlannedFile): string {
  const what = file.type === 'symlink' ? `-> ${file.target}` : contentDigest(file.content!);
  return `${file.path}\0${file.type}\0${file.mode}\0${file.uid}:${file.gid}\0${what}`;
}

export interface PreviousTree {
  dir: string;
  /** overlayRecord() of every file the previous build laid over the base. */
  overlay: string[];
  removes: string[];
}

/** Puts a base path back as the base has it (or removes it when the base has none). */
async function restoreFromBase(base: BaseIndex, dest: string, relative: string, placing: Placing): Promise<void> {
  const { privileged, journal } = placing;
  const target = path.join(safeParent(dest, relative, placing), path.posix.basename(relative));
  const st = lstatOrUndefined(target);
  if (st?.isDirectory()) return;
  if (st) removeEntry(target, journal);
  const entry = base.entries.get(relative);
  if (!entry || entry.type === 'dir') return;
  const source = entry.type === 'hardlink' ? entry.linkname! : relative;
  const copied = await runTool('cp', ['-a', '--', path.join(base.root, source), target], { accept: 'any' });
  if (lstatOrUndefined(target)) journal?.created(target);
  if (copied.status !== 0) throw new RootfsError(`restoring /${relative} from the base failed: ${String(copied.stderr).trim()}`);
  // What was copied decides, not the index: a base changed since it was indexed must not make chmod follow a link.
  const copiedAs = fsSync.lstatSync(target);
  if (privileged) fsSync.lchownSync(target, entry.uid, entry.gid);
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
  options: TreeOptions & { journal?: TreeJournal },
): Promise<TreeResult> {
  const merge = mergeOverlay(base, files, { mtime: options.sourceDateEpoch ?? sourceDateEpoch(base), removes: options.removes ?? [] });
  const journal = options.journal;
  const placing: Placing = { privileged: options.privileged, ...(journal ? { journal } : {}) };
  dest = path.resolve(dest);
  if (!journal) {
    await fsSync.promises.mkdir(path.dirname(dest), { recursive: true });
    await runTool('cp', ['-al', '--', previous.dir, dest], { what: `reusing ${previous.dir}` });
  }
  const before = new Set(previous.overlay);
  const now = new Map(files.map((f) => [f.path, overlayRecord(f)]));
  const changed = new Set([...now].filter(([, record]) => !before.has(record)).map(([p]) => p));
  const stale = previous.overlay.map((r) => r.split('\0')[0]!).filter((p) => !now.has(p));
  for (const p of stale) await restoreFromBase(base, dest, p, placing);
  // Directories only the old overlay needed (not in the base, not needed now) go with it, deepest first.
  const keep = new Set(merge.entries.filter((e) => e.type === 'dir').map((e) => e.path));
  const emptied = [...new Set(stale.flatMap((p) => ancestors(p)))].filter((d) => !base.entries.has(d) && !keep.has(d));
  for (const dir of emptied.sort((a, b) => b.length - a.length)) {
    const target = path.join(safeParent(dest, dir, placing), path.posix.basename(dir));
    if (!lstatOrUndefined(target)?.isDirectory() || fsSync.readdirSync(target).length > 0) continue;
    if (journal) journal.displace(target);
    else fsSync.rmdirSync(target);
  }
  layOverlay(
    dest,
    merge.entries.filter((e) => e.type === 'dir' || changed.has(e.path)),
    placing,
  );
  const removedBefore = new Set(previous.removes);
  for (const p of merge.removed) {
    if (removedBefore.has(p)) continue;
    const target = path.join(safeParent(dest, p, placing), path.posix.basename(p));
    if (lstatOrUndefined(target) && !lstatOrUndefined(target)!.isDirectory()) removeEntry(target, journal);
  }
  const removedNow = new Set(merge.removed);
  for (const p of previous.removes) if (!removedNow.has(p) && !now.has(p)) await restoreFromBase(base, dest, p, placing);
  return { dest, replaced: [...merge.replaced].sort(), removed: merge.removed, written: [...changed].sort() };
}
