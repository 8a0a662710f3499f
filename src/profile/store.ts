/**
 * Secrets belong to the cluster, not to the profile file that names it: they
 * are kept per cluster name in one private directory, so a profile that
 * `extends` another, or one copied or moved elsewhere, finds the same token,
 * passwords and host keys. What a build or a deployed export root holds is
 * recorded as fingerprints, so a build with other secrets can be refused
 * before it splits a running cluster.
 */
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import sshpk from 'sshpk';
import { SecretsChangedError } from '../errors.js';
import type { NodeIdentity } from './identity.js';
import type { Secrets } from './secrets.js';
import { defaultSecretsFile } from './secrets.js';
import { k3sCaHash } from './k3s-ca.js';

/** `$NETROOT_SECRETS_DIR`, else `$XDG_STATE_HOME/netroot/secrets` (~/.local/state/netroot/secrets). */
export function secretsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NETROOT_SECRETS_DIR) return path.resolve(env.NETROOT_SECRETS_DIR);
  const state = env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state');
  return path.join(state, 'netroot', 'secrets');
}

export function clusterSecretsFile(cluster: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(secretsDir(env), `${cluster}.secrets.yaml`);
}

/** Where earlier versions kept them: NAME.secrets.yaml beside the profile (or the cluster's name there). */
export function legacySecretsFiles(profileFile: string, cluster: string): string[] {
  return [...new Set([defaultSecretsFile(profileFile), path.join(path.dirname(profileFile), `${cluster}.secrets.yaml`)])];
}

/** What a build or a deployment was made with, without the values themselves. */
export interface SecretsFingerprint {
  salt: string;
  /** Secret name → scrypt(value, salt): slow to guess, even for the 8-character auth_pass. */
  secrets: Record<string, string>;
  /** Node → SHA256 fingerprints of its public host keys, and a hash of its machine-id. */
  nodes: Record<string, { sshHostKeys: Record<string, string>; machineId: string; tlsCa?: string }>;
  /** The hash the k3s tokens carry (public: every joining node sees it). */
  k3sCa?: string;
}

// A rebuild checks the previous record and writes the new one with the same salt: scrypt runs once per value.
const digests = new Map<string, string>();
function digest(value: string, salt: string): string {
  const key = `${salt}\0${value}`;
  let d = digests.get(key);
  if (d === undefined) {
    d = scryptSync(value, salt, 24).toString('base64');
    digests.set(key, d);
  }
  return d;
}

function hostKeyFingerprint(privateOpenssh: string): string {
  return sshpk.parsePrivateKey(privateOpenssh, 'openssh').toPublic().fingerprint('sha256').toString();
}

function nodeFingerprint(identity: NodeIdentity, salt: string): SecretsFingerprint['nodes'][string] {
  return {
    sshHostKeys: Object.fromEntries(Object.entries(identity.sshHostKeys).map(([type, key]) => [type, hostKeyFingerprint(key)])),
    machineId: createHash('sha256').update(`${salt}:${identity.machineId}`).digest('hex'),
    // The CA certificate is public: its digest names which CA the server's certificate comes from.
    ...(identity.tls ? { tlsCa: createHash('sha256').update(identity.tls.ca.trim()).digest('hex') } : {}),
  };
}

export function fingerprint(
  secrets: Secrets,
  identities: Record<string, NodeIdentity>,
  nodes: string[],
  salt = randomBytes(12).toString('hex'),
): SecretsFingerprint {
  const { k3sCa, ...values } = secrets;
  return {
    salt,
    secrets: Object.fromEntries(Object.entries(values).map(([name, value]) => [name, digest(String(value), salt)])),
    nodes: Object.fromEntries(nodes.filter((n) => identities[n]).map((n) => [n, nodeFingerprint(identities[n]!, salt)])),
    ...(k3sCa ? { k3sCa: k3sCaHash(k3sCa) } : {}),
  };
}

/** What breaks when each secret changes under a running cluster. */
const CONSEQUENCE: Record<string, string> = {
  k3sAgentToken:
    'the k3s agent token: servers started with the new one refuse agents that still hold the old one until every node is rebooted',
  k3sToken:
    'the k3s token: nodes with the new token refuse those still running with the old one, so the cluster splits until every node is rebooted',
  k3sDatabasePassword:
    'the k3s database password: MariaDB keeps the old one (the k3s user is created only if missing), so k3s on redeployed servers cannot reach its datastore',
  mariadbRootPassword:
    'the MariaDB root password: the Galera datadir keeps the old one, so the units that log in as root fail on redeployed servers',
  longhornUiPassword: 'the Longhorn UI password: whoever uses the old one is refused once the servers restart k3s',
  keepalivedAuthPass:
    "the keepalived auth_pass: servers with the old and the new one ignore each other's adverts, and more than one holds the VIP",
};

/** Each difference between a recorded fingerprint and the secrets at hand, as what it would break. */
export function secretChanges(recorded: SecretsFingerprint, secrets: Secrets, identities: Record<string, NodeIdentity>): string[] {
  const changes: string[] = [];
  const { k3sCa, ...values } = secrets;
  // A cluster recorded before netroot made k3s's CAs: its servers' k3s made CAs of its own, which the new tokens do not name.
  if (recorded.k3sCa === undefined && k3sCa && Object.keys(recorded.secrets).length > 0) {
    changes.push(
      'k3s\'s CAs, new to this cluster: its servers keep the CA their k3s made at first start (on local storage and in the datastore), and agents with the new secure tokens refuse it until the running cluster\'s CA is rotated to the new one (k3s certificate rotate-ca; k3s docs, "Using Custom CA Certificates") or the cluster is set up afresh',
    );
  }
  if (recorded.k3sCa !== undefined && k3sCa && recorded.k3sCa !== k3sCaHash(k3sCa)) {
    changes.push(
      "k3s's CAs: the nodes' tokens name the new CA's hash, so agents refuse servers that still hold the old CA (and servers already started keep it, on local storage) until the cluster is set up again",
    );
  }
  for (const [name, value] of Object.entries(values)) {
    const was = recorded.secrets[name];
    if (was !== undefined && was !== digest(String(value), recorded.salt)) {
      changes.push(CONSEQUENCE[name] ?? `${name}: the nodes already running hold the old value`);
    }
  }
  const keys: string[] = [];
  const ids: string[] = [];
  const cas: string[] = [];
  for (const [node, was] of Object.entries(recorded.nodes)) {
    const identity = identities[node];
    if (!identity) continue;
    const now = nodeFingerprint(identity, recorded.salt);
    if (Object.entries(was.sshHostKeys).some(([type, fp]) => now.sshHostKeys[type] !== undefined && now.sshHostKeys[type] !== fp))
      keys.push(node);
    if (was.machineId !== now.machineId) ids.push(node);
    if (was.tlsCa !== undefined && now.tlsCa !== undefined && was.tlsCa !== now.tlsCa) cas.push(node);
  }
  if (cas.length)
    changes.push(
      `the cluster's TLS CA (servers ${cas.join(', ')}): Galera servers with certificates of the old and the new CA refuse each other, and k3s refuses a datastore whose certificate it cannot check, until every server is rebooted`,
    );
  if (keys.length)
    changes.push(
      `the SSH host keys of ${keys.join(', ')}: every SSH client that knows them refuses to connect (REMOTE HOST IDENTIFICATION HAS CHANGED) until its known_hosts is edited`,
    );
  if (ids.length) changes.push(`the machine-id of ${ids.join(', ')}: journald, DHCP client IDs and k3s see a new machine`);
  return changes;
}

/**
 * The one secrets check: refuse (SecretsChangedError) secrets that differ from those whose
 * fingerprint `where` holds (a previous build, the build to deploy, the target's record).
 */
export function refuseChangedSecrets(
  recorded: SecretsFingerprint | undefined,
  { secrets, identities }: { secrets: Secrets; identities: Record<string, NodeIdentity> },
  where: () => string,
): void {
  if (!recorded) return;
  const changes = secretChanges(recorded, secrets, identities);
  if (changes.length) throw new SecretsChangedError(where(), changes);
}
