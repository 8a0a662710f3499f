/**
 * Each node is its own machine: its own /etc/machine-id and SSH host keys,
 * generated once and kept with the cluster's secrets so that a rebuild keeps
 * them, and never copied from the base, where every node would share them.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import sshpk from 'sshpk';
import { z } from 'zod';
import { serverTlsSchema } from './tls.js';

export const SSH_HOST_KEY_TYPES = ['ed25519', 'ecdsa'] as const;
export type SshHostKeyType = (typeof SSH_HOST_KEY_TYPES)[number];

const privateKey = z
  .string()
  .regex(/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?$/, 'must be an OpenSSH private key');

export const nodeIdentitySchema = z.strictObject({
  machineId: z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lower-case hex digits, as in /etc/machine-id'),
  sshHostKeys: z.strictObject({ ed25519: privateKey, ecdsa: privateKey }),
  /** Servers: the TLS key and certificate of Galera and MariaDB (tls.ts). */
  tls: serverTlsSchema.optional(),
});

export type NodeIdentity = z.output<typeof nodeIdentitySchema>;

function sshKey(type: SshHostKeyType, comment: string): string {
  const { privateKey: key } = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const parsed = sshpk.parsePrivateKey(key.export({ type: 'pkcs8', format: 'pem' }) as string, 'pem');
  parsed.comment = comment;
  return parsed.toString('openssh');
}

export function generateNodeIdentity(node: string): NodeIdentity {
  return {
    // systemd's machine-id: 128 random bits, hex; the UUID v4 bits are not required.
    machineId: randomBytes(16).toString('hex'),
    sshHostKeys: { ed25519: sshKey('ed25519', `root@${node}`), ecdsa: sshKey('ecdsa', `root@${node}`) },
  };
}

/** `ssh-ed25519 AAAA… root@node`, as in ssh_host_*_key.pub and known_hosts. */
export function publicKey(privateOpenssh: string): string {
  const key = sshpk.parsePrivateKey(privateOpenssh, 'openssh');
  return `${key.toPublic().toString('ssh')}`;
}
