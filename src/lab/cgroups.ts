/**
 * A cgroup of its own for every node, in each hierarchy where systemd tracks
 * processes (cgroup2, and the named v1 "systemd" hierarchy of a hybrid or
 * legacy host).
 *
 * Why: systemd-nspawn --keep-unit without a host systemd puts its container
 * in <its own cgroup>/payload, and the container's systemd takes that as the
 * root of its cgroup namespace. Started from the lab's cgroup, every node got
 * the same /payload: their units shared /payload/system.slice/X.service, so
 * one node's systemd removed the cgroup of a unit another node was starting,
 * whose process then could not attach ("Failed to attach to cgroup
 * /system.slice/X.service: No such file or directory", status=219/CGROUP).
 * Started from a cgroup of its own, each node's /payload is its own.
 */
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from './errors.js';
import { waitFor } from './run-command.js';
import { leftByEndedLab } from './network.js';

/** Where one hierarchy is mounted, and the lab's own cgroup in it. */
export interface Hierarchy {
  name: 'cgroup2' | 'name=systemd';
  /** The lab's cgroup, as /proc/PID/cgroup names it. */
  cgroup: string;
  /** The lab's cgroup as a directory: the mount point joined with the lab's path in it. */
  dir: string;
}

/**
 * The process-tracking hierarchies and this process's cgroup in each, from
 * /proc/self/mountinfo and /proc/self/cgroup. The v1 controller hierarchies
 * (memory, cpu, …) are not among them: nspawn mounts them read-only in a
 * container, so no node can create anything there.
 */
export function trackingHierarchies(mountinfo: string, ownCgroups: string): Hierarchy[] {
  const own = cgroupPaths(ownCgroups);
  const found = new Map<Hierarchy['name'], Hierarchy>();
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const [, , , root, mountPoint] = before.split(' ');
    const [fstype, , superOptions = ''] = after.split(' ');
    const name =
      fstype === 'cgroup2'
        ? 'cgroup2'
        : fstype === 'cgroup' && superOptions.split(',').includes('name=systemd')
          ? 'name=systemd'
          : undefined;
    const ownPath = name && own.get(name);
    if (!name || !ownPath || !root || !mountPoint || found.has(name)) continue;
    const relative = path.posix.relative(root, ownPath);
    // A mount of another part of the hierarchy (a container's view) does not show the lab's cgroup.
    if (relative.startsWith('..')) continue;
    found.set(name, { name, cgroup: ownPath, dir: path.posix.join(unescapeMountPath(mountPoint), relative) });
  }
  return [...found.values()];
}

/** A process's cgroup in each tracking hierarchy, from its /proc/PID/cgroup. */
function cgroupPaths(procCgroup: string): Map<Hierarchy['name'], string> {
  const paths = new Map<Hierarchy['name'], string>();
  for (const line of procCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '') paths.set('cgroup2', m[2]!);
    else if (m[1]!.split(',').includes('name=systemd')) paths.set('name=systemd', m[2]!);
  }
  return paths;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescapeMountPath = (p: string): string => p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));

export async function labHierarchies(): Promise<Hierarchy[]> {
  const [mountinfo, cgroups] = await Promise.all([readFile('/proc/self/mountinfo', 'utf8'), readFile('/proc/self/cgroup', 'utf8')]);
  const found = trackingHierarchies(mountinfo, cgroups);
  if (!found.length) throw new LabError('no cgroup hierarchy for the nodes: neither cgroup2 nor the named systemd hierarchy is mounted');
  return found;
}

/** Node cgroups a killed lab left behind, removed once their processes are gone; returns those still held. */
export async function removeStaleCgroups(hierarchies: Hierarchy[]): Promise<string[]> {
  const held: string[] = [];
  for (const h of hierarchies) {
    const names = (await readdir(h.dir, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => e.name);
    for (const name of names.filter(leftByEndedLab))
      if (!(await new NodeCgroup([h], name).remove(5_000))) held.push(path.join(h.dir, name));
  }
  return held;
}

/** A node's cgroup: one directory of the same name in every tracking hierarchy. */
export class NodeCgroup {
  readonly dirs: string[];
  private readonly hierarchies: Hierarchy[];
  private readonly name: string;

  constructor(hierarchies: Hierarchy[], name: string) {
    this.hierarchies = hierarchies;
    this.name = name;
    this.dirs = hierarchies.map((h) => path.posix.join(h.dir, name));
  }

  /** Whether a process's /proc/PID/cgroup puts it inside this cgroup in every tracking hierarchy. */
  holds(procCgroup: string): boolean {
    const seen = cgroupPaths(procCgroup);
    return this.hierarchies.every((h) => {
      const inside = path.posix.join(h.cgroup, this.name);
      const at = seen.get(h.name);
      return at !== undefined && (at === inside || at.startsWith(`${inside}/`));
    });
  }

  async create(): Promise<void> {
    for (const dir of this.dirs) await mkdir(dir, { recursive: true });
  }

  /**
   * `command args` started in this cgroup: a shell moves itself into it, then
   * execs, so that nspawn and everything it forks start there.
   */
  wrap(command: string, args: string[]): [string, string[]] {
    const move = 'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs"; shift; done; shift; exec "$@"';
    return ['sh', ['-euc', move, 'sh', ...this.dirs, '--', command, ...args]];
  }

  /** Removes the cgroup once its processes are gone (bounded); false if some are left. */
  async remove(timeoutMs = 10_000): Promise<boolean> {
    const done = await waitFor(
      async () => ((await Promise.all(this.dirs.map(removeTree))).every(Boolean) ? true : undefined),
      timeoutMs,
      250,
    );
    return done === true;
  }
}

/** rmdir of a cgroup and everything under it, deepest first; false while a process holds one. */
async function removeTree(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (!entries) return true;
  let ok = true;
  for (const entry of entries) if (entry.isDirectory()) ok = (await removeTree(path.join(dir, entry.name))) && ok;
  try {
    await rmdir(dir);
    return ok;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}
