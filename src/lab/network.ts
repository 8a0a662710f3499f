/**
 * The lab's network made real: namespaces, a bridge, one veth "cable" per
 * machine. Nothing is routed out of the lab: the bridge namespace has no link
 * to the host, and node interfaces only reach the bridge.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { Cleanup } from './cleanup.js';
import { run, tryRun } from './run-command.js';
import type { LabNode, LabTopology } from './topology.js';

const ip = (args: string[]): Promise<string> => run('ip', args, { timeoutMs: 10_000 });

async function addNamespace(ns: string, cleanup: Cleanup): Promise<void> {
  await ip(['netns', 'add', ns]);
  cleanup.add(`network namespace ${ns}`, () => deleteNamespace(ns));
  await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
}

/** Kills whatever still runs in the namespace, then deletes it. */
export async function deleteNamespace(ns: string): Promise<void> {
  if (!existsSync(`/run/netns/${ns}`)) return;
  const pids = (await tryRun('ip', ['netns', 'pids', ns], { timeoutMs: 10_000 })).stdout.split('\n').filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await ip(['netns', 'del', ns]);
}

/** Whether a name the lab gave (nrl<pid>-…: a namespace, a node's cgroup) is left by a lab run that is gone. */
export function leftByEndedLab(name: string): boolean {
  const pid = /^nrl(\d+)-/.exec(name)?.[1];
  return pid !== undefined && Number(pid) !== process.pid && !existsSync(`/proc/${pid}`);
}

/** Namespaces left by an earlier lab run that was killed before it could clean up (its pid is gone). */
export async function staleNamespaces(): Promise<string[]> {
  const names = await readdir('/run/netns').catch(() => [] as string[]);
  return names.filter(leftByEndedLab);
}

/** A veth pair: `port` on the bridge, `inside` in the machine's namespace. */
async function cable(topology: LabTopology, port: string, ns: string, inside: string, mac?: string): Promise<void> {
  await ip(['-n', topology.bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', `${port}-peer`]);
  await ip(['-n', topology.bridgeNs, 'link', 'set', `${port}-peer`, 'netns', ns]);
  await ip(['-n', ns, 'link', 'set', `${port}-peer`, 'name', inside]);
  if (mac) await ip(['-n', ns, 'link', 'set', inside, 'address', mac]);
  await ip(['-n', topology.bridgeNs, 'link', 'set', port, 'master', topology.bridge, 'up']);
}

export async function createLabNetwork(topology: LabTopology, cleanup: Cleanup): Promise<void> {
  await addNamespace(topology.bridgeNs, cleanup);
  await ip(['-n', topology.bridgeNs, 'link', 'add', topology.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  // VRRP adverts are multicast: the bridge forwards them to every port without snooping.
  await ip(['-n', topology.bridgeNs, 'link', 'set', topology.bridge, 'type', 'bridge', 'mcast_snooping', '0']);
  await ip(['-n', topology.bridgeNs, 'addr', 'add', `${topology.gateway}/${topology.prefixLength}`, 'dev', topology.bridge]);
  await ip(['-n', topology.bridgeNs, 'link', 'set', topology.bridge, 'up']);

  const { boot } = topology;
  await addNamespace(boot.ns, cleanup);
  await cable(topology, boot.port, boot.ns, boot.interface);
  for (const address of boot.addresses)
    await ip(['-n', boot.ns, 'addr', 'add', `${address}/${topology.prefixLength}`, 'dev', boot.interface]);
  await ip(['-n', boot.ns, 'link', 'set', boot.interface, 'up']);

  for (const node of topology.nodes) {
    await addNamespace(node.ns, cleanup);
    await cable(topology, node.port, node.ns, node.interface, node.mac);
    await ip(['-n', node.ns, 'link', 'set', node.interface, 'up']);
  }
}

/**
 * One more machine on the lab's network, which the lab itself runs (not a node of the
 * profile): a namespace of its own cabled to the bridge, with `address` on its `eth0`.
 * Removed by the cleanup, or earlier by `deleteNamespace`.
 */
export async function addLabMachine(
  topology: LabTopology,
  machine: { ns: string; port: string; address: string },
  cleanup: Cleanup,
): Promise<void> {
  await addNamespace(machine.ns, cleanup);
  await cable(topology, machine.port, machine.ns, 'eth0');
  await ip(['-n', machine.ns, 'addr', 'add', `${machine.address}/${topology.prefixLength}`, 'dev', 'eth0']);
  await ip(['-n', machine.ns, 'link', 'set', 'eth0', 'up']);
}

/** What the kernel's ip=dhcp leaves behind: the leased address and the default route. */
export async function configureNodeAddress(
  topology: LabTopology,
  node: LabNode,
  address: string,
  router: string | undefined,
): Promise<void> {
  await ip(['-n', node.ns, 'addr', 'replace', `${address}/${topology.prefixLength}`, 'dev', node.interface]);
  if (router) await ip(['-n', node.ns, 'route', 'replace', 'default', 'via', router, 'dev', node.interface]);
}

/** Power off: the board's interface goes dark and forgets its addresses (the VIP included). */
export async function unplug(node: LabNode): Promise<void> {
  await ip(['-n', node.ns, 'addr', 'flush', 'dev', node.interface]);
  await ip(['-n', node.ns, 'link', 'set', node.interface, 'down']);
}

export async function plugIn(node: LabNode): Promise<void> {
  await ip(['-n', node.ns, 'link', 'set', node.interface, 'up']);
}

/** IPv4 addresses on the node's interface. */
export async function addressesOf(node: LabNode): Promise<string[]> {
  const out = await tryRun('ip', ['-n', node.ns, '-4', '-o', 'addr', 'show', 'dev', node.interface], { timeoutMs: 5_000 });
  return [...out.stdout.matchAll(/inet ([0-9.]+)\//g)].map((m) => m[1]!);
}
