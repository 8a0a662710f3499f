/**
 * The cluster's TLS: a certificate authority of its own and, per server, a key and
 * certificate for Galera (group communication, IST, rsync state transfers through
 * stunnel) and for MariaDB's client connections (k3s's datastore). Made with the
 * openssl program once and kept in the secrets file, so a rebuild keeps them; a
 * server's certificate is made again only when its addresses or the CA change.
 *
 * Certificates are valid from 2020 on: boards without a real-time clock boot with
 * systemd's build date until NTP sets the clock, and must not see them as not yet valid.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runTool } from '../tools.js';
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

export const CA_CONFIG = (dir: string): string => `[ca]
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

export async function openssl(args: string[], cwd: string): Promise<void> {
  await runTool('openssl', args, {
    cwd,
    timeout: 60_000,
    what: `making the cluster's TLS certificates (openssl ${args[0]})`,
    why: "making the cluster's TLS certificates",
  });
}

/** A key and a certificate for `subject`, signed by the CA in `dir`'s ca.pem and ca.key (or by itself). */
export async function sign(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  ca?: ClusterCa,
): Promise<{ cert: string; key: string }> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  await openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  await openssl(['rand', '-hex', '-out', 'serial', '16'], dir);
  await writeFile(path.join(dir, `${name}.ext`), extensions);
  const signer = ca ? ['-cert', 'ca.pem', '-keyfile', 'ca.key'] : ['-selfsign', '-keyfile', `${name}.key`];
  await openssl(
    [
      'ca',
      '-batch',
      '-notext',
      '-config',
      'ca.cnf',
      ...signer,
      '-in',
      `${name}.csr`,
      '-out',
      `${name}.pem`,
      '-startdate',
      NOT_BEFORE,
      '-enddate',
      NOT_AFTER,
      '-extfile',
      `${name}.ext`,
      '-extensions',
      'ext',
    ],
    dir,
  );
  return { cert: await readFile(path.join(dir, `${name}.pem`), 'utf8'), key: await readFile(path.join(dir, `${name}.key`), 'utf8') };
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
  const generated: string[] = [];
  const needs = request.servers.filter(
    (s) => !request.ca || !serverTlsFits(request.current[s.name], request.ca, serverNames(s, request.vip)),
  );
  if (request.ca && needs.length === 0) {
    return { ca: request.ca, servers: Object.fromEntries(request.servers.map((s) => [s.name, request.current[s.name]!])), generated };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-tls-'));
  try {
    await writeFile(path.join(dir, 'ca.cnf'), CA_CONFIG(dir));
    await writeFile(path.join(dir, 'index.txt'), '');
    let ca = request.ca;
    if (!ca) {
      ca = await sign(
        dir,
        'ca',
        `/CN=netroot ${request.cluster} cluster CA`,
        `[ext]\nbasicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n`,
      );
      generated.push('cluster TLS CA');
    }
    await writeFile(path.join(dir, 'ca.pem'), ca.cert);
    await writeFile(path.join(dir, 'ca.key'), ca.key, { mode: 0o600 });
    const servers: Record<string, ServerTls> = {};
    for (const server of request.servers) {
      if (!needs.includes(server)) {
        servers[server.name] = request.current[server.name]!;
        continue;
      }
      const sans = `IP:${server.ip},IP:${request.vip},DNS:${server.name}`;
      const made = await sign(
        dir,
        `server-${server.name}`,
        `/CN=${server.name}`,
        `[ext]\nbasicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = ${sans}\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n`,
        ca,
      );
      servers[server.name] = { ca: ca.cert, ...made };
      generated.push(`node ${server.name} TLS certificate`);
    }
    return { ca, servers, generated };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
