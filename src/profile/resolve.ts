/**
 * Normalise a validated profile into the cluster the rest of the pipeline uses:
 * per-node overrides applied, roles and keepalived priorities decided.
 */
import type { BoardSettings, Profile, ProfileNode, Role, StorageSettings } from './schema.js';
import { parseCidr, type Subnet } from './ipv4.js';

/** keepalived priorities after the seed: the first server 100 (MASTER), the others 50, 49, … */
export const MASTER_PRIORITY = 100;
export const FIRST_BACKUP_PRIORITY = 50;

export interface ClusterNode {
  /** Position in the profile's node list, for error locations. */
  index: number;
  name: string;
  /** Lower case with ":", as the profile wrote it. */
  mac: string;
  ip: string;
  /** A Raspberry Pi's serial number (8 lower-case hex digits): its TFTP directory. */
  serial?: string;
  roles: Role[];
  /** Runs keepalived, Galera and a k3s server. */
  isServer: boolean;
  interface: string;
  gateway: string;
  dns: string[];
  /** NTP servers: the node's, the cluster's, or the gateway. */
  ntp: string[];
  /** SSH public keys that may log in as the profile's ssh.user. */
  authorizedKeys: string[];
  board: BoardSettings;
  storage: StorageSettings;
  /** Servers only. */
  keepalived?: { priority: number; state: 'MASTER' | 'BACKUP'; explicit: boolean };
}

export interface Cluster {
  name: string;
  profile: Profile;
  subnet: Subnet;
  nodes: ClusterNode[];
  servers: ClusterNode[];
  agents: ClusterNode[];
  /** Name of the server that creates the Galera cluster on the very first boot. */
  bootstrapNode: string | undefined;
}

function resolveNode(profile: Profile, node: ProfileNode, index: number): ClusterNode {
  const isServer = node.roles.includes('server');
  return {
    index,
    name: node.name,
    mac: node.mac.toLowerCase(),
    ip: node.ip,
    ...(node.serial !== undefined ? { serial: node.serial } : {}),
    roles: node.roles,
    isServer,
    interface: node.interface ?? node.network?.interface ?? profile.network.interface,
    gateway: node.network?.gateway ?? profile.network.gateway,
    dns: node.network?.dns ?? profile.network.dns,
    ntp: node.network?.ntp ?? profile.network.ntp ?? [node.network?.gateway ?? profile.network.gateway],
    authorizedKeys: node.ssh?.authorizedKeys ?? profile.ssh.authorizedKeys,
    board: { ...profile.board, ...definedOnly(node.board ?? {}) },
    storage: { ...profile.storage, ...definedOnly(node.storage ?? {}) },
  };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Priorities a node sets are kept; the others follow the seed's pattern and skip
 * values already taken, so one explicit priority never collides with the defaults.
 */
function assignPriorities(profile: Profile, servers: ClusterNode[]): void {
  const explicit = new Map<string, number>();
  profile.nodes.forEach((n) => {
    if (n.keepalived?.priority !== undefined) explicit.set(n.name, n.keepalived.priority);
  });
  const taken = new Set(explicit.values());
  let next = FIRST_BACKUP_PRIORITY;
  servers.forEach((server, i) => {
    const own = explicit.get(server.name);
    let priority: number;
    if (own !== undefined) priority = own;
    else if (i === 0 && !taken.has(MASTER_PRIORITY)) priority = MASTER_PRIORITY;
    else {
      while (taken.has(next) && next > 1) next--;
      priority = next--;
    }
    taken.add(priority);
    server.keepalived = { priority, state: 'BACKUP', explicit: own !== undefined };
  });
  const top = Math.max(...servers.map((s) => s.keepalived!.priority));
  const master = servers.find((s) => s.keepalived!.priority === top);
  if (master) master.keepalived!.state = 'MASTER';
}

export function resolveCluster(profile: Profile): Cluster {
  const nodes = profile.nodes.map((n, i) => resolveNode(profile, n, i));
  const servers = nodes.filter((n) => n.isServer);
  const agents = nodes.filter((n) => !n.isServer);
  assignPriorities(profile, servers);
  return {
    name: profile.cluster.name,
    profile,
    subnet: parseCidr(profile.network.subnet),
    nodes,
    servers,
    agents,
    bootstrapNode: profile.galera.bootstrapNode ?? servers[0]?.name,
  };
}
