/**
 * The writing half of a deploy, on the target host. Each node's tree stays at
 * ROOT/NODE (the path its export names); netroot's own records live beside
 * the nodes in ROOT/.netroot:
 *
 *   nodes/NODE/current            the live generation's number (replaced by rename: the commit)
 *   nodes/NODE/history            one line a commit: generation, when (epoch s), reboot|same
 *                                  (whether the node must reboot to run it): what `status` and
 *                                  `rollout` compare with the node's boot time
 *   nodes/NODE/gen/G/manifest.json what generation G holds
 *   nodes/NODE/gen/G/undo/         what deploying G replaced or removed: with the live files,
 *                                  the previous generation (hard links and renames, no copies)
 *   clusters/CLUSTER.json          the secrets' fingerprint and the boot server files deployed
 *   tmp/NODE/                      rsync's temporary files and seeded state, on the same filesystem
 *
 * Every file reaches the live tree by rename (rsync writes a temporary file
 * and renames it; a file it replaces is first hard-linked into undo/), so a
 * node reading it sees the old or the new file. A deploy cut short leaves
 * gen/G without `current` pointing at it; running deploy again finishes it:
 * files already new are skipped by checksum, so their kept old copies stay.
 */
import os from 'node:os';
import path from 'node:path';
import { MissingProgramError, TargetError } from '../errors.js';
import { debianPackage } from '../tools.js';
import { alive } from '../cache.js';
import type { Manifest } from '../entries/manifest.js';
import type { BootFile, BootFileChange, NodeChanges, NodeRollback, NodeTarget } from './plan.js';
import type { ExportfsOutcome } from './options.js';
import { rsync, type Target } from './target.js';
import {
  commitGeneration,
  digestsIn,
  lines,
  listFiles,
  listTree,
  makeDirsRemoveFiles,
  moveSeededState,
  moveToUndo,
  readManifestTexts,
  readNodeFacts,
  reexport,
  releaseLock,
  removeEmptiedDirs,
  removeOrphans,
  restoreFromUndo,
  setAttributes,
  startGeneration,
  takeLock,
} from './target-commands.js';

export { readTargetFile, writeTargetFile } from './target-commands.js';

export const META = '.netroot';

export interface NodePaths {
  live: string;
  meta: string;
  tmp: string;
}

export function nodePaths(root: string, node: string): NodePaths {
  return { live: `${root}/${node}`, meta: `${root}/${META}/nodes/${node}`, tmp: `${root}/${META}/tmp/${node}` };
}

/** rsync options that keep a root filesystem whole: owners by number, hard links, ACLs, xattrs (file capabilities). */
const KEEP = ['-a', '-H', '-A', '-X', '--numeric-ids'];

/** Parents before children, so rsync makes directories before their files. */
const sorted = (list: readonly string[]): string[] => [...list].sort();

function parseJson<T>(text: string | undefined, what: string): T | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new TargetError(`${what} on the target cannot be read (not JSON); it was not written by this version of netroot`);
  }
}

/** What the target holds for a node: its generations' manifests, and which state paths exist in its tree. */
export async function readNodeTarget(
  target: Target,
  root: string,
  node: string,
  state: string[],
  /** A deploy does not need the generation before the live one (a rollback does): megabytes not read. */
  { previous: withPrevious = true }: { previous?: boolean } = {},
): Promise<NodeTarget> {
  const { live, meta } = nodePaths(root, node);
  const facts = await readNodeFacts(target, live, meta, state);
  const { generation, pending } = facts;
  // The manifests of the live, the previous and a pending generation, in one round trip.
  const wanted = [generation, ...(withPrevious ? [generation - 1] : []), pending].filter((g) => g > 0);
  const byGeneration = await readManifestTexts(target, meta, wanted);
  const manifest = (g: number): Manifest | undefined => {
    const text = byGeneration.get(g);
    return g > 0 && text ? parseJson<Manifest>(text, `${node}'s generation ${g}`) : undefined;
  };
  const current = manifest(generation);
  const previous = withPrevious ? manifest(generation - 1) : undefined;
  const pendingManifest = pending ? manifest(pending) : undefined;
  return {
    generation,
    ...(current ? { current } : {}),
    ...(previous ? { previous } : {}),
    ...(pendingManifest ? { pending: { generation: pending, manifest: pendingManifest } } : {}),
    stateRoots: facts.stateRoots,
    ...(facts.live ? {} : { existing: {} }),
  };
}

/**
 * What the node's live tree holds of `wanted` (a tree netroot never deployed: copied by another
 * tool), as manifest entries read there: type, mode, owner and links by one `find`, and the
 * sha256 of only the files whose type and size match the new build's (the others differ anyway).
 */
export async function existingEntries(target: Target, root: string, node: string, wanted: Manifest): Promise<Manifest> {
  const { live } = nodePaths(root, node);
  const found: Manifest = {};
  for (const e of await listTree(target, live)) {
    if (!(e.path in wanted)) continue;
    const base = { m: e.mode, u: e.uid, g: e.gid };
    if (e.type === 'd') found[e.path] = { t: 'd', ...base };
    else if (e.type === 'l') found[e.path] = { t: 'l', ...base, l: e.link };
    else if (e.type === 'f') found[e.path] = { t: 'f', ...base, s: e.size };
    else found[e.path] = { t: 'o', ...base };
  }
  const hash = Object.keys(found).filter((p) => found[p]!.t === 'f' && wanted[p]!.t === 'f' && wanted[p]!.s === found[p]!.s);
  if (hash.length) {
    for (const [p, h] of Object.entries(await digestsIn(target, live, hash))) if (found[p]) found[p]!.h = h;
  }
  // A device node's number is not read here: it counts as changed, and rsync sets it.
  return found;
}

/** Files kept in generation G's undo/ (what deploying G replaced). */
export async function undoList(target: Target, root: string, node: string, generation: number): Promise<string[]> {
  const { meta } = nodePaths(root, node);
  return listFiles(target, `${meta}/gen/${generation}/undo`);
}

/** Move `paths` out of the live tree into undo/ (or drop them when undo/ already holds their old copy); then the emptied directories. */
async function removeLive(target: Target, paths: NodePaths, undo: string, removed: string[], was: Manifest | undefined): Promise<void> {
  if (removed.length === 0) return;
  const isDir = (p: string): boolean => was?.[p]?.t === 'd';
  const files = removed.filter((p) => !isDir(p));
  const emptied = removed.filter(isDir).sort().reverse();
  if (files.length) await moveToUndo(target, paths.live, undo, files);
  // A directory the node wrote into is not netroot's to remove: rmdir leaves it.
  if (emptied.length) await removeEmptiedDirs(target, paths.live, emptied);
}

/** Point `current` at the new generation (the commit), then drop what no rollback needs any more. */
async function commit(target: Target, paths: NodePaths, generation: number, reboot: boolean): Promise<void> {
  await commitGeneration(target, paths.meta, paths.tmp, generation, reboot);
}

/** Start (or resume) writing a generation: its directories, its manifest, and no stale rsync temporaries. */
async function begin(target: Target, paths: NodePaths, generation: number, manifest: Manifest, orphans: string[]): Promise<string> {
  const gen = `${paths.meta}/gen/${generation}`;
  // Written by the deploy that was cut short, and wanted by neither generation.
  // Children first (sorted, then reversed: in place, as the plan reports them).
  if (orphans.length) await removeOrphans(target, paths.live, orphans.sort().reverse());
  await startGeneration(target, { meta: paths.meta, gen, tmp: paths.tmp, live: paths.live }, JSON.stringify(manifest));
  return gen;
}

export interface ApplyNode {
  root: string;
  node: string;
  /** The node's tree in the build output, on this machine. */
  source: string;
  manifest: Manifest;
  /** The live generation's manifest, if netroot deployed one. */
  current?: Manifest;
  changes: NodeChanges;
  /** Files generation `changes.generation` already kept in undo/ (a deploy cut short). */
  undone: string[];
}

/** Deploy one node's new generation. */
export async function applyNode(target: Target, a: ApplyNode): Promise<void> {
  const paths = nodePaths(a.root, a.node);
  const { changes } = a;
  const gen = await begin(target, paths, changes.generation, a.manifest, changes.orphans);
  const undo = `${gen}/undo`;
  const common = [
    ...KEEP,
    '--checksum',
    '--files-from=-',
    `--temp-dir=${paths.tmp}/rsync`,
    `${a.source}/`,
    target.rsyncPath(`${paths.live}/`),
  ];
  const transfer = sorted([...changes.added, ...changes.changed]);
  const kept = new Set(a.undone);
  // A file whose old copy a cut-short run already kept must not be kept again: the copy would be the new file.
  const fresh = transfer.filter((p) => !kept.has(p));
  const again = transfer.filter((p) => kept.has(p));
  if (fresh.length) await rsync(target, ['--backup', `--backup-dir=${undo}`, ...common], lines(fresh));
  if (again.length) await rsync(target, common, lines(again));
  if (changes.seeded.length) {
    // State is seeded whole into a temporary directory and renamed in: a node never sees half of it.
    await rsync(target, [...KEEP, '-r', '--files-from=-', `${a.source}/`, target.rsyncPath(`${paths.tmp}/seed/`)], lines(changes.seeded));
    await moveSeededState(target, `${paths.tmp}/seed`, paths.live, changes.seeded);
  }
  await removeLive(target, paths, undo, changes.removed, a.current);
  await commit(target, paths, changes.generation, changes.reboot !== undefined);
}

/** Put the previous generation back: its files from the live generation's undo/, state untouched. */
export async function applyRollback(
  target: Target,
  root: string,
  node: string,
  r: NodeRollback,
  previous: Manifest,
  current: Manifest,
): Promise<void> {
  const paths = nodePaths(root, node);
  const from = `${paths.meta}/gen/${r.generation - 1}/undo`;
  const gen = await begin(target, paths, r.generation, previous, []);
  const undo = `${gen}/undo`;
  if (r.restore.length) {
    const code = await restoreFromUndo(target, { from, live: paths.live, undo, rsyncTmp: `${paths.tmp}/rsync` }, KEEP, sorted(r.restore));
    if (code !== 0) throw new TargetError(`restoring ${node}'s files failed (rsync on the target host, exit ${code})`);
  }
  if (r.attrs.length)
    await setAttributes(
      target,
      paths.live,
      [...r.attrs].sort((x, y) => (x.path < y.path ? -1 : 1)),
    );
  await removeLive(target, paths, undo, r.removed, current);
  await commit(target, paths, r.generation, r.reboot !== undefined);
}

/**
 * One deploy or rollback at a time per export root: ROOT/.netroot/lock names
 * its holder (host and pid), made whole by a rename. A holder on this host
 * that is gone (killed) is taken over; one elsewhere must be removed by hand.
 * Returns the release.
 */
export async function lockTarget(target: Target, root: string): Promise<() => Promise<void>> {
  const dir = `${root}/${META}`;
  const me = `${os.hostname()} ${process.pid}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    const lock = await takeLock(target, dir, me);
    if (lock.taken) return () => releaseLock(target, dir, me);
    const [host, pid] = lock.holder.split(' ');
    if (attempt === 0 && host === os.hostname() && pid && !alive(Number(pid))) {
      // Its holder was killed: the deploy it ran is finished by this one.
      await releaseLock(target, dir, lock.holder);
      continue;
    }
    throw new TargetError(
      `another deploy or rollback (${lock.holder || 'unknown holder'}) is running on ${target.shown}; if none is, remove ${dir}/lock`,
    );
  }
  throw new TargetError(`cannot take ${dir}/lock`);
}

/**
 * Write the boot server's files that are added or changed, and remove those no longer wanted. `tftpFrom`,
 * `tftpTo`: the build's TFTP tree and the TFTP root on the target host.
 */
export async function applyBootFiles(
  target: Target,
  boot: BootFileChange[],
  files: (BootFile & { source: string })[],
  tftpFrom: string,
  tftpTo: string,
): Promise<void> {
  const changed = boot.filter((b) => b.status === 'added' || b.status === 'changed').map((b) => files.find((f) => f.path === b.path)!);
  const removed = boot.filter((b) => b.status === 'removed').map((b) => b.path);
  if (changed.length + removed.length === 0) return;
  await makeDirsRemoveFiles(target, [...new Set(changed.map((f) => path.posix.dirname(f.path)))], removed);
  // rsync writes a temporary file beside each and renames it: dnsmasq, exportfs and TFTP clients see the old or the new file.
  const options = ['--checksum', '--perms', '--chmod=D755,F644', '--times'];
  const tftp = changed.filter((f) => f.what === 'tftp');
  if (tftp.length) {
    await rsync(
      target,
      [...options, '--files-from=-', `${tftpFrom}/`, target.rsyncPath(`${tftpTo}/`)],
      tftp.map((f) => `${path.relative(tftpFrom, f.source)}\n`).join(''),
    );
  }
  for (const file of changed.filter((f) => f.what !== 'tftp')) await rsync(target, [...options, file.source, target.rsyncPath(file.path)]);
}

/**
 * `exportfs -ra` on the target host when the exports changed (`allowed`: not turned off). Ganesha reads
 * its own file: where it runs, the kernel server's exportfs is not needed.
 */
export async function runExportfs(target: Target, allowed: boolean, needed: boolean, ganesha: boolean): Promise<ExportfsOutcome> {
  if (!allowed) return 'skipped';
  if (!needed) return 'not needed';
  if (await reexport(target)) return 'ran';
  if (ganesha) return 'skipped';
  throw new MissingProgramError(
    [{ program: 'exportfs', package: debianPackage('exportfs') }],
    target.spec.kind === 'ssh' ? target.spec.host : 'this machine',
  );
}
