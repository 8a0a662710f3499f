/**
 * The values each template sees. All decisions live here (roles, priorities,
 * addresses, kernel arguments); templates only place them in their file format.
 * A node gets only what its role needs: an agent's context has no Galera,
 * keepalived or database secrets, so a template that asks for them fails.
 */
import path from 'node:path';
import type { Cluster, ClusterNode } from '../profile/resolve.js';
import type { Secrets } from '../profile/secrets.js';
import { k3sCaFiles, secureTokens } from '../profile/k3s-ca.js';
import { htpasswdEntry, LONGHORN_UI_USER } from './longhorn-ui.js';
import { publicKey, SSH_HOST_KEY_TYPES, type NodeIdentity } from '../profile/identity.js';
import { intToIp, netmask } from '../profile/ipv4.js';

export const LOCAL_STORAGE_MOUNT = '/var/lib/netroot/local';
export const LOCAL_STORAGE_IMAGE = '/var/lib/netroot/local-storage.ext4';
/** A server's TLS files: the cluster CA, its certificate and key (read by MariaDB, Galera, stunnel and k3s). */
export const TLS_DIR = '/etc/mysql/netroot-tls';
/** Where a server's image keeps k3s's CA files, and where k3s looks for them (on local storage, which hides the image's). */
export const K3S_CA_DIR = '/usr/local/lib/netroot/k3s-ca';
export const K3S_TLS_DIR = '/var/lib/rancher/k3s/server/tls';
/** Where MariaDB's TLS key lives while it runs: a copy owned by mysql, made at each start. */
export const RUN_TLS_DIR = '/run/netroot-tls';
/** k3s needs the memory cgroup; Armbian adds it through a boot script that PXE never runs. */
export const K3S_KERNEL_ARGS = ['cgroup_enable=memory', 'cgroup_memory=1'];

export const exportPath = (cluster: Cluster, node: ClusterNode): string => path.posix.join(cluster.profile.exports.root, node.name);

/** U-Boot looks for pxelinux.cfg/01-<mac with dashes>, lower case (doc/README.pxe). */
export const pxeConfigName = (node: ClusterNode): string => `01-${node.mac.toLowerCase().replace(/:/g, '-')}`;

export const isRaspberryPi = (node: ClusterNode): boolean => node.board.loader === 'raspberrypi';

/**
 * The TFTP directory a node's boot files are served from: boot/<board> for U-Boot boards, shared by
 * the nodes of a board; a Raspberry Pi's serial number, the directory its bootloader reads (TFTP_PREFIX=0,
 * its default), which also holds the node's own config.txt and cmdline.txt.
 */
export function bootDir(node: ClusterNode): string {
  return isRaspberryPi(node) ? node.serial! : `boot/${node.board.name}`;
}

/** Where a board's boot files sit under the TFTP root, each under its own name (a Pi's firmware finds its device tree by name). */
export function bootFiles(node: ClusterNode): { kernel: string; initrd: string; fdt?: string; firmware: string[] } {
  const dir = bootDir(node);
  const at = (file: string): string => `${dir}/${path.posix.basename(file)}`;
  return {
    kernel: at(node.board.kernel),
    initrd: at(node.board.initrd),
    ...(node.board.fdt ? { fdt: at(node.board.fdt) } : {}),
    firmware: node.board.firmware.map(at),
  };
}

/** Every file bootFiles names, under the TFTP root. */
export function bootFilePaths(node: ClusterNode): string[] {
  const { kernel, initrd, fdt, firmware } = bootFiles(node);
  return [kernel, initrd, ...(fdt ? [fdt] : []), ...firmware];
}

export function kernelArgs(cluster: Cluster, node: ClusterNode): string[] {
  const { nfsServer } = cluster.profile.network;
  return [
    'root=/dev/nfs',
    `nfsroot=${nfsServer}:${exportPath(cluster, node)},vers=3,tcp`,
    'ip=dhcp',
    'rw',
    'rootwait',
    `console=${node.board.console}`,
    ...K3S_KERNEL_ARGS.filter((a) => !node.board.append.includes(a)),
    // Reboot after a panic: a panicked board with nobody at it would stay down (board.append may set its own).
    ...(node.board.append.some((a) => a.startsWith('panic=')) ? [] : [`panic=${node.board.panic}`]),
    ...node.board.append,
  ];
}

function networkContext(cluster: Cluster) {
  const { network } = cluster.profile;
  return {
    vip: network.vip,
    vipName: `${cluster.name}-vip`,
    subnet: network.subnet,
    subnetAddress: intToIp(cluster.subnet.network),
    prefix: cluster.subnet.prefix,
    netmask: netmask(cluster.subnet),
    nfsServer: network.nfsServer,
    tftpServer: network.tftpServer,
  };
}

export function datastoreEndpoint(cluster: Cluster, secrets: Secrets): string {
  const { k3s, network } = cluster.profile;
  return `mysql://${k3s.user}:${secrets.k3sDatabasePassword}@tcp(${network.vip}:3306)/${k3s.database}`;
}

function identityContext(identity: NodeIdentity) {
  return {
    machineId: identity.machineId,
    sshHostKeys: Object.fromEntries(
      SSH_HOST_KEY_TYPES.map((type) => [
        type,
        { private: identity.sshHostKeys[type].trimEnd(), public: publicKey(identity.sshHostKeys[type]) },
      ]),
    ),
  };
}

/** What a build knows of its base root filesystem that changes rendered files. */
export interface BaseFacts {
  /** Debian version of the base's mariadb-server package; null when the base has none. */
  mariadbVersion: string | null;
  /** The base has systemd-resolved (Armbian does): names are set in its drop-in, not in a static resolv.conf. */
  systemdResolved: boolean;
  /** The base has chrony, which then sets the clock; else systemd-timesyncd where it has that. */
  chrony: boolean;
  timesyncd: boolean;
}

/** How long a node waits at boot for its clock before k3s and MariaDB start anyway (systemd-time-wait-sync). */
export const TIME_SYNC_WAIT_SECONDS = 90;

/**
 * How a node resolves names and sets its clock, decided from the base's packages. Without a base
 * (an overlay-only build), Armbian's: systemd-resolved and systemd-timesyncd.
 */
export function baseServices(base: BaseFacts | undefined): {
  resolver: 'systemd-resolved' | 'static';
  ntpClient: 'chrony' | 'systemd-timesyncd' | null;
} {
  return {
    resolver: !base || base.systemdResolved ? 'systemd-resolved' : 'static',
    ntpClient: !base ? 'systemd-timesyncd' : base.chrony ? 'chrony' : base.timesyncd ? 'systemd-timesyncd' : null,
  };
}

/** What the summary says about those decisions: assumptions (notes) and what the base lacks (warnings). */
export function baseNotes(base: BaseFacts | undefined): { notes: string[]; warnings: string[] } {
  if (!base) {
    return {
      notes: [
        "no base was read: assumed Armbian's systemd-resolved (names in /etc/systemd/resolved.conf.d) and systemd-timesyncd; a build with a base decides from its packages",
      ],
      warnings: [],
    };
  }
  const { ntpClient } = baseServices(base);
  return {
    notes: [],
    warnings: ntpClient
      ? []
      : [
          "the base has no NTP client (chrony or systemd-timesyncd): nothing sets the nodes' clocks, and k3s and Galera do not wait for a synchronized one. Install systemd-timesyncd in the base",
        ],
  };
}

/**
 * MariaDB releases that know innodb_snapshot_isolation (added in 10.6.18, 10.11.8, 11.0.6, 11.1.5, 11.2.4 and
 * 11.4.2; on by default from 11.6.2). Under it kine's compaction fails with error 1020 (k3s-io/kine#745).
 */
const SNAPSHOT_ISOLATION_SINCE: Record<string, number> = { '10.6': 18, '10.11': 8, '11.0': 6, '11.1': 5, '11.2': 4, '11.4': 2 };

/** Whether a MariaDB of this Debian package version (e.g. 1:10.11.19-0+deb12u1) has innodb_snapshot_isolation. */
export function hasSnapshotIsolation(debianVersion: string): boolean {
  const m = /^(?:\d+:)?(\d+)\.(\d+)\.(\d+)/.exec(debianVersion);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const since = SNAPSHOT_ISOLATION_SINCE[`${major}.${minor}`];
  if (since !== undefined) return patch >= since;
  // Series between the listed ones (10.7–10.10) ended before it came; every series after 11.4 has it.
  return major > 11 || (major === 11 && minor > 4);
}

/**
 * The option that turns innodb_snapshot_isolation off, as the base's MariaDB spells it: the plain name where it
 * exists, nothing where it does not (mariadbd refuses unknown options), and the `loose-` form, which an older
 * MariaDB ignores, where no base was read.
 */
export function snapshotIsolationOption(base: BaseFacts | undefined): string | null {
  if (!base) return 'loose-innodb_snapshot_isolation';
  if (base.mariadbVersion === null) return null;
  return hasSnapshotIsolation(base.mariadbVersion) ? 'innodb_snapshot_isolation' : null;
}

function sshContext(cluster: Cluster, node: ClusterNode) {
  const { ssh } = cluster.profile;
  const isRoot = ssh.user === 'root';
  return {
    user: ssh.user,
    authorizedKeys: node.authorizedKeys,
    hasKeys: node.authorizedKeys.length > 0,
    // Root logs in with a key only; with another user named, root does not log in over SSH at all.
    permitRootLogin: isRoot ? 'prohibit-password' : 'no',
    createUser: !isRoot,
    rootPasswordHash: ssh.rootPasswordHash ?? null,
  };
}

function nameAndTimeContext(node: ClusterNode, base: BaseFacts | undefined) {
  const { resolver, ntpClient } = baseServices(base);
  return {
    names: { dns: node.dns, resolvConf: node.dns.slice(0, 3), resolved: resolver === 'systemd-resolved', static: resolver === 'static' },
    time: {
      ntp: node.ntp,
      chrony: ntpClient === 'chrony',
      timesyncd: ntpClient === 'systemd-timesyncd',
      // Waiting for a clock that no client sets would only delay every boot.
      wait: ntpClient !== null,
      waitSeconds: TIME_SYNC_WAIT_SECONDS,
    },
  };
}

/** One attempt of the recovery decision (a try of mariadb.service's start); MariaDB tries again after it. */
export const GALERA_RECOVERY_ATTEMPT_SECONDS = 600;

function nodeFacts(node: ClusterNode) {
  return {
    name: node.name,
    ip: node.ip,
    mac: node.mac,
    interface: node.interface,
    gateway: node.gateway,
    dns: node.dns,
    isServer: node.isServer,
    roles: node.roles,
  };
}

function storageContext(cluster: Cluster, node: ClusterNode) {
  const longhornOn = cluster.profile.longhorn.enabled;
  const storage = node.storage;
  return {
    enabled: storage.enabled,
    device: storage.device ?? null,
    label: storage.label,
    imageSize: storage.imageSize,
    imagePath: LOCAL_STORAGE_IMAGE,
    mountPoint: LOCAL_STORAGE_MOUNT,
    description: storage.device ? `device ${storage.device}` : `a ${storage.imageSize} image file on the node's export`,
    directories: [...(longhornOn ? ['rancher', 'longhorn'] : ['rancher']), 'log-pods', 'log-containers'],
    // What k3s must not start without: on NFS, containerd and Longhorn fail and container logs cross the network.
    k3sMounts: [
      '/var/lib/rancher',
      ...(longhornOn ? ['/var/lib/longhorn'] : []),
      ...(storage.enabled ? ['/var/log/pods', '/var/log/containers'] : []),
    ].join(' '),
  };
}

function longhornContext(cluster: Cluster, secrets: Secrets) {
  const { longhorn } = cluster.profile;
  return {
    enabled: longhorn.enabled,
    version: longhorn.version,
    chartVersion: longhorn.version.replace(/^v/, ''),
    nodeDownPodDeletionPolicy: longhorn.nodeDownPodDeletionPolicy,
    // Only Traefik's basic-auth route reaches the UI; the user and password come from the secrets file.
    ui:
      longhorn.enabled && longhorn.ui.enabled
        ? {
            user: LONGHORN_UI_USER,
            realm: `Longhorn ${cluster.name}`,
            htpasswd: htpasswdEntry(LONGHORN_UI_USER, secrets.longhornUiPassword),
          }
        : null,
  };
}

function keepalivedContext(cluster: Cluster, node: ClusterNode, secrets: Secrets) {
  const { keepalived } = cluster.profile;
  return {
    state: node.keepalived!.state,
    priority: node.keepalived!.priority,
    virtualRouterId: keepalived.virtualRouterId,
    advertInterval: keepalived.advertInterval,
    checkInterval: keepalived.checkInterval,
    checkTimeout: keepalived.checkTimeout,
    // The check's own bounds sit inside keepalived's, so it fails by itself rather than being killed.
    checkCommandTimeout: keepalived.checkTimeout - 1,
    checkConnectTimeout: Math.max(1, keepalived.checkTimeout - 2),
    authPass: secrets.keepalivedAuthPass,
  };
}

function galeraContext(cluster: Cluster, node: ClusterNode, secrets: Secrets, base: BaseFacts | undefined) {
  const { galera } = cluster.profile;
  return {
    clusterName: galera.clusterName,
    clusterAddress: `gcomm://${cluster.servers.map((s) => s.ip).join(',')}`,
    sstMethod: galera.sstMethod,
    isBootstrapNode: cluster.bootstrapNode === node.name,
    bootstrapNode: cluster.bootstrapNode,
    peers: cluster.servers.filter((s) => s.name !== node.name).map((s) => s.ip),
    snapshotIsolationOption: snapshotIsolationOption(base),
    // /etc/netroot/galera-recovery.json: everything the recovery decision needs, in server order (ties go to the earlier).
    recovery: {
      node: node.name,
      cluster: galera.clusterName,
      servers: cluster.servers.map((s) => ({ name: s.name, ip: s.ip })),
      bootstrapNode: cluster.bootstrapNode,
      port: galera.recovery.port,
      policy: galera.recovery.policy,
      survivorAfter: galera.recovery.survivorAfter,
      waitForAll: galera.recovery.waitForAll,
      attemptSeconds: GALERA_RECOVERY_ATTEMPT_SECONDS,
      key: secrets.galeraRecoveryKey,
    },
  };
}

// Without an identity (a plan made without secrets) there is no certificate: no TLS files and no TLS settings.
function tlsContext(identity: NodeIdentity | undefined) {
  return identity?.tls
    ? {
        ca: identity.tls.ca.trimEnd(),
        cert: identity.tls.cert.trimEnd(),
        key: identity.tls.key.trimEnd(),
        caFile: `${TLS_DIR}/ca.pem`,
        certFile: `${TLS_DIR}/server.pem`,
        // The image's key stays root's: each start of MariaDB hands mysql a copy in /run (netroot-tls.conf),
        // so a deploy that rewrites the image's file never takes the key away from a running server.
        imageKeyFile: `${TLS_DIR}/server-key.pem`,
        keyFile: `${RUN_TLS_DIR}/server-key.pem`,
        runDir: RUN_TLS_DIR,
      }
    : null;
}

// The secure token forms need k3s's CAs; a plan made without them (no secrets) has no tokens, and templates that need one fail by name.
const k3sTokens = (secrets: Secrets) => (secrets.k3sCa ? secureTokens(secrets.k3sCa, secrets.k3sToken, secrets.k3sAgentToken) : undefined);

function serverK3sContext(cluster: Cluster, secrets: Secrets) {
  const { profile } = cluster;
  const tokens = k3sTokens(secrets);
  const caFiles = secrets.k3sCa ? k3sCaFiles(secrets.k3sCa) : [];
  return {
    version: profile.k3s.version,
    token: tokens?.token,
    // Agents join with this one; a stolen agent's files never hold the server token (which reads the datastore's secrets).
    agentToken: tokens?.agentToken,
    // k3s's CAs, kept in the image and copied to local storage before k3s's first start.
    ca: secrets.k3sCa
      ? {
          dir: K3S_CA_DIR,
          tlsDir: K3S_TLS_DIR,
          files: caFiles.map((f) => f.name),
          content: Object.fromEntries(caFiles.map((f) => [f.name, f.content.trimEnd()])),
        }
      : null,
    database: profile.k3s.database,
    user: profile.k3s.user,
    databasePassword: secrets.k3sDatabasePassword,
    datastoreEndpoint: datastoreEndpoint(cluster, secrets),
    tlsSan: [profile.network.vip],
    // Cluster-wide flags: identical on every server (docs.k3s.io, High Availability).
    disable: [...new Set([...(profile.longhorn.enabled ? ['local-storage'] : []), ...profile.k3s.disable])],
  };
}

function agentK3sContext(cluster: Cluster, secrets: Secrets) {
  const { profile } = cluster;
  return { version: profile.k3s.version, token: k3sTokens(secrets)?.agentToken, serverUrl: `https://${profile.network.vip}:6443` };
}

/** What only a server runs: keepalived, Galera, MariaDB with its TLS, and k3s against the datastore. */
function serverContext(
  cluster: Cluster,
  node: ClusterNode,
  secrets: Secrets,
  identity: NodeIdentity | undefined,
  base: BaseFacts | undefined,
) {
  return {
    keepalived: keepalivedContext(cluster, node, secrets),
    galera: galeraContext(cluster, node, secrets, base),
    mariadb: { rootPassword: secrets.mariadbRootPassword },
    tls: tlsContext(identity),
    k3s: serverK3sContext(cluster, secrets),
  };
}

export function nodeContext(
  cluster: Cluster,
  node: ClusterNode,
  secrets: Secrets,
  identity?: NodeIdentity,
  base?: BaseFacts,
): Record<string, unknown> {
  return {
    cluster: { name: cluster.name },
    node: nodeFacts(node),
    network: networkContext(cluster),
    nodes: cluster.nodes.map((n) => ({ name: n.name, ip: n.ip })),
    ssh: sshContext(cluster, node),
    ...nameAndTimeContext(node, base),
    storage: storageContext(cluster, node),
    longhorn: longhornContext(cluster, secrets),
    // Without an identity (a plan made without secrets), templates that need one fail by name.
    ...(identity ? { identity: identityContext(identity) } : {}),
    ...(node.isServer ? serverContext(cluster, node, secrets, identity, base) : { k3s: agentK3sContext(cluster, secrets) }),
  };
}

/** Values for the boot server's files: one entry per node. */
export function bootContext(cluster: Cluster): Record<string, unknown> {
  const { profile } = cluster;
  return {
    cluster: { name: cluster.name },
    network: networkContext(cluster),
    exports: profile.exports,
    nodes: cluster.nodes.map((n, i) => ({
      name: n.name,
      ip: n.ip,
      mac: n.mac,
      gateway: n.gateway,
      dnsList: n.dns.join(','),
      dhcpTag: `netroot-${n.name}`,
      raspberrypi: isRaspberryPi(n),
      serial: n.serial ?? null,
      exportPath: exportPath(cluster, n),
      exportId: profile.exports.firstExportId + i,
    })),
  };
}

/** Values for a Raspberry Pi's config.txt and cmdline.txt: the files its bootloader loads, by their names in its directory. */
export function raspberryPiContext(cluster: Cluster, node: ClusterNode): Record<string, unknown> {
  const name = (file: string | undefined): string | null => (file ? path.posix.basename(file) : null);
  return {
    cluster: { name: cluster.name },
    node: { name: node.name, mac: node.mac, serial: node.serial },
    boot: {
      board: node.board.name,
      kernel: name(node.board.kernel),
      initrd: name(node.board.initrd),
      fdt: name(node.board.fdt),
      append: kernelArgs(cluster, node).join(' '),
    },
  };
}

export function pxeContext(cluster: Cluster, node: ClusterNode): Record<string, unknown> {
  return {
    cluster: { name: cluster.name },
    node: { name: node.name, mac: node.mac },
    boot: { configName: pxeConfigName(node), fdt: null, ...bootFiles(node), append: kernelArgs(cluster, node).join(' ') },
  };
}
