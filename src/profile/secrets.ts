/**
 * Cluster secrets: never in the profile. Generated once into the cluster's
 * secrets file (mode 0600; where it lives: store.ts) and reused, so a rebuild never
 * changes the cluster's token; `--secrets FILE` and environment variables override.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { stringify } from 'yaml';
import { ProfileError, type ProfileIssue } from '../errors.js';
import { formatPath, locate, parseLocated, toPlain } from './located.js';
import { displayPath } from './load.js';
import { generateNodeIdentity, nodeIdentitySchema, type NodeIdentity } from './identity.js';
import { clusterCaSchema, ensureClusterTls } from './tls.js';
import { generateK3sCa, k3sCaSchema, type K3sCa } from './k3s-ca.js';

/** Characters that survive a MySQL DSN (`user:pass@tcp(…)`), SQL quoting and YAML unquoted. */
const password = z
  .string()
  .regex(
    /^[A-Za-z0-9._~+=,%^*!-]{12,128}$/,
    'must be 12–128 characters of letters, digits and ._~+=,%^*!- (no @ : / quotes or spaces: it goes into the k3s datastore URL)',
  );

export const secretsSchema = z.strictObject({
  keepalivedAuthPass: z
    .string()
    .regex(/^[A-Za-z0-9._~+=,%^*!-]+$/, 'must be letters, digits or ._~+=,%^*!-')
    .max(8, 'is longer than 8 characters; VRRP PASS authentication silently uses only the first 8, so use at most 8'),
  mariadbRootPassword: password,
  k3sDatabasePassword: password,
  k3sToken: z.string().regex(/^[A-Za-z0-9._:~+-]{16,256}$/, 'must be 16–256 characters of letters, digits and ._:~+-'),
  /** What agents join with (k3s `agent-token`): an agent holds this one only, never the server token. */
  k3sAgentToken: z.string().regex(/^[A-Za-z0-9._:~+-]{16,256}$/, 'must be 16–256 characters of letters, digits and ._:~+-'),
  /** The Longhorn UI's basic-auth password (user `longhorn`), when longhorn.ui.enabled. */
  longhornUiPassword: password,
  /** Authenticates the Galera servers' recovery exchange (who may tell a server which node bootstraps). */
  galeraRecoveryKey: z.string().regex(/^[A-Za-z0-9]{32,128}$/, 'must be 32–128 letters and digits'),
});

/** The values, and k3s's CAs (made with the servers' TLS; the tokens' hash comes from them). */
export type Secrets = z.output<typeof secretsSchema> & { k3sCa?: K3sCa };

/** The file: the cluster's secrets and, per node, its identity (machine-id, SSH host keys). */
const secretsFileSchema = secretsSchema.partial().extend({
  clusterCa: clusterCaSchema.optional(),
  k3sCa: k3sCaSchema.optional(),
  nodes: z.record(z.string(), nodeIdentitySchema).optional(),
});
type SecretsFile = z.output<typeof secretsFileSchema>;
type SecretName = keyof typeof secretsSchema.shape;

export const SECRET_ENV: Record<SecretName, string> = {
  keepalivedAuthPass: 'NETROOT_KEEPALIVED_AUTH_PASS',
  mariadbRootPassword: 'NETROOT_MARIADB_ROOT_PASSWORD',
  k3sDatabasePassword: 'NETROOT_K3S_DATABASE_PASSWORD',
  k3sToken: 'NETROOT_K3S_TOKEN',
  k3sAgentToken: 'NETROOT_K3S_AGENT_TOKEN',
  galeraRecoveryKey: 'NETROOT_GALERA_RECOVERY_KEY',
  longhornUiPassword: 'NETROOT_LONGHORN_UI_PASSWORD',
};

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Uniform over the alphabet: bytes ≥ 248 are dropped rather than folded (no modulo bias). */
function randomString(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += ALPHABET[byte % ALPHABET.length];
    }
  }
  return out;
}

const GENERATE: Record<SecretName, () => string> = {
  keepalivedAuthPass: () => randomString(8),
  mariadbRootPassword: () => randomString(32),
  k3sDatabasePassword: () => randomString(32),
  k3sToken: () => randomString(48),
  k3sAgentToken: () => randomString(48),
  galeraRecoveryKey: () => randomString(48),
  longhornUiPassword: () => randomString(32),
};

export function defaultSecretsFile(profileFile: string): string {
  return path.join(path.dirname(profileFile), `${path.basename(profileFile).replace(/\.ya?ml$/, '')}.secrets.yaml`);
}

export interface SecretsOptions {
  file: string;
  /** Files read when `file` does not exist yet (older layouts); save() then writes `file`. */
  fallback?: string[];
  /** Nodes that need an identity; one is generated for each that has none yet. */
  nodes?: string[];
  /** Servers that need a TLS certificate (and the cluster a CA), naming their IP and the VIP. */
  tls?: { cluster: string; vip: string; servers: { name: string; ip: string }[] };
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface LoadedSecrets {
  secrets: Secrets;
  /** Each node's machine-id and SSH host keys. */
  identities: Record<string, NodeIdentity>;
  /** Names of the secrets (and `node NAME identity`) generated on this run (not yet in any file). */
  generated: string[];
  /** Set when the secrets were read from a fallback file; save() copies them to the cluster's file. */
  migratedFrom?: string;
  /**
   * Saves generated secrets to the secrets file. Called by a build only once
   * everything else succeeded, so bad input never leaves a file behind.
   */
  save(): Promise<string | undefined>;
}

async function readSecretsFile(file: string, cwd: string): Promise<SecretsFile> {
  const shown = displayPath(file, cwd);
  const info = await stat(file);
  if ((info.mode & 0o077) !== 0) {
    throw new ProfileError([
      {
        location: { file: shown, line: 1, column: 1 },
        key: '',
        message: `the secrets file can be read by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${shown}`,
      },
    ]);
  }
  const tree = parseLocated(await readFile(file, 'utf8'), shown, 'secrets file');
  const parsed = secretsFileSchema.safeParse(toPlain(tree));
  if (parsed.success) return parsed.data;
  throw new ProfileError(
    parsed.error.issues.map((issue): ProfileIssue => {
      const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
      const at = locate(tree, [...(issue.path as string[]), ...keys.slice(0, 1)]).node;
      const known = issue.path.length === 0 ? [...Object.keys(SECRET_ENV), 'nodes'] : [];
      const message = keys.length ? `unknown key "${keys[0]}"${known.length ? `; known: ${known.join(', ')}` : ''}` : issue.message;
      // Never echo a secret's value into a message or a log.
      return {
        location: keys.length ? (at.keyLoc ?? at.loc) : at.loc,
        key: formatPath([...(issue.path as string[]), ...keys.slice(0, 1)]),
        message,
      };
    }),
  );
}

/** Write a file that only its owner can read, whole or not at all. */
async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(tmp, 0o600);
  try {
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

export async function loadSecrets(options: SecretsOptions): Promise<LoadedSecrets> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  // An older layout's file is read once and saved to `file`, so the cluster keeps its secrets.
  const source = existsSync(options.file) ? options.file : options.fallback?.find((f) => existsSync(f));
  const fromFile: SecretsFile = source ? await readSecretsFile(source, cwd) : {};
  const migrating = source !== undefined && source !== options.file;
  const { nodes: identitiesFromFile = {}, clusterCa: caFromFile, k3sCa: k3sCaFromFile, ...clusterFromFile } = fromFile;
  const merged: Partial<Secrets> = { ...clusterFromFile };
  const issues: ProfileIssue[] = [];
  for (const [name, variable] of Object.entries(SECRET_ENV) as [SecretName, string][]) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    const check = secretsSchema.shape[name].safeParse(value);
    if (check.success) merged[name] = value;
    else issues.push({ key: variable, message: `(environment) ${check.error.issues[0]?.message ?? 'is not valid'}` });
  }
  if (issues.length) throw new ProfileError(issues);

  const missing = (Object.keys(SECRET_ENV) as SecretName[]).filter((n) => merged[n] === undefined);
  const toSave: SecretsFile = { ...clusterFromFile };
  for (const n of missing) toSave[n] = merged[n] = GENERATE[n]();
  // Identities of nodes no longer in the profile stay in the file: a node that comes back keeps its keys.
  const identities: Record<string, NodeIdentity> = { ...identitiesFromFile };
  const newNodes = (options.nodes ?? []).filter((n) => !identities[n]);
  for (const n of newNodes) identities[n] = generateNodeIdentity(n);
  const tlsGenerated: string[] = [];
  if (options.tls && options.tls.servers.length) {
    const made = await ensureClusterTls({
      ...options.tls,
      ...(caFromFile ? { ca: caFromFile } : {}),
      current: Object.fromEntries(options.tls.servers.map((s) => [s.name, identities[s.name]?.tls])),
    });
    for (const [name, tls] of Object.entries(made.servers)) identities[name] = { ...identities[name]!, tls };
    toSave.clusterCa = made.ca;
    tlsGenerated.push(...made.generated);
  } else if (caFromFile) toSave.clusterCa = caFromFile;
  // k3s's CAs: made once, with the first servers, and kept like the TLS CA (a rebuild never changes the tokens' hash).
  let k3sCa = k3sCaFromFile;
  if (!k3sCa && options.tls && options.tls.servers.length) {
    k3sCa = await generateK3sCa(options.tls.cluster);
    tlsGenerated.push('k3s CAs');
  }
  if (k3sCa) {
    toSave.k3sCa = k3sCa;
    merged.k3sCa = k3sCa;
  }
  toSave.nodes = identities;
  const header =
    '# netroot cluster secrets, generated on the first build and reused by every later one.\n# Keep this file private (mode 0600) and out of version control; back it up with the cluster.\n';
  const generated = [...missing, ...newNodes.map((n) => `node ${n} identity`), ...tlsGenerated];
  return {
    secrets: merged as Secrets,
    identities,
    generated,
    ...(migrating ? { migratedFrom: source } : {}),
    async save() {
      if (generated.length === 0 && !migrating) return undefined;
      await mkdir(path.dirname(options.file), { recursive: true, mode: 0o700 });
      await writePrivate(options.file, header + stringify(toSave, { lineWidth: 0 }));
      return options.file;
    },
  };
}
