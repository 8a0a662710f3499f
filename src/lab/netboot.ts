/**
 * What a board does before its kernel runs, done from the node's namespace
 * with ordinary clients against the lab's boot server: a DHCP request from the
 * node's MAC (busybox udhcpc), its pxelinux file and the kernel and initrd it
 * names over TFTP (busybox tftp), and its NFS root through libnfs, which must
 * be served to this node and refused to the others.
 */
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import type { Cluster } from '../profile/resolve.js';
import { configureNodeAddress } from './network.js';
import { tryInNet } from './run-command.js';
import type { LabNode, LabTopology } from './topology.js';

export interface Lease {
  ip: string;
  subnet?: string;
  router?: string;
  hostname?: string;
  siaddr?: string;
  bootFile?: string;
}

export interface NetbootResult {
  node: string;
  pass: boolean;
  /** One line per check, failing ones first. */
  problems: string[];
  checks: string[];
  lease?: Lease;
  /** The kernel command line of the node's pxelinux file, as TFTP served it. */
  kernelArgs?: string[];
}

// udhcpc hands the lease to a script in its environment; this one just prints it.
const LEASE_SCRIPT = `#!/bin/sh
[ "$1" = bound ] || exit 0
printf 'lease ip=%s subnet=%s router=%s hostname=%s siaddr=%s boot_file=%s\\n' "$ip" "$subnet" "$router" "$hostname" "$siaddr" "$boot_file"
`;

export function parseLease(output: string): Lease | undefined {
  const line = output.split('\n').find((l) => l.startsWith('lease '));
  if (!line) return undefined;
  const fields = Object.fromEntries([...line.matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1], m[2]]));
  if (!fields.ip) return undefined;
  const pick = (key: string): string | undefined => (fields[key] ? fields[key] : undefined);
  return {
    ip: fields.ip,
    ...(pick('subnet') ? { subnet: pick('subnet') } : {}),
    ...(pick('router') ? { router: pick('router')!.split(' ')[0] } : {}),
    ...(pick('hostname') ? { hostname: pick('hostname') } : {}),
    ...(pick('siaddr') ? { siaddr: pick('siaddr') } : {}),
    ...(pick('boot_file') ? { bootFile: pick('boot_file') } : {}),
  };
}

/** The pxelinux file name U-Boot tries first for a MAC: 01-aa-bb-cc-dd-ee-ff. */
export const pxelinuxName = (mac: string): string => `01-${mac.toLowerCase().replace(/:/g, '-')}`;

export interface PxeEntry {
  kernel?: string;
  initrd?: string;
  fdt?: string;
  append?: string;
  nfsServer?: string;
  nfsPath?: string;
}

export function parsePxelinux(text: string): PxeEntry {
  const entry: PxeEntry = {};
  for (const raw of text.split('\n')) {
    const m = /^\s*(kernel|linux|initrd|fdt|devicetree|append)\s+(.*)$/.exec(raw);
    if (!m) continue;
    const key = m[1] === 'linux' ? 'kernel' : m[1] === 'devicetree' ? 'fdt' : (m[1] as 'kernel' | 'initrd' | 'fdt' | 'append');
    entry[key] = m[2]!.trim();
  }
  const nfsroot = /(?:^|\s)nfsroot=([^\s,]+)/.exec(entry.append ?? '')?.[1];
  if (nfsroot) {
    const colon = nfsroot.indexOf(':');
    if (colon > 0) {
      entry.nfsServer = nfsroot.slice(0, colon);
      entry.nfsPath = nfsroot.slice(colon + 1);
    } else entry.nfsPath = nfsroot;
  }
  return entry;
}

/** DHCP from the node's MAC; on success the node's interface gets the leased address, as ip=dhcp would. */
export async function requestLease(topology: LabTopology, node: LabNode, workDir: string): Promise<{ lease?: Lease; output: string }> {
  const script = path.join(workDir, 'udhcpc-lease.sh');
  await writeFile(script, LEASE_SCRIPT);
  await chmod(script, 0o755);
  // -n: give up after the tries instead of going to the background; -q: quit once bound.
  const result = await tryInNet(
    node.ns,
    'busybox',
    ['udhcpc', '-f', '-q', '-n', '-t', '5', '-T', '2', '-i', node.interface, '-s', script, '-O', 'hostname'],
    { timeoutMs: 30_000 },
  );
  const output = `${result.stdout}\n${result.stderr}`.trim();
  const lease = parseLease(result.stdout);
  if (lease) await configureNodeAddress(topology, node, lease.ip, lease.router);
  return { ...(lease ? { lease } : {}), output };
}

async function tftpGet(node: LabNode, server: string, remote: string, local: string): Promise<string | undefined> {
  const result = await tryInNet(node.ns, 'busybox', ['tftp', '-g', '-b', '1468', '-r', remote.replace(/^\//, ''), '-l', local, server], {
    timeoutMs: 60_000,
  });
  return result.ok ? undefined : (result.stderr || result.stdout || `exit ${result.exitCode}`).trim();
}

async function nfsList(node: LabNode, server: string, exportPath: string): Promise<{ ok: boolean; listing: string; output: string }> {
  const result = await tryInNet(node.ns, 'nfs-ls', [`nfs://${server}${exportPath}?version=3`], { timeoutMs: 20_000 });
  return { ok: result.ok, listing: result.stdout, output: (result.stderr || result.stdout).trim() };
}

export async function netbootNode(
  cluster: Cluster,
  topology: LabTopology,
  node: LabNode,
  buildDir: string,
  workDir: string,
): Promise<NetbootResult> {
  const dir = path.join(workDir, 'netboot', node.name);
  await mkdir(dir, { recursive: true });
  const problems: string[] = [];
  const checks: string[] = [];
  const { network } = cluster.profile;

  const { lease, output } = await requestLease(topology, node, dir);
  if (!lease)
    return {
      node: node.name,
      pass: false,
      problems: [`DHCP: no lease for ${node.mac} from dnsmasq: ${output.split('\n').slice(-3).join(' | ')}`],
      checks,
    };
  const expect = (what: string, got: string | undefined, want: string): void => {
    if (got === want) checks.push(`${what} ${got}`);
    else problems.push(`${what} is ${got ?? '(none)'}, expected ${want}`);
  };
  expect('DHCP address', lease.ip, node.ip);
  expect('DHCP host name', lease.hostname, node.name);
  expect('DHCP next server', lease.siaddr, network.tftpServer);
  expect('DHCP boot file', lease.bootFile, 'pxelinux.0');
  if (problems.length) return { node: node.name, pass: false, problems, checks, lease };

  const name = `pxelinux.cfg/${pxelinuxName(node.mac)}`;
  const local = path.join(dir, pxelinuxName(node.mac));
  const tftpError = await tftpGet(node, lease.siaddr!, name, local);
  if (tftpError) return { node: node.name, pass: false, problems: [`TFTP ${name} from ${lease.siaddr}: ${tftpError}`], checks, lease };
  const served = await readFile(local, 'utf8');
  const built = await readFile(path.join(buildDir, 'tftp', name), 'utf8');
  if (served !== built) problems.push(`TFTP served a ${name} that differs from the build's`);
  else checks.push(`TFTP ${name}`);
  const entry = parsePxelinux(served);
  for (const key of ['kernel', 'initrd'] as const) {
    const file = entry[key];
    if (!file) {
      problems.push(`${name} names no ${key}`);
      continue;
    }
    const error = await tftpGet(node, lease.siaddr!, file, path.join(dir, key));
    if (error) problems.push(`TFTP ${key} ${file}: ${error}`);
    else checks.push(`TFTP ${key} ${file}`);
  }
  if (!entry.nfsPath || !entry.nfsServer) {
    problems.push(`${name}: the append line has no nfsroot=SERVER:PATH`);
    return { node: node.name, pass: false, problems, checks, lease };
  }
  const own = await nfsList(node, entry.nfsServer, entry.nfsPath);
  if (own.ok && /\betc\b/.test(own.listing)) checks.push(`NFS ${entry.nfsServer}:${entry.nfsPath} served to ${node.ip}`);
  else
    problems.push(
      `NFS ${entry.nfsServer}:${entry.nfsPath} is not served to its own node ${node.ip}: ${own.output.split('\n').slice(-2).join(' | ')}`,
    );

  // Another node's root must be closed to this one.
  const other = topology.nodes.find((n) => n.name !== node.name);
  if (other) {
    const otherPath = path.posix.join(cluster.profile.exports.root, other.name);
    const foreign = await nfsList(node, entry.nfsServer, otherPath);
    if (foreign.ok)
      problems.push(
        `NFS ${otherPath} (the root of ${other.name}) is served to ${node.name} at ${node.ip}; each root must be open to its own node only`,
      );
    else checks.push(`NFS ${otherPath} refused to ${node.ip}`);
  }
  return {
    node: node.name,
    pass: problems.length === 0,
    problems,
    checks,
    lease,
    kernelArgs: (entry.append ?? '').split(/\s+/).filter(Boolean),
  };
}
