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
import { TargetError } from '../errors.js';
import { alive } from '../cache.js';
import type { Manifest } from './manifest.js';
import type { NodeChanges, NodeRollback, NodeTarget } from './plan.js';
import { rsync, type Target } from './target.js';

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

const lines = (list: readonly string[]): string => (list.length ? `${list.join('\n')}\n` : '');

/** Parents before children, so rsync makes directories before their files. */
const sorted = (list: readonly string[]): string[] => [...list].sort();

/** Write a file on the target by rename: a reader sees the old or the new one. */
export async function writeTargetFile(target: Target, file: string, content: string, mode = '600'): Promise<void> {
  await target.sh(
    'set -e; umask 077; mkdir -p -- "$(dirname -- "$1")"; t="$1.tmp-$$"; cat > "$t"; chmod "$2" "$t"; mv -f -- "$t" "$1"',
    [file, mode],
    content,
  );
}

export async function readTargetFile(target: Target, file: string): Promise<string | undefined> {
  const { stdout, code } = await target.sh('[ -f "$1" ] || exit 3; cat -- "$1"', [file]);
  return code === 3 ? undefined : stdout;
}

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
  const script = [
    'live=$1; meta=$2; shift 2',
    'g=$(cat "$meta/current" 2>/dev/null || echo 0)',
    'echo "generation $g"',
    '[ -f "$meta/gen/$((g + 1))/manifest.json" ] && echo "pending $((g + 1))"',
    '[ -d "$live" ] && echo live',
    'for s in "$@"; do if [ -e "$live/$s" ] || [ -L "$live/$s" ]; then echo "state $s"; fi; done',
    'exit 0',
  ].join('\n');
  const { stdout } = await target.sh(script, [live, meta, ...state]);
  const facts = stdout.split('\n');
  const generation = Number(/^generation (\d+)$/m.exec(stdout)?.[1] ?? 0);
  const pending = Number(/^pending (\d+)$/m.exec(stdout)?.[1] ?? 0);
  // The manifests of the live, the previous and a pending generation, in one round trip.
  const wanted = [generation, ...(withPrevious ? [generation - 1] : []), pending].filter((g) => g > 0);
  const { stdout: texts } = await target.sh(
    'meta=$1; shift; for g in "$@"; do printf "\\036%s\\n" "$g"; cat -- "$meta/gen/$g/manifest.json" 2>/dev/null; done; exit 0',
    [meta, ...wanted.map(String)],
  );
  const byGeneration = new Map(
    texts
      .split('\x1e')
      .filter(Boolean)
      .map((chunk) => {
        const newline = chunk.indexOf('\n');
        return [Number(chunk.slice(0, newline)), chunk.slice(newline + 1)] as const;
      }),
  );
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
    stateRoots: facts.filter((l) => l.startsWith('state ')).map((l) => l.slice('state '.length)),
    ...(facts.includes('live') ? {} : { existing: {} }),
  };
}

/**
 * What the node's live tree holds of `wanted` (a tree netroot never deployed: copied by another
 * tool), as manifest entries read there: type, mode, owner and links by one `find`, and the
 * sha256 of only the files whose type and size match the new build's (the others differ anyway).
 */
export async function existingEntries(target: Target, root: string, node: string, wanted: Manifest): Promise<Manifest> {
  const { live } = nodePaths(root, node);
  // NUL-separated: %y type, %m mode (octal), %U %G owner, %s size, %l link target, %P path; [ -d ] first: a missing tree is empty.
  const { stdout } = await target.sh('[ -d "$1" ] || exit 0; cd "$1" && find . -mindepth 1 -printf "%y %m %U %G %s %P\\0%l\\0"', [live]);
  const found: Manifest = {};
  const fields = stdout.split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const m = /^(\S) ([0-7]+) (\d+) (\d+) (\d+) (.*)$/s.exec(fields[i]!);
    if (!m || !(m[6]! in wanted)) continue;
    const base = { m: parseInt(m[2]!, 8), u: Number(m[3]), g: Number(m[4]) };
    const p = m[6]!;
    if (m[1] === 'd') found[p] = { t: 'd', ...base };
    else if (m[1] === 'l') found[p] = { t: 'l', ...base, l: fields[i + 1]! };
    else if (m[1] === 'f') found[p] = { t: 'f', ...base, s: Number(m[5]) };
    else found[p] = { t: 'o', ...base };
  }
  const hash = Object.keys(found).filter((p) => found[p]!.t === 'f' && wanted[p]!.t === 'f' && wanted[p]!.s === found[p]!.s);
  if (hash.length) {
    const { stdout: sums } = await target.sh('cd "$1" && tr "\\n" "\\0" | xargs -0r sha256sum --', [live], lines(hash));
    for (const line of sums.split('\n')) {
      const m = /^([0-9a-f]{64}) [ *](.*)$/.exec(line);
      if (m && found[m[2]!]) found[m[2]!]!.h = m[1]!;
    }
  }
  // A device node's number is not read here: it counts as changed, and rsync sets it.
  return found;
}

/** Files kept in generation G's undo/ (what deploying G replaced). */
export async function undoList(target: Target, root: string, node: string, generation: number): Promise<string[]> {
  const { meta } = nodePaths(root, node);
  const { stdout } = await target.sh('cd "$1" 2>/dev/null || exit 0; find . ! -type d | sed "s|^\\./||"', [
    `${meta}/gen/${generation}/undo`,
  ]);
  return stdout.split('\n').filter(Boolean);
}

/** Move `paths` out of the live tree into undo/ (or drop them when undo/ already holds their old copy); then the emptied directories. */
async function removeLive(target: Target, paths: NodePaths, undo: string, removed: string[], was: Manifest | undefined): Promise<void> {
  if (removed.length === 0) return;
  const isDir = (p: string): boolean => was?.[p]?.t === 'd';
  const files = removed.filter((p) => !isDir(p));
  const emptied = removed.filter(isDir).sort().reverse();
  const script = [
    'live=$1; undo=$2',
    'while IFS= read -r p; do',
    '  [ -e "$live/$p" ] || [ -L "$live/$p" ] || continue',
    '  if [ -d "$live/$p" ] && [ ! -L "$live/$p" ]; then continue; fi',
    '  if [ -e "$undo/$p" ] || [ -L "$undo/$p" ]; then rm -f -- "$live/$p"; continue; fi',
    '  case $p in */*) mkdir -p -- "$undo/${p%/*}";; esac',
    '  mv -f -- "$live/$p" "$undo/$p"',
    'done',
  ].join('\n');
  if (files.length) await target.sh(script, [paths.live, undo], lines(files));
  // A directory the node wrote into is not netroot's to remove: rmdir leaves it.
  if (emptied.length) await target.sh('while IFS= read -r p; do rmdir -- "$1/$p" 2>/dev/null || true; done', [paths.live], lines(emptied));
}

/** Point `current` at the new generation (the commit), then drop what no rollback needs any more. */
async function commit(target: Target, paths: NodePaths, generation: number, reboot: boolean): Promise<void> {
  const script = [
    'set -e; meta=$1; g=$2; tmp=$3',
    // The last commits only: a node booted before the oldest kept one has missed them anyway.
    'h="$meta/history"; { tail -n 49 "$h" 2>/dev/null || true; printf "%s %s %s\\n" "$g" "$(date +%s)" "$4"; } > "$h.tmp"; mv -f "$h.tmp" "$h"',
    'printf "%s\\n" "$g" > "$meta/current.tmp"; mv -f "$meta/current.tmp" "$meta/current"',
    // The previous generation keeps its manifest (a rollback needs it); its undo/ restored the one before.
    'for d in "$meta"/gen/*; do n=${d##*/}; if [ "$n" -lt $((g - 1)) ] || [ "$n" -gt "$g" ]; then rm -rf -- "$d"; elif [ "$n" -eq $((g - 1)) ]; then rm -rf -- "$d/undo"; fi; done',
    'rm -rf -- "$tmp"',
  ].join('\n');
  await target.sh(script, [paths.meta, String(generation), paths.tmp, reboot ? 'reboot' : 'same']);
}

/** Start (or resume) writing a generation: its directories, its manifest, and no stale rsync temporaries. */
async function begin(target: Target, paths: NodePaths, generation: number, manifest: Manifest, orphans: string[]): Promise<string> {
  const gen = `${paths.meta}/gen/${generation}`;
  // Written by the deploy that was cut short, and wanted by neither generation.
  if (orphans.length)
    await target.sh(
      'while IFS= read -r p; do if [ -d "$1/$p" ] && [ ! -L "$1/$p" ]; then rmdir -- "$1/$p" 2>/dev/null || true; else rm -f -- "$1/$p"; fi; done',
      [paths.live],
      lines(orphans.sort().reverse()),
    );
  const script = [
    'set -e; umask 077',
    'mkdir -p -- "$1" "$2/undo"; rm -rf -- "$3"; mkdir -p -- "$3/rsync" "$3/seed"',
    '[ -d "$4" ] || { umask 022; mkdir -p -- "$4"; chmod 755 "$4"; }',
    't="$2/manifest.json.tmp-$$"; cat > "$t"; mv -f -- "$t" "$2/manifest.json"',
  ].join('\n');
  await target.sh(script, [paths.meta, gen, paths.tmp, paths.live], JSON.stringify(manifest));
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
    const script =
      'seed=$1; live=$2; shift 2; for s in "$@"; do [ -e "$live/$s" ] || [ -L "$live/$s" ] && continue; mkdir -p -- "$(dirname -- "$live/$s")"; mv -- "$seed/$s" "$live/$s"; done';
    await target.sh(script, [`${paths.tmp}/seed`, paths.live, ...changes.seeded]);
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
    // Runs on the target host: the kept files are already there.
    const script = `rsync ${KEEP.join(' ')} --checksum --files-from=- --backup --backup-dir="$3" --temp-dir="$4" "$1/" "$2/"`;
    const { code } = await target.sh(`${script} || exit $?`, [from, paths.live, undo, `${paths.tmp}/rsync`], lines(sorted(r.restore)));
    if (code !== 0) throw new TargetError(`restoring ${node}'s files failed (rsync on the target host, exit ${code})`);
  }
  if (r.attrs.length) {
    const script = [
      'while read -r t m u g p; do',
      '  if [ "$t" = d ]; then mkdir -p -- "$1/$p"; fi',
      '  chown -h "$u:$g" -- "$1/$p" 2>/dev/null || true',
      '  [ "$t" = l ] || chmod "$m" -- "$1/$p"',
      'done',
    ].join('\n');
    const attrs = [...r.attrs].sort((x, y) => (x.path < y.path ? -1 : 1));
    await target.sh(script, [paths.live], lines(attrs.map((x) => `${x.t} ${x.m.toString(8)} ${x.u} ${x.g} ${x.path}`)));
  }
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
  const script = [
    'mkdir -p -- "$1"; d=$(mktemp -d "$1/.lock.XXXXXX") || exit 1',
    'printf "%s\\n" "$2" > "$d/owner"',
    'mv -T -- "$d" "$1/lock" 2>/dev/null && exit 0',
    'rm -rf -- "$d"; cat -- "$1/lock/owner" 2>/dev/null; exit 3',
  ].join('\n');
  for (let attempt = 0; attempt < 2; attempt++) {
    const { stdout, code } = await target.sh(script, [dir, me]);
    if (code === 0)
      return async () =>
        void (await target.sh('[ "$(cat -- "$1/lock/owner" 2>/dev/null)" = "$2" ] && rm -rf -- "$1/lock"; exit 0', [dir, me]));
    const [host, pid] = stdout.trim().split(' ');
    if (attempt === 0 && host === os.hostname() && pid && !alive(Number(pid))) {
      // Its holder was killed: the deploy it ran is finished by this one.
      await target.sh('[ "$(cat -- "$1/lock/owner" 2>/dev/null)" = "$2" ] && rm -rf -- "$1/lock"; exit 0', [dir, stdout.trim()]);
      continue;
    }
    throw new TargetError(
      `another deploy or rollback (${stdout.trim() || 'unknown holder'}) is running on ${target.shown}; if none is, remove ${dir}/lock`,
    );
  }
  throw new TargetError(`cannot take ${dir}/lock`);
}
