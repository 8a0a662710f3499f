/**
 * How a node's overlay lies over the base. The tree writer and the artifact
 * writer both use this, so a node's tree and its archive cannot disagree.
 *
 * Rules (the choice the brief left open is: FAIL, never replace a component):
 * - An overlay path may replace a base file, symlink, hard link, device or
 *   fifo. Replacing a symlink replaces the link itself: `etc/resolv.conf ->
 *   /run/...` becomes a regular file; nothing is written at the link's target.
 * - An overlay path whose PARENT is a symlink in the base (`etc -> /`,
 *   `lib -> usr/lib`) is an error. Writing through it could leave the root
 *   (or, on the build host, touch the host's /etc), and silently replacing the
 *   link with a directory would break the base (`var/run -> /run`). The error
 *   says where the path really lives inside the root, so the overlay can be
 *   fixed.
 * - An overlay path where the base has a directory is an error: replacing a
 *   directory would drop its contents.
 * - Parents missing from the base are created as 0755 root:root directories.
 * - Replacing the content holder of a hard link group leaves the other paths
 *   of the group with the base content: the next path of the group becomes
 *   the holder (`relinked`).
 */
import type { PlannedFile } from '../plan/plan.js';
import type { BaseEntry, BaseIndex } from '../base/open.js';
import { resolveInRoot, type NodeEntry } from '../entries/place.js';
import { OverlayConflictError } from '../entries/errors.js';
import { ancestors, comparePaths, normalise, unsafeReason } from '../entries/paths.js';

export interface OverlayMerge {
  /** What the overlay adds: missing parent directories, files and symlinks, sorted by path. */
  entries: NodeEntry[];
  /** Base paths the overlay replaces. */
  replaced: Set<string>;
  /** Base hard links rewritten because their content holder was replaced. */
  relinked: Map<string, BaseEntry>;
  /** Base paths the node must not have and the overlay does not write (in `replaced` too). */
  removed: string[];
}

/**
 * Base paths matching the plan's removal patterns (`etc/ssh/ssh_host_*`: `*`
 * only in the last part). Only entries whose parents are real directories of
 * the base match; nothing is followed through a symlink, and directories are
 * never removed.
 */
export function matchRemovals(base: BaseIndex, patterns: readonly string[]): string[] {
  const out = new Set<string>();
  for (const pattern of patterns) for (const match of matchPattern(base, pattern)) out.add(match);
  return [...out].sort(comparePaths);
}

/** Per base, pattern → its matches: every node of a cluster asks for the same patterns. */
const patternMatches = new WeakMap<BaseIndex, Map<string, string[]>>();

function matchPattern(base: BaseIndex, pattern: string): string[] {
  let known = patternMatches.get(base);
  if (!known) patternMatches.set(base, (known = new Map()));
  const hit = known.get(pattern);
  if (hit) return hit;
  const matches: string[] = [];
  const slash = pattern.lastIndexOf('/');
  const dir = slash < 0 ? '' : pattern.slice(0, slash);
  const last = slash < 0 ? pattern : pattern.slice(slash + 1);
  if (!dir || ancestors(`${dir}/x`).every((d) => base.entries.get(d)?.type === 'dir')) {
    const re = new RegExp(
      `^${last
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*')}$`,
    );
    // Entries are sorted, so everything below dir/ is one run of them, found by bisection.
    const prefix = dir ? `${dir}/` : '';
    const entries = base.entries;
    for (let i = entries.lowerBound(prefix); i < entries.length; i++) {
      const p = entries.path(i);
      if (!p.startsWith(prefix)) break;
      if (entries.type(i) === 'dir' || p === '') continue;
      const name = p.slice(prefix.length);
      if (!name.includes('/') && re.test(name)) matches.push(p);
    }
  }
  known.set(pattern, matches);
  return matches;
}

/** Holder path → the hard links to it, computed once per base. */
const linkGroups = new WeakMap<BaseIndex, Map<string, BaseEntry[]>>();

function groupsOf(base: BaseIndex): Map<string, BaseEntry[]> {
  let groups = linkGroups.get(base);
  if (!groups) {
    groups = new Map();
    for (let i = 0; i < base.entries.length; i++) {
      if (base.entries.type(i) !== 'hardlink') continue;
      const entry = base.entries.at(i);
      const list = groups.get(entry.linkname!);
      if (list) list.push(entry);
      else groups.set(entry.linkname!, [entry]);
    }
    linkGroups.set(base, groups);
  }
  return groups;
}

function describe(entry: BaseEntry): string {
  return entry.type === 'symlink' ? `a symbolic link (-> ${entry.linkname})` : entry.type === 'dir' ? 'a directory' : `a ${entry.type}`;
}

function checkPath(file: PlannedFile): void {
  if (file.path === '' || unsafeReason(file.path) || normalise(file.path) !== file.path) {
    throw new OverlayConflictError(file.path, 'is not a plain relative path inside the root');
  }
  if (file.type === 'file' && !Buffer.isBuffer(file.content)) throw new OverlayConflictError(file.path, 'is a file without content');
  if (file.type === 'symlink' && !file.target) throw new OverlayConflictError(file.path, 'is a symbolic link without a target');
}

function checkParents(
  base: BaseIndex,
  file: PlannedFile,
  overlay: Map<string, PlannedFile>,
  parents: Map<string, NodeEntry>,
  mtime: number,
): void {
  for (const dir of ancestors(file.path)) {
    const mine = overlay.get(dir);
    if (mine) throw new OverlayConflictError(file.path, `its parent ${JSON.stringify(dir)} is a ${mine.type} of the overlay itself`);
    const entry = base.entries.get(dir);
    if (!entry) {
      if (!parents.has(dir)) parents.set(dir, { path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime });
      continue;
    }
    if (entry.type === 'dir') continue;
    if (entry.type === 'symlink') {
      const real = resolveInRoot(base, file.path);
      const hint =
        real !== undefined && real !== file.path ? ` Inside the root it resolves to ${JSON.stringify(real)}: write that path instead.` : '';
      throw new OverlayConflictError(
        file.path,
        `its parent ${JSON.stringify(dir)} is ${describe(entry)} in the base; netroot never writes through a base symlink, which could lead outside the root.${hint}`,
      );
    }
    throw new OverlayConflictError(file.path, `its parent ${JSON.stringify(dir)} is ${describe(entry)} in the base, not a directory`);
  }
}

function overlayEntry(file: PlannedFile, mtime: number): NodeEntry {
  const common = { path: file.path, uid: file.uid, gid: file.gid, mtime };
  if (file.type === 'symlink') return { ...common, type: 'symlink', mode: 0o777, size: 0, linkname: file.target! };
  return { ...common, type: 'file', mode: file.mode & 0o7777, size: file.content!.length, data: file.content! };
}

/** The next path of a hard link group becomes its holder when the overlay replaces the old one. */
function relink(base: BaseIndex, holder: BaseEntry, replaced: Set<string>, relinked: Map<string, BaseEntry>): void {
  const rest = (groupsOf(base).get(holder.path) ?? []).filter((e) => !replaced.has(e.path));
  const next = rest[0];
  if (!next) return;
  relinked.set(next.path, { ...holder, path: next.path });
  for (const other of rest.slice(1)) relinked.set(other.path, { ...other, linkname: next.path });
}

/** Checks the overlay against the base and says exactly what changes. Throws OverlayConflictError. */
export function mergeOverlay(
  base: BaseIndex,
  files: readonly PlannedFile[],
  options: { mtime: number; removes?: readonly string[] },
): OverlayMerge {
  const overlay = new Map<string, PlannedFile>();
  for (const file of files) {
    checkPath(file);
    if (overlay.has(file.path)) throw new OverlayConflictError(file.path, 'is written twice by the overlay');
    overlay.set(file.path, file);
  }
  const parents = new Map<string, NodeEntry>();
  const replaced = new Set<string>();
  const entries: NodeEntry[] = [];
  for (const file of overlay.values()) {
    checkParents(base, file, overlay, parents, options.mtime);
    const existing = base.entries.get(file.path);
    if (existing?.type === 'dir') {
      throw new OverlayConflictError(file.path, 'the base has a directory there; an overlay file cannot replace a directory');
    }
    if (existing) replaced.add(file.path);
    entries.push(overlayEntry(file, options.mtime));
  }
  const removed = matchRemovals(base, options.removes ?? []).filter((p) => !overlay.has(p));
  for (const p of removed) replaced.add(p);
  const relinked = new Map<string, BaseEntry>();
  for (const path of replaced) {
    const entry = base.entries.get(path)!;
    if (entry.type === 'file') relink(base, entry, replaced, relinked);
  }
  entries.push(...parents.values());
  entries.sort((a, b) => comparePaths(a.path, b.path));
  return { entries, replaced, relinked, removed };
}
