/**
 * Every command a deploy, rollback or rollout runs on the target host, one
 * named function each: a small POSIX sh script and the reading of its output.
 * They take the paths they work on (the layout of ROOT/.netroot is apply.ts's
 * and records.ts's to say), so each is tested against a temporary directory
 * through the local transport (test/deploy/target-commands.test.ts), which
 * drives the scripts exactly as ssh does. Exit status 3 is the scripts' "not
 * there" answer (target.ts returns it); any other failure is a TargetError.
 */
import type { Target } from './target.js';

/** One path a line, as the scripts read them from their input. */
export const lines = (list: readonly string[]): string => (list.length ? `${list.join('\n')}\n` : '');

/** `sha256sum` output: digest by the path it names. */
function parseSums(stdout: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.*)$/.exec(line);
    if (m) found[m[2]!] = m[1]!;
  }
  return found;
}

// --- Files -----------------------------------------------------------------

/** Write a file on the target by rename: a reader sees the old or the new one. */
export async function writeTargetFile(target: Target, file: string, content: string, mode = '600'): Promise<void> {
  await target.sh(
    'set -e; umask 077; mkdir -p -- "$(dirname -- "$1")"; t="$1.tmp-$$"; cat > "$t"; chmod "$2" "$t"; mv -f -- "$t" "$1"',
    [file, mode],
    content,
  );
}

/** A regular file's content, or undefined when there is none. */
export async function readTargetFile(target: Target, file: string): Promise<string | undefined> {
  const { stdout, code } = await target.sh('[ -f "$1" ] || exit 3; cat -- "$1"', [file]);
  return code === 3 ? undefined : stdout;
}

/** The sha256 of each of `paths` (absolute) that is a regular file; the others are left out. */
export async function fileDigests(target: Target, paths: string[]): Promise<Record<string, string>> {
  const { stdout } = await target.sh('while IFS= read -r p; do [ -f "$p" ] && sha256sum -- "$p"; done; exit 0', [], lines(paths));
  return parseSums(stdout);
}

/** The sha256 of each of `files`, paths relative to `dir` (all must exist). */
export async function digestsIn(target: Target, dir: string, files: string[]): Promise<Record<string, string>> {
  const { stdout } = await target.sh('cd "$1" && tr "\\n" "\\0" | xargs -0r sha256sum --', [dir], lines(files));
  return parseSums(stdout);
}

/** One entry of a tree as `find` reads it. */
export interface TreeEntry {
  /** find's %y: f, d, l, or another letter. */
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  path: string;
  /** A symlink's target ('' for the others). */
  link: string;
}

/** Every entry under `dir` (none when it is missing): type, mode, owner, size and link target, by one `find`. */
export async function listTree(target: Target, dir: string): Promise<TreeEntry[]> {
  // NUL-separated: %y type, %m mode (octal), %U %G owner, %s size, %l link target, %P path; [ -d ] first: a missing tree is empty.
  const { stdout } = await target.sh('[ -d "$1" ] || exit 0; cd "$1" && find . -mindepth 1 -printf "%y %m %U %G %s %P\\0%l\\0"', [dir]);
  const entries: TreeEntry[] = [];
  const fields = stdout.split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const m = /^(\S) ([0-7]+) (\d+) (\d+) (\d+) (.*)$/s.exec(fields[i]!);
    if (!m) continue;
    entries.push({
      type: m[1]!,
      mode: parseInt(m[2]!, 8),
      uid: Number(m[3]),
      gid: Number(m[4]),
      size: Number(m[5]),
      path: m[6]!,
      link: fields[i + 1]!,
    });
  }
  return entries;
}

/** The files (not directories) under `dir`, relative to it; none when it is missing. */
export async function listFiles(target: Target, dir: string): Promise<string[]> {
  const { stdout } = await target.sh('cd "$1" 2>/dev/null || exit 0; find . ! -type d | sed "s|^\\./||"', [dir]);
  return stdout.split('\n').filter(Boolean);
}

/** The names in `dir`, one a line as `ls -1` sorts them; none when it is missing. */
export async function listNames(target: Target, dir: string): Promise<string[]> {
  const { stdout } = await target.sh('ls -1 -- "$1" 2>/dev/null; exit 0', [dir]);
  return stdout.split('\n').filter(Boolean);
}

// --- A node's generations ----------------------------------------------------

/** What a node's records and live tree say at a glance. */
export interface NodeFacts {
  /** The live generation (0: none). */
  generation: number;
  /** A generation begun and not committed (a deploy cut short), or 0. */
  pending: number;
  /** Whether the live tree exists. */
  live: boolean;
  /** Which of the state paths exist in the live tree (symlinks count). */
  stateRoots: string[];
}

export async function readNodeFacts(target: Target, live: string, meta: string, state: string[]): Promise<NodeFacts> {
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
  return {
    generation: Number(/^generation (\d+)$/m.exec(stdout)?.[1] ?? 0),
    pending: Number(/^pending (\d+)$/m.exec(stdout)?.[1] ?? 0),
    live: facts.includes('live'),
    stateRoots: facts.filter((l) => l.startsWith('state ')).map((l) => l.slice('state '.length)),
  };
}

/** The manifest texts of `generations`, in one round trip; a generation without one is left out. */
export async function readManifestTexts(target: Target, meta: string, generations: number[]): Promise<Map<number, string>> {
  const { stdout } = await target.sh(
    'meta=$1; shift; for g in "$@"; do printf "\\036%s\\n" "$g"; cat -- "$meta/gen/$g/manifest.json" 2>/dev/null; done; exit 0',
    [meta, ...generations.map(String)],
  );
  return new Map(
    stdout
      .split('\x1e')
      .filter(Boolean)
      .map((chunk) => {
        const newline = chunk.indexOf('\n');
        return [Number(chunk.slice(0, newline)), chunk.slice(newline + 1)] as const;
      })
      .filter(([, text]) => text !== ''),
  );
}

/** Start (or resume) generation directory `gen`: undo/, a fresh tmp (rsync/, seed/), the live tree if missing, and its manifest by rename. */
export async function startGeneration(
  target: Target,
  at: { meta: string; gen: string; tmp: string; live: string },
  manifest: string,
): Promise<void> {
  const script = [
    'set -e; umask 077',
    'mkdir -p -- "$1" "$2/undo"; rm -rf -- "$3"; mkdir -p -- "$3/rsync" "$3/seed"',
    '[ -d "$4" ] || { umask 022; mkdir -p -- "$4"; chmod 755 "$4"; }',
    't="$2/manifest.json.tmp-$$"; cat > "$t"; mv -f -- "$t" "$2/manifest.json"',
  ].join('\n');
  await target.sh(script, [at.meta, at.gen, at.tmp, at.live], manifest);
}

/** Remove `paths` (relative to `live`, children first): files and symlinks go, directories only when empty. */
export async function removeOrphans(target: Target, live: string, paths: string[]): Promise<void> {
  await target.sh(
    'while IFS= read -r p; do if [ -d "$1/$p" ] && [ ! -L "$1/$p" ]; then rmdir -- "$1/$p" 2>/dev/null || true; else rm -f -- "$1/$p"; fi; done',
    [live],
    lines(paths),
  );
}

/** Move each state path from `seed` into `live` by rename, unless the live tree already has it. */
export async function moveSeededState(target: Target, seed: string, live: string, paths: string[]): Promise<void> {
  const script =
    'seed=$1; live=$2; shift 2; for s in "$@"; do [ -e "$live/$s" ] || [ -L "$live/$s" ] && continue; mkdir -p -- "$(dirname -- "$live/$s")"; mv -- "$seed/$s" "$live/$s"; done';
  await target.sh(script, [seed, live, ...paths]);
}

/** Move `files` (relative) out of `live` into `undo`, or drop them where `undo` already keeps their old copy; directories stay. */
export async function moveToUndo(target: Target, live: string, undo: string, files: string[]): Promise<void> {
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
  await target.sh(script, [live, undo], lines(files));
}

/** rmdir each of `dirs` (relative to `live`, children first): one that is not empty stays. */
export async function removeEmptiedDirs(target: Target, live: string, dirs: string[]): Promise<void> {
  await target.sh('while IFS= read -r p; do rmdir -- "$1/$p" 2>/dev/null || true; done', [live], lines(dirs));
}

/**
 * The commit: append to `history`, point `current` at `generation` (by rename), drop the
 * generations no rollback needs (all but it and the one before, whose undo/ goes), and tmp.
 */
export async function commitGeneration(target: Target, meta: string, tmp: string, generation: number, reboot: boolean): Promise<void> {
  const script = [
    'set -e; meta=$1; g=$2; tmp=$3',
    // The last commits only: a node booted before the oldest kept one has missed them anyway.
    'h="$meta/history"; { tail -n 49 "$h" 2>/dev/null || true; printf "%s %s %s\\n" "$g" "$(date +%s)" "$4"; } > "$h.tmp"; mv -f "$h.tmp" "$h"',
    'printf "%s\\n" "$g" > "$meta/current.tmp"; mv -f "$meta/current.tmp" "$meta/current"',
    // The previous generation keeps its manifest (a rollback needs it); its undo/ restored the one before.
    'for d in "$meta"/gen/*; do n=${d##*/}; if [ "$n" -lt $((g - 1)) ] || [ "$n" -gt "$g" ]; then rm -rf -- "$d"; elif [ "$n" -eq $((g - 1)) ]; then rm -rf -- "$d/undo"; fi; done',
    'rm -rf -- "$tmp"',
  ].join('\n');
  await target.sh(script, [meta, String(generation), tmp, reboot ? 'reboot' : 'same']);
}

/** Copy `files` (relative) from `from` into `live` with rsync on the target host, keeping what they replace in `undo`; rsync's exit status. */
export async function restoreFromUndo(
  target: Target,
  at: { from: string; live: string; undo: string; rsyncTmp: string },
  keep: readonly string[],
  files: string[],
): Promise<number> {
  // Runs on the target host: the kept files are already there.
  const script = `rsync ${keep.join(' ')} --checksum --files-from=- --backup --backup-dir="$3" --temp-dir="$4" "$1/" "$2/"`;
  const { code } = await target.sh(`${script} || exit $?`, [at.from, at.live, at.undo, at.rsyncTmp], lines(files));
  return code;
}

/** Set type d (made if missing), mode and owner of each entry under `live`, in the order given (a symlink's mode is not set). */
export async function setAttributes(
  target: Target,
  live: string,
  entries: { t: string; m: number; u: number; g: number; path: string }[],
): Promise<void> {
  const script = [
    'while read -r t m u g p; do',
    '  if [ "$t" = d ]; then mkdir -p -- "$1/$p"; fi',
    '  chown -h "$u:$g" -- "$1/$p" 2>/dev/null || true',
    '  [ "$t" = l ] || chmod "$m" -- "$1/$p"',
    'done',
  ].join('\n');
  await target.sh(script, [live], lines(entries.map((x) => `${x.t} ${x.m.toString(8)} ${x.u} ${x.g} ${x.path}`)));
}

/** Each node's live generation ('0' when none) and its history file's text, in one round trip. */
export async function readCommitLogs(
  target: Target,
  nodesDir: string,
  nodes: string[],
): Promise<Map<string, { current: string; history: string }>> {
  const { stdout } = await target.sh(
    [
      'meta=$1; shift',
      'for n in "$@"; do printf "\\036%s %s\\n" "$n" "$(cat -- "$meta/$n/current" 2>/dev/null || echo 0)"; cat -- "$meta/$n/history" 2>/dev/null; done',
      'exit 0',
    ].join('\n'),
    [nodesDir, ...nodes],
  );
  const out = new Map<string, { current: string; history: string }>();
  for (const chunk of stdout.split('\x1e').filter(Boolean)) {
    const newline = chunk.indexOf('\n');
    const [name, current] = chunk.slice(0, newline).split(' ');
    out.set(name!, { current: current ?? '', history: chunk.slice(newline + 1) });
  }
  return out;
}

// --- The lock ------------------------------------------------------------------

/** Take `dir`/lock for `owner` (made whole by a rename); when another holds it, its owner line ('' if unreadable). */
export async function takeLock(target: Target, dir: string, owner: string): Promise<{ taken: true } | { taken: false; holder: string }> {
  const script = [
    'mkdir -p -- "$1"; d=$(mktemp -d "$1/.lock.XXXXXX") || exit 1',
    'printf "%s\\n" "$2" > "$d/owner"',
    'mv -T -- "$d" "$1/lock" 2>/dev/null && exit 0',
    'rm -rf -- "$d"; cat -- "$1/lock/owner" 2>/dev/null; exit 3',
  ].join('\n');
  const { stdout, code } = await target.sh(script, [dir, owner]);
  return code === 0 ? { taken: true } : { taken: false, holder: stdout.trim() };
}

/** Remove `dir`/lock if `owner` holds it. */
export async function releaseLock(target: Target, dir: string, owner: string): Promise<void> {
  await target.sh('[ "$(cat -- "$1/lock/owner" 2>/dev/null)" = "$2" ] && rm -rf -- "$1/lock"; exit 0', [dir, owner]);
}

// --- The cluster's records and the boot server ---------------------------------------

/** The *.json files in `dir` (regular files), by name. */
export async function listJsonFiles(target: Target, dir: string): Promise<string[]> {
  const { stdout } = await target.sh(
    'cd "$1" 2>/dev/null || exit 0; for f in *.json; do [ -f "$f" ] && printf "%s\\n" "$f"; done; exit 0',
    [dir],
  );
  return stdout.split('\n').filter(Boolean);
}

/**
 * Keep in `opDir` what an operation is about to replace: `record` as it is (once), and each of `paths`
 * as it is now (files/PATH) or that it is absent (a line in `absent`), unless already kept.
 * `fresh`: start over.
 */
export async function keepFiles(target: Target, opDir: string, record: string, paths: string[], fresh: boolean): Promise<void> {
  const script = [
    'set -e; d=$1; rec=$2; if [ "$3" = 1 ]; then rm -rf -- "$d"; fi',
    'mkdir -p -- "$d/files"; touch "$d/absent"',
    'if [ ! -e "$d/record.json" ] && [ ! -e "$d/no-record" ]; then',
    '  if [ -f "$rec" ]; then cp -p -- "$rec" "$d/record.tmp"; mv -f -- "$d/record.tmp" "$d/record.json"; else : > "$d/no-record"; fi',
    'fi',
    'while IFS= read -r p; do',
    '  if [ -e "$d/files$p" ] || grep -qxF -- "$p" "$d/absent"; then continue; fi',
    '  if [ -f "$p" ]; then',
    '    mkdir -p -- "$(dirname -- "$d/files$p")"; cp -p -- "$p" "$d/files$p.tmp"; mv -f -- "$d/files$p.tmp" "$d/files$p"',
    '  else printf "%s\\n" "$p" >> "$d/absent"; fi',
    'done',
  ].join('\n');
  await target.sh(script, [opDir, record, fresh ? '1' : '0'], paths.map((p) => `${p}\n`).join(''));
}

/** What `opDir` keeps: files to put back (absolute paths) and paths that were absent. */
export async function listKept(target: Target, opDir: string): Promise<{ restore: string[]; remove: string[] }> {
  const { stdout } = await target.sh(
    'cd "$1/files" 2>/dev/null || exit 0; find . -type f | sed "s|^\\.|file |"; sed "s|^|absent |" "$1/absent" 2>/dev/null; exit 0',
    [opDir],
  );
  const found = stdout.split('\n');
  return {
    restore: found.filter((l) => l.startsWith('file ')).map((l) => l.slice('file '.length)),
    remove: found.filter((l) => l.startsWith('absent ') && l.length > 'absent '.length).map((l) => l.slice('absent '.length)),
  };
}

/** Put back what `opDir` keeps: remove the paths that were absent, then each kept file by rename. */
export async function restoreKept(target: Target, opDir: string): Promise<void> {
  const script = [
    // Kept files that are gone (removed by hand) leave nothing to put back.
    'set -e; d=$1; [ -d "$d/files" ] || exit 0',
    'while IFS= read -r p; do if [ -n "$p" ]; then rm -f -- "$p"; fi; done < "$d/absent"',
    'cd "$d/files"',
    'find . -type f | while IFS= read -r f; do',
    '  p=${f#.}; mkdir -p -- "$(dirname -- "$p")"; cp -p -- "$f" "$p.netroot-tmp"; mv -f -- "$p.netroot-tmp" "$p"',
    'done',
  ].join('\n');
  await target.sh(script, [opDir]);
}

/** Remove `journal`, and every entry of `opsDir` but `keep`. */
export async function dropJournal(target: Target, journal: string, opsDir: string, keep: string): Promise<void> {
  await target.sh('rm -f -- "$1"; cd "$2" 2>/dev/null || exit 0; for d in *; do [ "$d" = "$3" ] || rm -rf -- "$d"; done; exit 0', [
    journal,
    opsDir,
    keep,
  ]);
}

/** Whether `program` is on the host's PATH. */
export async function hasProgram(target: Target, program: string): Promise<boolean> {
  return (await target.sh('command -v "$1" >/dev/null || exit 3', [program])).code === 0;
}

// --- The boot server ----------------------------------------------------------------

/** Whether the host's NFS server is nfs-ganesha (its service is running), rather than the kernel's. */
export async function ganeshaRuns(target: Target): Promise<boolean> {
  return (await target.sh('systemctl is-active --quiet nfs-ganesha 2>/dev/null || exit 3')).code === 0;
}

/** `exportfs -ra`; false when exportfs is not installed there. */
export async function reexport(target: Target): Promise<boolean> {
  const { code } = await target.sh('command -v exportfs >/dev/null || exit 3; exportfs -ra');
  return code === 0;
}

/** Make each of `dirs`, then remove each of `files` (absolute paths). */
export async function makeDirsRemoveFiles(target: Target, dirs: string[], files: string[]): Promise<void> {
  await target.sh(
    'n=$1; shift; i=0; for p in "$@"; do i=$((i + 1)); if [ $i -le "$n" ]; then mkdir -p -- "$p"; else rm -f -- "$p"; fi; done',
    [String(dirs.length), ...dirs, ...files],
  );
}
