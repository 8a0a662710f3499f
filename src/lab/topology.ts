/**
 * The lab's network, decided from the cluster alone (pure): a bridge in a
 * namespace of its own that also holds the gateway address (and serves as the
 * lab's vantage point for checks), one namespace for the boot server at
 * nfsServer/tftpServer, and one per node whose interface carries the name, MAC
 * and address the profile gives it.
 */
import type { Cluster } from '../profile/resolve.js';
import { inSubnet, intToIp, parseCidr } from '../profile/ipv4.js';
import { LabError } from './errors.js';

/** RFC 5737: the only addresses a lab may use besides loopback. */
export const DOCUMENTATION_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'];

export interface LabNode {
  name: string;
  ns: string;
  /** Interface inside the node's namespace, named as the profile says (end0). */
  interface: string;
  mac: string;
  ip: string;
  gateway: string;
  /** The node's DNS servers (network.dns, or its own): its resolv.conf or resolved names them. */
  dns: string[];
  isServer: boolean;
  /** The bridge port of this node's cable, inside the bridge namespace. */
  port: string;
}

export interface LabTopology {
  /** Prefix of every namespace this lab creates: nrl<pid>-… */
  prefix: string;
  prefixLength: number;
  /** Namespace that holds the bridge, the gateway address and the lab's probes. */
  bridgeNs: string;
  bridge: string;
  gateway: string;
  boot: { ns: string; interface: string; port: string; addresses: string[] };
  vip: string;
  nodes: LabNode[];
  /**
   * A host address of the lab's subnet that no node, the VIP, a gateway, a DNS server nor the
   * boot server uses (the highest such one), for a machine the lab adds to the network itself;
   * none in a subnet that is full.
   */
  spareAddress?: string;
}

export function inDocumentationRange(ip: string): boolean {
  return DOCUMENTATION_RANGES.some((range) => inSubnet(ip, parseCidr(range)));
}

export function labTopology(cluster: Cluster, id: string | number): LabTopology {
  const { network } = cluster.profile;
  const addresses: [string, string][] = [
    ['network.gateway', network.gateway],
    ['network.vip', network.vip],
    ['network.nfsServer', network.nfsServer],
    ['network.tftpServer', network.tftpServer],
    ...cluster.nodes.map((n): [string, string] => [`nodes ${n.name} ip`, n.ip]),
  ];
  const outside = addresses.filter(([, ip]) => !inDocumentationRange(ip));
  if (outside.length) {
    throw new LabError(
      `the lab only uses documentation addresses (${DOCUMENTATION_RANGES.join(', ')}), so that nothing it sends can reach a real network; ` +
        `${outside.map(([key, ip]) => `${key} ${ip}`).join(', ')} ${outside.length === 1 ? 'is' : 'are'} outside them. Give the lab profile addresses in one of those ranges`,
    );
  }
  const prefix = `nrl${id}`;
  const subnet = cluster.subnet;
  const used = new Set([...addresses.map(([, ip]) => ip), ...cluster.nodes.flatMap((n) => [n.gateway, ...n.dns])]);
  let spare: string | undefined;
  for (let n = subnet.broadcast - 1; n > subnet.network && !spare; n--) {
    const candidate = intToIp(n);
    if (!used.has(candidate) && inDocumentationRange(candidate)) spare = candidate;
  }
  return {
    prefix,
    prefixLength: cluster.subnet.prefix,
    bridgeNs: `${prefix}-net`,
    bridge: 'br0',
    gateway: network.gateway,
    boot: { ns: `${prefix}-boot`, interface: 'eth0', port: 'boot', addresses: [...new Set([network.nfsServer, network.tftpServer])] },
    vip: network.vip,
    nodes: cluster.nodes.map((node, i) => ({
      name: node.name,
      ns: `${prefix}-n${i}`,
      interface: node.interface,
      mac: node.mac,
      ip: node.ip,
      gateway: node.gateway,
      dns: node.dns,
      isServer: node.isServer,
      port: `n${i}`,
    })),
    ...(spare ? { spareAddress: spare } : {}),
  };
}
