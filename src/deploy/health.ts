/**
 * How `status` and `rollout` read a node, and how `rollout` reboots one.
 *
 * Health is read on the node itself, by one short read-only script run as
 * root: when its init started, systemd's verdict and its units, Galera's
 * wsrep status from MariaDB's socket, and whether the VIP is on one of its
 * interfaces. One read path gives every fact the table needs, for servers and
 * agents alike, through the access an operator already has to the boards
 * (SSH with the keys the profile authorises). The Galera recovery exchange
 * answers Galera's state alone, of servers alone, and only from a server that
 * is up enough to run it; the VIP, k3s and the boot time would need other paths.
 *
 * How a node is reached is a NodeAccess: SSH by default; the lab passes its
 * own (it enters its containers), as a user with another way to the boards
 * would (`--node-ssh`, `--reboot-command`).
 */
import type { ClusterNode } from '../profile/resolve.js';
import { runTool } from '../tools.js';
import type { NodeReading } from './rollout-plan.js';
import { q } from './target.js';

export interface NodeRun {
  ok: boolean;
  stdout: string;
  stderr: string;
}

export interface NodeAccess {
  /** `sh -c SCRIPT sh ARGS…` on the node as root, within `timeoutMs`; never throws for a node that does not answer. */
  run(node: ClusterNode, script: string, args: string[], timeoutMs: number): Promise<NodeRun>;
  /** Asks the node to reboot; returns once it was asked (the node goes down after). */
  reboot(node: ClusterNode): Promise<void>;
}

/** The wsrep variables read: state, component, size, position and the cluster's identity. */
const WSREP = [
  'wsrep_local_state_comment',
  'wsrep_cluster_status',
  'wsrep_cluster_size',
  'wsrep_last_committed',
  'wsrep_cluster_state_uuid',
];

/** Read-only; prints `key value` lines. $1: the VIP. */
export const PROBE = [
  'vip=$1',
  // In a container /proc/stat's btime is the host's boot; PID 1's start (ticks after it) is the node's own.
  "btime=$(awk '/^btime /{print $2}' /proc/stat); start=$(sed 's/.*) //' /proc/1/stat | awk '{print $20}'); tck=$(getconf CLK_TCK 2>/dev/null || echo 100)",
  '[ -n "$btime" ] && [ -n "$start" ] && echo "booted $((btime + start / tck))"',
  'echo "system $(systemctl is-system-running 2>/dev/null)"',
  'for u in mariadb keepalived k3s k3s-agent; do echo "unit $u $(systemctl is-active "$u" 2>/dev/null)"; done',
  'if command -v mariadb >/dev/null 2>&1; then',
  `  timeout 10 mariadb --batch --skip-column-names --connect-timeout=3 -e "SHOW GLOBAL STATUS WHERE Variable_name IN (${WSREP.map((v) => `'${v}'`).join(', ')})" 2>/dev/null | sed 's/^/galera /'`,
  'fi',
  // ip(8) where iproute2 is installed, else hostname -I (the hostname package is essential, but skips loopback).
  "if command -v ip >/dev/null 2>&1; then addrs=$(ip -o addr show | awk '{print $4}' | sed 's|/.*||'); else addrs=$(hostname -I 2>/dev/null); fi",
  'held=no; for a in $addrs; do [ "$a" = "$vip" ] && held=held; done; echo "vip $held"',
  'exit 0',
].join('\n');

/** The probe's output as a reading (pure). */
export function parseProbe(node: string, stdout: string): NodeReading {
  const units: Record<string, string> = {};
  const wsrep: Record<string, string> = {};
  let bootedAt: number | undefined;
  let system: string | undefined;
  let holdsVip = false;
  for (const line of stdout.split('\n')) {
    const [key, ...rest] = line.split(/[ \t]+/);
    const value = rest.join(' ').trim();
    if (key === 'booted' && /^\d+$/.test(value)) bootedAt = Number(value);
    else if (key === 'system') system = value || 'unknown';
    else if (key === 'unit' && rest[0]) units[rest[0]] = rest.slice(1).join(' ').trim() || 'unknown';
    else if (key === 'galera' && rest[0]) wsrep[rest[0]] = rest.slice(1).join(' ').trim();
    else if (key === 'vip') holdsVip = value === 'held';
  }
  const galera =
    wsrep.wsrep_local_state_comment !== undefined
      ? {
          state: wsrep.wsrep_local_state_comment,
          status: wsrep.wsrep_cluster_status ?? '?',
          size: Number(wsrep.wsrep_cluster_size ?? 0),
          ...(/^-?\d+$/.test(wsrep.wsrep_last_committed ?? '') ? { position: Number(wsrep.wsrep_last_committed) } : {}),
          ...(wsrep.wsrep_cluster_state_uuid ? { uuid: wsrep.wsrep_cluster_state_uuid } : {}),
        }
      : undefined;
  return {
    node,
    answered: true,
    ...(bootedAt !== undefined ? { bootedAt } : {}),
    ...(system ? { system } : {}),
    units,
    ...(galera ? { galera } : {}),
    holdsVip,
  };
}

/** Reads one node; a node that does not answer is a reading that says so. */
export async function readNode(access: NodeAccess, node: ClusterNode, vip: string, timeoutMs = 20_000): Promise<NodeReading> {
  const result = await access
    .run(node, PROBE, [vip], timeoutMs)
    .catch((error: unknown): NodeRun => ({ ok: false, stdout: '', stderr: error instanceof Error ? error.message : String(error) }));
  if (!result.ok || !/^unit /m.test(result.stdout)) {
    const why = result.stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? 'no answer';
    return { node: node.name, answered: false, error: why.slice(0, 200), units: {}, holdsVip: false };
  }
  return parseProbe(node.name, result.stdout);
}

export interface SshAccessOptions {
  /** The ssh command and its options (default: `ssh`, with the user's ~/.ssh/config and keys). */
  ssh?: string[];
  /** Who logs in: the profile's ssh.user; anyone but root runs the probe and the reboot through `sudo -n`. */
  user: string;
  /** Instead of `systemctl reboot` over SSH: a command run here, with NODE and NODE_IP set (a PDU, a BMC, a smart plug). */
  rebootCommand?: string;
}

/** Nodes reached as USER@IP over SSH (the keys the profile authorises), without ever asking for a password. */
export function sshAccess(options: SshAccessOptions): NodeAccess {
  const [program, ...given] = options.ssh ?? ['ssh'];
  const sudo = options.user === 'root' ? '' : 'sudo -n ';
  const argv = (node: ClusterNode, command: string): string[] => [
    ...given,
    ...['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=2'],
    `${options.user}@${node.ip}`,
    command,
  ];
  return {
    async run(node, script, args, timeoutMs) {
      const result = await runTool(program!, argv(node, `${sudo}sh -c ${q(script)} sh ${args.map(q).join(' ')}`), {
        accept: 'any',
        timeout: timeoutMs,
        what: `ssh ${options.user}@${node.ip}`,
      });
      return { ok: result.status === 0, stdout: result.stdout, stderr: result.stderr };
    },
    async reboot(node) {
      if (options.rebootCommand) {
        await runTool('sh', ['-c', options.rebootCommand], {
          env: { NODE: node.name, NODE_IP: node.ip },
          timeout: 120_000,
          what: `the reboot command for ${node.name}`,
        });
        return;
      }
      // The connection ends as the node goes down: any status is fine, rollout reads whether it rebooted.
      await runTool(program!, argv(node, `${sudo}systemctl reboot`), { accept: 'any', timeout: 30_000 }).catch(() => undefined);
    },
  };
}
