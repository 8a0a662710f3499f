/**
 * A node booted from its export tree: systemd-nspawn runs the tree's own
 * systemd in the node's network namespace, so keepalived, MariaDB and the k3s
 * units start as they would on the board. Its root is its directory in the
 * lab's export root (exports.ts), which keeps what the node writes across its
 * reboots, as its NFS root would, and never writes the build's tree.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { LOCAL_STORAGE_MOUNT } from '../plan/context.js';
import { startTool, type RunningTool } from '../tools.js';
import type { NodeCgroup } from './cgroups.js';
import { LabError } from './errors.js';
import { netnsPath, tryRun, waitFor, type CommandResult, type RunOptions } from './run-command.js';
import type { LabNode } from './topology.js';

export interface MachineOptions {
  /** The node's tree as the build wrote it (out/…/rootfs/<node>). */
  tree: string;
  /** The node's root: its directory in the lab's export root. */
  root: string;
  /** The lab's directory for this node: its console logs. */
  workDir: string;
  /** The node's own cgroup, where its systemd-nspawn starts (cgroups.ts says why). */
  cgroup: NodeCgroup;
  /** systemd arguments the lab adds for its host (host-workarounds.ts), whatever the profile says. */
  hostArguments?: string[];
  /** The node has local storage: a directory of the lab's stands in for its ext4 filesystem (host-workarounds.ts). */
  localStorage?: boolean;
}

export class Machine {
  readonly node: LabNode;
  private readonly options: MachineOptions;
  private nspawn: RunningTool | undefined;
  private leader: number | undefined;
  private boots = 0;
  /**
   * The kernel command line the node netbooted with (its pxelinux append line). A container has
   * no kernel of its own: its systemd gets the systemd.* arguments of it, as a kernel passes them on.
   */
  kernelArgs: string[] = [];

  constructor(node: LabNode, options: MachineOptions) {
    this.node = node;
    this.options = {
      ...options,
      tree: path.resolve(options.tree),
      root: path.resolve(options.root),
      workDir: path.resolve(options.workDir),
    };
  }

  /** The node's export tree as the build wrote it (never written by the lab). */
  get tree(): string {
    return this.options.tree;
  }

  get root(): string {
    return this.options.root;
  }

  get consoleLog(): string {
    return path.join(this.options.workDir, `console-${this.boots}.log`);
  }

  get running(): boolean {
    return this.leader !== undefined && existsSync(`/proc/${this.leader}`);
  }

  /** Where the node's local storage lives, kept across its reboots as a disk would be. */
  get localStorage(): string {
    return path.join(this.options.workDir, 'local-storage');
  }

  /** A fresh directory for the node's console logs, and blank local storage. */
  async reset(): Promise<void> {
    await rm(this.options.workDir, { recursive: true, force: true });
    await mkdir(this.options.workDir, { recursive: true });
    if (this.options.localStorage) await mkdir(this.localStorage);
  }

  /** Boots the node; returns once its systemd (the container's PID 1) runs. */
  async boot(): Promise<void> {
    if (this.running) throw new LabError(`${this.node.name} is already running`);
    this.boots++;
    await this.options.cgroup.create();
    const [command, args] = this.options.cgroup.wrap('nsenter', [
      `--net=${netnsPath(this.node.ns)}`,
      '--',
      'systemd-nspawn',
      '--boot',
      // No systemd on the host to register with or to create a scope: the container lives in the node's own cgroup.
      '--register=no',
      '--keep-unit',
      `--directory=${this.root}`,
      `--machine=${this.node.name}`,
      // The node's own namespace is its network: keepalived adds the VIP to its interface and sends VRRP.
      '--capability=CAP_NET_ADMIN',
      '--console=read-only',
      '--link-journal=no',
      '--resolv-conf=off',
      '--timezone=off',
      ...(this.options.localStorage ? [`--bind=${this.localStorage}:${LOCAL_STORAGE_MOUNT}`] : []),
      ...systemdArguments([...this.kernelArgs, ...(this.options.hostArguments ?? [])]),
    ]);
    this.nspawn = startTool(command, args, {
      stdoutFile: this.consoleLog,
      stderrFile: `${this.consoleLog}.err`,
      env: { SYSTEMD_COLORS: '0' },
    });
    const nspawnPid = this.nspawn.child.pid;
    if (!nspawnPid) throw new LabError(`systemd-nspawn did not start for ${this.node.name}`);
    this.leader = await waitFor(() => containerInit(nspawnPid), 20_000, 200);
    if (!this.leader) {
      const why = await readFile(`${this.consoleLog}.err`, 'utf8').catch(() => '');
      this.nspawn.child.kill('SIGKILL');
      throw new LabError(
        `${this.node.name} did not boot: systemd-nspawn ${why.trim().split('\n').slice(-4).join(' | ') || 'started no init'}`,
      );
    }
    // Two nodes in one cgroup tree break each other's units (status=219/CGROUP): refuse to go on.
    const cgroup = await readFile(`/proc/${this.leader}/cgroup`, 'utf8').catch(() => '');
    if (!this.options.cgroup.holds(cgroup)) {
      await this.powerOff();
      throw new LabError(
        `${this.node.name}'s systemd is not in the node's own cgroup (${this.options.cgroup.dirs.join(', ')}): /proc/PID/cgroup says ${cgroup.trim().split('\n').join(' | ')}`,
      );
    }
  }

  /** Pulls the power: every process of the node dies at once, nothing is shut down cleanly. */
  async powerOff(): Promise<void> {
    if (this.leader !== undefined) {
      try {
        process.kill(this.leader, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (this.nspawn) await this.nspawn.stop(15_000);
    this.leader = undefined;
    this.nspawn = undefined;
    // The next boot starts from an empty cgroup, as a board's from an empty kernel; one left busy is emptied at the lab's end.
    await this.options.cgroup.remove(5_000);
  }

  /** An orderly power-off (`systemctl poweroff`): services stop cleanly; pulls the power if it takes longer than `timeoutMs`. */
  async shutdown(timeoutMs = 90_000): Promise<'clean' | 'forced'> {
    if (!this.running) return 'clean';
    await this.exec('systemctl', ['--no-block', 'poweroff'], { timeoutMs: 10_000 });
    const leader = this.leader;
    const gone = await waitFor(async () => (leader === undefined || !existsSync(`/proc/${leader}`) ? true : undefined), timeoutMs, 500);
    await this.powerOff();
    return gone ? 'clean' : 'forced';
  }

  /** A path inside the node's root as it is on its export (its writes included); use while it is off. */
  pathInRoot(relative: string): string {
    return path.join(this.root, relative);
  }

  /** Runs a program inside the running node, as root, in all its namespaces. */
  async exec(command: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
    if (!this.running) return { ok: false, exitCode: undefined, stdout: '', stderr: `${this.node.name} is not running` };
    // nsenter forks into the node's PID namespace, and killing nsenter leaves that child running (a
    // hung mariadb client held a lab for 17 minutes): the node's own `timeout` ends it from inside.
    const seconds = Math.max(1, Math.ceil((options.timeoutMs ?? 30_000) / 1000) - 1);
    const inside = ['timeout', '-k', '1', String(seconds), command, ...args];
    return tryRun('nsenter', ['-t', String(this.leader), '-m', '-u', '-i', '-n', '-p', '-r', '-w', '--', ...inside], options);
  }

  /** The unit's last lines of this boot; with `grep`, its last lines that match it (journalctl's PCRE2 --grep). */
  async journal(unit: string, lines = 8, grep?: string): Promise<string> {
    const result = await this.exec(
      'journalctl',
      ['--no-pager', '-o', 'cat', '-b', '0', '-n', String(lines), '-u', unit, ...(grep ? [`--grep=${grep}`] : [])],
      { timeoutMs: 10_000 },
    );
    return result.stdout.trim();
  }

  async unitState(unit: string): Promise<string> {
    const result = await this.exec('systemctl', ['is-active', unit], { timeoutMs: 10_000 });
    return result.stdout.trim() || 'unknown';
  }
}

/** The arguments of a kernel command line that systemd reads (systemd.mask=…, systemd.unit=…): a container's systemd takes them as its own arguments. */
export function systemdArguments(kernelArgs: string[]): string[] {
  return kernelArgs.filter((arg) => arg.startsWith('systemd.'));
}

/** The container's PID 1: the child of systemd-nspawn that runs systemd. */
async function containerInit(nspawnPid: number): Promise<number | undefined> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the command name (which may hold spaces): state, ppid, …
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[1]) !== nspawnPid) continue;
    const exe = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
    if (exe.trim() === 'systemd') return Number(entry);
  }
  return undefined;
}
