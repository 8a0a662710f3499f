/**
 * The boot server's file layout: the paths the generated files name (the
 * export root, the TFTP root) and the daemons' private state (/run,
 * /var/lib/nfs) as mount points in a mount namespace of its own, wherever the
 * profile puts them (/srv, /export, /var/lib/tftpboot, nested or not), without
 * writing or hiding anything of the host.
 *
 * The namespace gets a new root, a tmpfs. Every directory on the way to a mount
 * point (a "spine" directory: /, /var, /var/lib for /var/lib/tftpboot) is a
 * directory of that tmpfs holding the host's entries of it, bound (so
 * /var/lib/dpkg stays visible next to /var/lib/nfs); the mount points are
 * created there, the mounts made, and the namespace pivots into the new root.
 * Covering a whole top directory instead hid /var/lib/nfs behind a /var tmpfs.
 */
import path from 'node:path';
import { LabError } from './errors.js';
import { shellWord as q } from '../tools.js';

export interface LayoutMount {
  /** Where the daemons see it. */
  path: string;
  /** A host directory bound there; none: a private tmpfs. */
  source?: string;
}

/** The boot server's mounts: its private state, and the build's trees where the profile serves them. */
export function bootServerMounts(
  exports: { root: string; tftpRoot: string },
  sources: { exportRoot: string; tftp: string },
): LayoutMount[] {
  return [
    { path: '/run' },
    // /var/lib/nfs comes with nfs-ganesha: covered, never written.
    { path: '/var/lib/nfs' },
    { path: exports.root, source: sources.exportRoot },
    { path: exports.tftpRoot, source: sources.tftp },
  ];
}

const inside = (child: string, parent: string): boolean => parent === '/' || child.startsWith(`${parent}/`);

/** Every proper ancestor of `p`, from / down. */
function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let dir = path.posix.dirname(p); ; dir = path.posix.dirname(dir)) {
    out.unshift(dir);
    if (dir === '/') return out;
  }
}

/** The directories on the way to the mount points that are not themselves inside one: made in the new root, with the host's entries bound. */
export function spineDirectories(mounts: LayoutMount[]): string[] {
  const targets = mounts.map((m) => m.path);
  const spine = new Set(targets.flatMap(ancestors).filter((dir) => !targets.some((t) => t === dir || inside(dir, t))));
  return [...spine].sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
}

const depth = (p: string): number => (p === '/' ? 0 : p.split('/').length - 1);

/** Paths the lab can lay out: absolute, normalised, not /, and no two mounts at one place. */
function checkMounts(mounts: LayoutMount[]): void {
  const seen = new Set<string>();
  for (const { path: p } of mounts) {
    if (!path.posix.isAbsolute(p) || path.posix.normalize(p) !== p || p.endsWith('/'))
      throw new LabError(`the boot server cannot lay out ${p}: not a normalised absolute path`);
    if (seen.has(p))
      throw new LabError(
        `the boot server cannot serve two things at ${p}: the export root, the TFTP root, /run and /var/lib/nfs must differ`,
      );
    seen.add(p);
  }
}

/**
 * The shell script (sh -eu) that lays the mounts out in the current mount
 * namespace, which must be private: the new root is a tmpfs on `newRoot`.
 */
export function layoutScript(mounts: LayoutMount[], newRoot: string): string[] {
  checkMounts(mounts);
  const spine = spineDirectories(mounts);
  const skip = new Set([...spine, ...mounts.map((m) => m.path)]);
  const lines = [`new=${q(newRoot)}`, 'mount -t tmpfs -o mode=0755 lab-boot-root "$new"'];
  for (const dir of spine) {
    // Names in this directory that the layout makes itself (the next spine directory, a mount point).
    const own = [...skip].filter((p) => p !== '/' && path.posix.dirname(p) === dir).map((p) => path.posix.basename(p));
    const prefix = dir === '/' ? '' : dir;
    lines.push(
      `mkdir -p "$new"${q(dir)}`,
      `if [ -d ${q(dir)} ]; then`,
      `  chmod --reference=${q(dir)} "$new"${q(dir)}`,
      `  for e in ${q(prefix)}/* ${q(prefix)}/.[!.]*; do`,
      '    [ -e "$e" ] || [ -L "$e" ] || continue',
      '    n=${e##*/}',
      ...(own.length ? [`    case "$n" in ${own.map(q).join('|')}) continue ;; esac`] : []),
      `    t="$new"${q(prefix)}/"$n"`,
      '    if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$t"',
      '    elif [ -d "$e" ]; then mkdir "$t"; mount --rbind "$e" "$t"',
      '    else touch "$t"; mount --bind "$e" "$t"; fi',
      '  done',
      'fi',
    );
  }
  // Outer mounts first: a mount point inside another mount is made in that mount's source (a lab directory or a tmpfs).
  for (const mount of [...mounts].sort((a, b) => depth(a.path) - depth(b.path))) {
    lines.push(`mkdir -p "$new"${q(mount.path)}`);
    lines.push(
      mount.source
        ? `mount --bind ${q(mount.source)} "$new"${q(mount.path)}`
        : `mount -t tmpfs -o mode=0755 lab-boot-state "$new"${q(mount.path)}`,
    );
  }
  lines.push('cd "$new"', 'mkdir .old-root', 'pivot_root . .old-root', 'umount -l /.old-root', 'rmdir /.old-root');
  return lines;
}
