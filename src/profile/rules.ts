/**
 * Cluster rules: checks that need more than one value at a time. Each rule is
 * named and pushes problems as data; the loader turns paths into file:line.
 */
import type { Cluster, ClusterNode } from './resolve.js';
import { inSubnet, isHostAddress } from './ipv4.js';
import type { PathSegment } from './located.js';

export interface RuleIssue {
  path: PathSegment[];
  message: string;
  /** Another place the message refers to; its line replaces `{at}` in the message, or is appended. */
  related?: PathSegment[];
}

export interface Rule {
  name: string;
  check(cluster: Cluster): RuleIssue[];
}

const nodePath = (node: ClusterNode, ...rest: PathSegment[]): PathSegment[] => ['nodes', node.index, ...rest];

function uniqueBy(key: 'name' | 'mac' | 'ip', what: string): Rule {
  return {
    name: `unique-node-${key}`,
    check(cluster) {
      const seen = new Map<string, ClusterNode>();
      const issues: RuleIssue[] = [];
      for (const node of cluster.nodes) {
        const value = node[key];
        const first = seen.get(value);
        if (first) {
          // Shown as the user wrote it (a MAC may be upper case); compared normalised.
          const written = String(cluster.profile.nodes[node.index]?.[key] ?? value);
          issues.push({
            path: nodePath(node, key),
            message:
              key === 'name'
                ? `there is already a node named ${written}{at}; every node needs its own name`
                : `${what} ${written} is already used by ${first.name}{at}; every node needs its own`,
            related: nodePath(first, key),
          });
        } else seen.set(value, node);
      }
      return issues;
    },
  };
}

/**
 * A Raspberry Pi's bootloader fetches everything from the TFTP directory named after its serial
 * number: a Pi node without one could not be served, and two with the same one would read each
 * other's kernel line (and NFS root).
 */
const raspberryPiSerials: Rule = {
  name: 'raspberrypi-serial',
  check({ nodes }) {
    const issues: RuleIssue[] = [];
    const seen = new Map<string, ClusterNode>();
    for (const node of nodes) {
      const pi = node.board.loader === 'raspberrypi';
      if (pi && node.serial === undefined) {
        issues.push({
          path: nodePath(node),
          message: `${node.name} is a ${node.board.name} (board loader raspberrypi), whose bootloader fetches its files from a TFTP directory named after its serial number: give it serial: with the last 8 hex digits of Serial in its /proc/cpuinfo, such as 9ffefdef`,
        });
      } else if (!pi && node.serial !== undefined) {
        issues.push({
          path: nodePath(node, 'serial'),
          message: `serial is read for Raspberry Pi boards only (board loader raspberrypi); ${node.name}'s board ${node.board.name} boots through U-Boot by its MAC: remove serial`,
        });
      }
      if (pi && node.serial !== undefined) {
        const first = seen.get(node.serial);
        if (first)
          issues.push({
            path: nodePath(node, 'serial'),
            message: `the serial ${node.serial} is already ${first.name}'s{at}; every board has its own`,
            related: nodePath(first, 'serial'),
          });
        else seen.set(node.serial, node);
      }
    }
    return issues;
  },
};

export const rules: Rule[] = [
  uniqueBy('name', 'the name'),
  raspberryPiSerials,
  uniqueBy('mac', 'the MAC address'),
  uniqueBy('ip', 'the IP address'),
  {
    name: 'addresses-in-subnet',
    check({ profile, subnet, nodes }) {
      const issues: RuleIssue[] = [];
      const where = `subnet ${profile.network.subnet}`;
      for (const node of nodes) {
        if (!inSubnet(node.ip, subnet)) issues.push({ path: nodePath(node, 'ip'), message: `${node.ip} is outside the ${where}` });
        else if (!isHostAddress(node.ip, subnet))
          issues.push({ path: nodePath(node, 'ip'), message: `${node.ip} is the network or broadcast address of the ${where}` });
      }
      const vip = profile.network.vip;
      if (!inSubnet(vip, subnet))
        issues.push({
          path: ['network', 'vip'],
          message: `the VIP ${vip} is outside the ${where}; keepalived can only hold an address on the nodes' own network`,
        });
      else if (!isHostAddress(vip, subnet))
        issues.push({ path: ['network', 'vip'], message: `the VIP ${vip} is the network or broadcast address of the ${where}` });
      if (!inSubnet(profile.network.gateway, subnet))
        issues.push({ path: ['network', 'gateway'], message: `the gateway ${profile.network.gateway} is outside the ${where}` });
      return issues;
    },
  },
  {
    name: 'vip-is-free',
    check({ profile, nodes }) {
      const vip = profile.network.vip;
      const issues: RuleIssue[] = nodes
        .filter((n) => n.ip === vip)
        .map((n) => ({
          path: ['network', 'vip'],
          message: `the VIP ${vip} is also the address of node ${n.name}{at}; the VIP must be an unused address that keepalived moves between servers`,
          related: nodePath(n, 'ip'),
        }));
      for (const key of ['gateway', 'nfsServer', 'tftpServer'] as const) {
        if (profile.network[key] === vip)
          issues.push({ path: ['network', 'vip'], message: `the VIP ${vip} is also network.${key}; pick an unused address` });
      }
      for (const node of nodes) {
        for (const key of ['gateway', 'nfsServer', 'tftpServer'] as const) {
          if (profile.network[key] === node.ip)
            issues.push({ path: nodePath(node, 'ip'), message: `${node.ip} is also network.${key}; a node needs an address of its own` });
        }
      }
      return issues;
    },
  },
  {
    name: 'roles',
    check({ nodes }) {
      return nodes
        .filter((n) => n.roles.includes('server') && n.roles.includes('agent'))
        .map((n) => ({
          path: nodePath(n, 'roles'),
          message: 'a node is either a server or an agent: a k3s server already runs workloads, so write roles: [server]',
        }));
    },
  },
  {
    name: 'galera-quorum',
    check({ profile, servers }) {
      if (profile.galera.allowUnsafeClusterSize) return [];
      const n = servers.length;
      if (n >= 3 && n % 2 === 1) return [];
      const why =
        n < 3
          ? `there ${n === 1 ? 'is 1 server' : `are ${n} servers`}; Galera needs at least 3 so that the other two keep a majority when one fails`
          : `there are ${n} servers; with an even number a network split can leave two halves of ${n / 2} with no majority (split-brain), and the database stops on both`;
      return [
        {
          path: ['nodes'],
          message: `${why}. Use an odd number of servers (3, 5, 7), or set galera.allowUnsafeClusterSize: true to accept the risk`,
        },
      ];
    },
  },
  {
    name: 'bootstrap-node',
    check({ profile, nodes }) {
      const name = profile.galera.bootstrapNode;
      if (name === undefined) return [];
      const node = nodes.find((n) => n.name === name);
      if (!node)
        return [
          { path: ['galera', 'bootstrapNode'], message: `there is no node named ${name}; name one of the servers: ${serverNames(nodes)}` },
        ];
      if (!node.isServer)
        return [
          {
            path: ['galera', 'bootstrapNode'],
            message: `${name}{at} is an agent; the Galera cluster can only be bootstrapped on a server: ${serverNames(nodes)}`,
            related: nodePath(node, 'roles'),
          },
        ];
      return [];
    },
  },
  {
    name: 'keepalived-priorities',
    check({ profile, nodes, servers }) {
      const issues: RuleIssue[] = [];
      for (const node of nodes) {
        if (!node.isServer && profile.nodes[node.index]?.keepalived !== undefined) {
          issues.push({ path: nodePath(node, 'keepalived'), message: 'keepalived runs on servers only; remove this key from the agent' });
        }
      }
      const seen = new Map<number, ClusterNode>();
      for (const server of servers) {
        const { priority, explicit } = server.keepalived!;
        const first = seen.get(priority);
        if (first) {
          const [here, other] = explicit ? [server, first] : [first, server];
          issues.push({
            path: nodePath(here, 'keepalived', 'priority'),
            message: `priority ${priority} is also the priority of ${other.name}{at}; VRRP priorities must be unique so that one server is clearly preferred`,
            related: nodePath(other, other.keepalived!.explicit ? 'keepalived' : 'name'),
          });
        } else seen.set(priority, server);
        if (priority < 1 || priority > 254)
          issues.push({
            path: nodePath(server),
            message: `the keepalived priority would be ${priority}; set keepalived.priority (1–254) on this node`,
          });
      }
      return issues;
    },
  },
  {
    name: 'ganesha-export-ids',
    check({ profile, nodes }) {
      const last = profile.exports.firstExportId + nodes.length - 1;
      if (last <= 65535) return [];
      return [
        {
          path: ['exports', 'firstExportId'],
          message: `the ${nodes.length} nodes would take Ganesha Export_Ids up to ${last}, past 65535; start lower`,
        },
      ];
    },
  },
  {
    name: 'longhorn-ui-needs-traefik',
    check({ profile }) {
      if (!profile.longhorn.ui.enabled) return [];
      // Longhorn off (a profile that extends one with the UI on): no UI, and nothing to refuse.
      if (!profile.longhorn.enabled) return [];
      if (profile.k3s.disable.includes('traefik'))
        return [
          {
            path: ['longhorn', 'ui', 'enabled'],
            message:
              "the Longhorn UI is served through k3s's bundled Traefik, which k3s.disable turns off: remove traefik from k3s.disable, or turn the UI off",
          },
        ];
      return [];
    },
  },
  {
    name: 'longhorn-needs-local-storage',
    check({ profile, nodes }) {
      if (!profile.longhorn.enabled) return [];
      // Longhorn's data path must be ext4 or XFS; on an NFS root it fails ("file extent is unsupported").
      const why =
        'Longhorn keeps its data in /var/lib/longhorn on local ext4 and cannot use the NFS root; set longhorn.enabled: false or turn local storage back on';
      const off = nodes.filter((node) => !node.storage.enabled);
      const ownSetting = (node: ClusterNode): boolean => profile.nodes[node.index]?.storage?.enabled === false;
      const issues: RuleIssue[] = off
        .filter(ownSetting)
        .map((node) => ({ path: nodePath(node, 'storage', 'enabled'), message: `local storage is off on ${node.name}, but ${why}` }));
      const byCluster = off.filter((node) => !ownSetting(node));
      if (byCluster.length)
        issues.push({
          path: ['storage', 'enabled'],
          message: `local storage is off on ${byCluster.map((n) => n.name).join(', ')}, but ${why}`,
        });
      return issues;
    },
  },
];

function serverNames(nodes: ClusterNode[]): string {
  return (
    nodes
      .filter((n) => n.isServer)
      .map((n) => n.name)
      .join(', ') || '(none)'
  );
}

export function checkRules(cluster: Cluster): RuleIssue[] {
  return rules.flatMap((rule) => rule.check(cluster));
}

/**
 * What a profile allows but should not go unnoticed: printed by build and validate,
 * never a reason to refuse.
 */
export function clusterWarnings(cluster: Cluster): string[] {
  const { ssh } = cluster.profile;
  const keyless = cluster.nodes.filter((n) => n.authorizedKeys.length === 0).map((n) => n.name);
  if (keyless.length === 0) return [];
  // One line that says how, not only what: the shipped profiles hold no key, so every first build prints it.
  const all = keyless.length === cluster.nodes.length;
  const who = all ? 'any node' : keyless.join(', ');
  const console = ssh.rootPasswordHash ? 'only root on the console' : "not even on the console, root's password is locked";
  const where = all
    ? 'ssh: { authorizedKeys: ["ssh-ed25519 AAAA… you@laptop"] }'
    : 'nodes[].ssh: { authorizedKeys: ["ssh-ed25519 AAAA… you@laptop"] }';
  return [`nobody can log in to ${who} over SSH as ${ssh.user} (${console}): add your public key to the profile, e.g. ${where}`];
}
