/**
 * The cluster's TLS: a certificate authority of its own and, per server, a key and
 * certificate for Galera (group communication, IST, rsync state transfers through
 * stunnel) and for MariaDB's client connections (k3s's datastore). Made with the
 * openssl program (the keys by node:crypto) once and kept in the secrets file, so a rebuild keeps them; a
 * server's certificate is made again only when its addresses or the CA change.
 *
 * Certificates are valid from 2020 on: boards without a real-time clock boot with
 * systemd's build date until NTP sets the clock, and must not see them as not yet valid.
 */
import { generateKeyPair as generateKeyPairCallback, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { runTool, shellWord } from '../tools.js';
import { z } from 'zod';

const certificate = z
  .string()
  .regex(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/, 'must be a PEM certificate');
const key = z
  .string()
  .regex(/^-----BEGIN (EC )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END (EC )?PRIVATE KEY-----\n?$/, 'must be a PEM private key');

export const clusterCaSchema = z.strictObject({ cert: certificate, key });
/** A server's key and certificate, with the CA certificate that signed it. */
export const serverTlsSchema = z.strictObject({ ca: certificate, cert: certificate, key });
export type ClusterCa = z.output<typeof clusterCaSchema>;
export type ServerTls = z.output<typeof serverTlsSchema>;

const NOT_BEFORE = '20200101000000Z';
const NOT_AFTER = '20991231235959Z';

/** The addresses a server's certificate names: its own IP (peers, state transfers) and the VIP (k3s connects through it). */
export function serverNames(server: { name: string; ip: string }, vip: string): string[] {
  return [`IP Address:${server.ip}`, `IP Address:${vip}`, `DNS:${server.name}`];
}

/** Whether `tls` was signed by `ca` and names exactly these addresses. */
export function serverTlsFits(tls: ServerTls | undefined, ca: ClusterCa, names: string[]): boolean {
  if (!tls || tls.ca.trim() !== ca.cert.trim()) return false;
  try {
    const cert = new X509Certificate(tls.cert);
    const sans = (cert.subjectAltName ?? '').split(', ').sort();
    return cert.verify(new X509Certificate(ca.cert).publicKey) && JSON.stringify(sans) === JSON.stringify([...names].sort());
  } catch {
    return false;
  }
}

const CA_CONFIG = (dir: string): string => `[ca]
default_ca = netroot
[netroot]
database = ${dir}/index.txt
new_certs_dir = ${dir}
serial = ${dir}/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
copy_extensions = none
[any]
commonName = supplied
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

/** One certificate to make, named `name` in the work directory (`name.key`, `name.pem`). */
export interface CertificateOrder {
  name: string;
  subject: string;
  /** The `[ext]` section the certificate carries. */
  extensions: string;
  /** The name of the order (or given pair) that signs it; none: it signs itself. */
  signer?: string;
}

const generateKeyPair = promisify(generateKeyPairCallback);

const ecKey = async (): Promise<string> =>
  (await generateKeyPair('ec', { namedCurve: 'prime256v1' })).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

/** An RSA key in the traditional PKCS#1 form, as `openssl genrsa -traditional` writes it (k3s's service-account key). */
export const rsaKey = async (bits: number): Promise<string> =>
  (await generateKeyPair('rsa', { modulusLength: bits })).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();

/**
 * Makes each certificate of `orders`, in order (a signer before what it signs), with the `given`
 * pairs as signers too: the EC P-256 keys here (node:crypto), the requests and signatures with the
 * openssl program, all in one shell, so that a cluster's certificates cost one process of ours, not
 * four each.
 */
export async function makeCertificates(
  orders: readonly CertificateOrder[],
  given: Record<string, { cert: string; key: string }> = {},
): Promise<Record<string, { cert: string; key: string }>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-tls-'));
  try {
    await writeFile(path.join(dir, 'ca.cnf'), CA_CONFIG(dir));
    await writeFile(path.join(dir, 'index.txt'), '');
    for (const [name, pair] of Object.entries(given)) {
      await writeFile(path.join(dir, `${name}.pem`), pair.cert);
      await writeFile(path.join(dir, `${name}.key`), pair.key, { mode: 0o600 });
    }
    const keys = await Promise.all(orders.map(() => ecKey()));
    const script = ['set -e'];
    for (const [i, order] of orders.entries()) {
      await writeFile(path.join(dir, `${order.name}.key`), keys[i]!, { mode: 0o600 });
      await writeFile(path.join(dir, `${order.name}.ext`), `[ext]\n${order.extensions}`);
      const signer = order.signer ? `-cert ${order.signer}.pem -keyfile ${order.signer}.key` : `-selfsign -keyfile ${order.name}.key`;
      script.push(
        `openssl req -new -key ${order.name}.key -subj ${shellWord(order.subject)} -out ${order.name}.csr`,
        `openssl ca -batch -notext -config ca.cnf -rand_serial ${signer} -in ${order.name}.csr -out ${order.name}.pem ` +
          `-startdate ${NOT_BEFORE} -enddate ${NOT_AFTER} -extfile ${order.name}.ext -extensions ext`,
      );
    }
    await runTool('sh', ['-c', script.join('\n')], {
      cwd: dir,
      timeout: 60_000,
      what: "making the cluster's TLS certificates (openssl)",
      why: "making the cluster's TLS certificates",
    });
    const made: Record<string, { cert: string; key: string }> = {};
    for (const [i, order] of orders.entries()) {
      made[order.name] = { cert: await readFile(path.join(dir, `${order.name}.pem`), 'utf8'), key: keys[i]! };
    }
    return made;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface TlsRequest {
  cluster: string;
  vip: string;
  servers: { name: string; ip: string }[];
  ca?: ClusterCa;
  /** What the secrets file holds per server. */
  current: Record<string, ServerTls | undefined>;
}

/** The CA and every server's certificate, keeping what still fits; `generated` names what was made now. */
export async function ensureClusterTls(
  request: TlsRequest,
): Promise<{ ca: ClusterCa; servers: Record<string, ServerTls>; generated: string[] }> {
  const needs = request.servers.filter(
    (s) => !request.ca || !serverTlsFits(request.current[s.name], request.ca, serverNames(s, request.vip)),
  );
  const orders: CertificateOrder[] = [];
  if (!request.ca) {
    orders.push({
      name: 'ca',
      subject: `/CN=netroot ${request.cluster} cluster CA`,
      extensions: 'basicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n',
    });
  }
  for (const server of needs) {
    orders.push({
      name: `server-${server.name}`,
      subject: `/CN=${server.name}`,
      extensions:
        'basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature,keyEncipherment\n' +
        'extendedKeyUsage = serverAuth,clientAuth\n' +
        `subjectAltName = IP:${server.ip},IP:${request.vip},DNS:${server.name}\n` +
        'subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n',
      signer: 'ca',
    });
  }
  const made = orders.length ? await makeCertificates(orders, request.ca ? { ca: request.ca } : {}) : {};
  const ca = request.ca ?? made.ca!;
  const generated = request.ca ? [] : ['cluster TLS CA'];
  const servers: Record<string, ServerTls> = {};
  for (const server of request.servers) {
    const mine = made[`server-${server.name}`];
    servers[server.name] = mine ? { ca: ca.cert, ...mine } : request.current[server.name]!;
    if (mine) generated.push(`node ${server.name} TLS certificate`);
  }
  return { ca, servers, generated };
}
