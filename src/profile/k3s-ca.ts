/**
 * k3s's certificate authorities, made by netroot once per cluster instead of by
 * k3s at its first start, so that the join tokens can carry the CA's hash (the
 * secure `K10<hash>::…` form: a joining node checks the CA it is shown before it
 * sends its credentials). The layout is the one of k3s's
 * contrib/util/generate-custom-ca-certs.sh: a root CA, an intermediate signed by
 * it, and the leaf CAs k3s signs with (client, server, request-header, etcd
 * peer and server), each `.crt` the chain leaf + intermediate + root; plus the
 * service-account key. Kept in the secrets file; the root's and intermediate's
 * keys never leave it.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { makeCertificates, rsaKey } from './tls.js';

const certificate = z
  .string()
  .regex(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/, 'must be a PEM certificate');
const key = z
  .string()
  .regex(/^-----BEGIN (EC |RSA )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END (EC |RSA )?PRIVATE KEY-----\n?$/, 'must be a PEM private key');
const pair = z.strictObject({ cert: certificate, key });

/** The leaf CAs, by their key in the secrets file, and their file name in /var/lib/rancher/k3s/server/tls. */
export const K3S_LEAF_CAS = {
  client: 'client-ca',
  server: 'server-ca',
  requestHeader: 'request-header-ca',
  etcdPeer: 'etcd/peer-ca',
  etcdServer: 'etcd/server-ca',
} as const;
type Leaf = keyof typeof K3S_LEAF_CAS;

export const k3sCaSchema = z.strictObject({
  root: pair,
  intermediate: pair,
  ...(Object.fromEntries(Object.keys(K3S_LEAF_CAS).map((k) => [k, pair])) as Record<Leaf, typeof pair>),
  /** The service-account token signing key (RSA, as k3s makes it). */
  serviceKey: key,
});
export type K3sCa = z.output<typeof k3sCaSchema>;

/**
 * The hash a secure token carries, as k3s computes it (pkg/clientaccess/token.go, hashCA): the CA
 * bundle k3s serves (server-ca.crt) holds more than one certificate, so the hash is the SHA-256 of
 * the DER encoding of the root its first certificate chains to, not of the file.
 */
export function k3sCaHash(ca: K3sCa): string {
  return createHash('sha256').update(new X509Certificate(ca.root.cert).raw).digest('hex');
}

/** The secure token forms (docs.k3s.io, "k3s token"): `K10<hash>::server:<secret>` and `K10<hash>::node:<secret>`. */
export function secureTokens(ca: K3sCa, token: string, agentToken: string): { token: string; agentToken: string } {
  const hash = k3sCaHash(ca);
  return { token: `K10${hash}::server:${token}`, agentToken: `K10${hash}::node:${agentToken}` };
}

/** Each file k3s reads from server/tls, with its content: the leaf CAs' chains and keys, and the service key. */
export function k3sCaFiles(ca: K3sCa): { name: string; content: string }[] {
  const chain = (leaf: Leaf) => [ca[leaf].cert, ca.intermediate.cert, ca.root.cert].map((c) => c.trimEnd() + '\n').join('');
  return [
    ...(Object.entries(K3S_LEAF_CAS) as [Leaf, string][]).flatMap(([leaf, name]) => [
      { name: `${name}.crt`, content: chain(leaf) },
      { name: `${name}.key`, content: ca[leaf].key.trimEnd() + '\n' },
    ]),
    { name: 'service.key', content: ca.serviceKey.trimEnd() + '\n' },
  ];
}

const CA_EXTENSIONS =
  'basicConstraints = critical,CA:true\nkeyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\nsubjectKeyIdentifier = hash\n';
// Below the root, each certificate names its issuer's key: k3s takes a certificate without one for a root.
const SIGNED_CA = `${CA_EXTENSIONS}authorityKeyIdentifier = keyid:always\n`;

/** Makes the root, the intermediate and the leaf CAs (openssl, in one shell) and the service key. */
export async function generateK3sCa(cluster: string): Promise<K3sCa> {
  const leaves = Object.entries(K3S_LEAF_CAS) as [Leaf, string][];
  const [made, serviceKey] = await Promise.all([
    makeCertificates([
      { name: 'root', subject: `/CN=k3s-root-ca netroot ${cluster}`, extensions: CA_EXTENSIONS },
      { name: 'intermediate', subject: `/CN=k3s-intermediate-ca netroot ${cluster}`, extensions: SIGNED_CA, signer: 'root' },
      ...leaves.map(([leaf, name]) => ({
        name: leaf,
        subject: `/CN=k3s-${name.replace('/', '-')} netroot ${cluster}`,
        extensions: SIGNED_CA,
        signer: 'intermediate',
      })),
    ]),
    rsaKey(2048),
  ]);
  return { ...(made as Record<'root' | 'intermediate' | Leaf, { cert: string; key: string }>), serviceKey };
}
