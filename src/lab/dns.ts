/**
 * The lab's DNS server, where the nodes' network.dns points in the lab
 * profiles: dnsmasq on the gateway address in the bridge namespace, serving
 * one name of the lab's own and nothing else (no upstream servers, no
 * /etc/hosts, no /etc/resolv.conf of the host), so a node that resolves it
 * proves its resolver reaches the DNS server the profile gave it.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { startTool } from '../tools.js';
import type { Cleanup } from './cleanup.js';
import { LabError } from './errors.js';
import { inNetArgs, tryInNet, waitFor } from './run-command.js';
import type { LabTopology } from './topology.js';

/** The domain the lab's DNS server answers for (RFC 6761 reserves .test); other names in it do not exist. */
export const LAB_DOMAIN = 'netroot.test';
export const LAB_CHECK_NAME = `lab-check.${LAB_DOMAIN}`;

export interface LabDns {
  /** The address the server listens on: the gateway. */
  address: string;
  /** A name it serves, and its address (the gateway's: in the lab's subnet, and nobody else's). */
  record: { name: string; address: string };
  log: string;
}

export function labDnsRecord(topology: LabTopology): { name: string; address: string } {
  return { name: LAB_CHECK_NAME, address: topology.gateway };
}

/** The arguments of the lab's dnsmasq (pure, for the tests). */
export function labDnsArguments(topology: LabTopology, workDir: string): string[] {
  const record = labDnsRecord(topology);
  return [
    '--keep-in-foreground',
    // Neither the host's /etc/dnsmasq.conf, /etc/hosts nor /etc/resolv.conf: only what is here.
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    `--listen-address=${topology.gateway}`,
    '--bind-interfaces',
    '--port=53',
    `--host-record=${record.name},${record.address}`,
    // Names in the lab's domain that it does not serve do not exist (rather than REFUSED for want of an upstream).
    `--local=/${LAB_DOMAIN}/`,
    `--pid-file=${path.join(workDir, 'dnsmasq.pid')}`,
    '--log-queries',
    `--log-facility=${path.join(workDir, 'dnsmasq.log')}`,
  ];
}

/** The addresses busybox nslookup printed for `name` (its own server's address is not one of them). */
export function nslookupAddresses(output: string, name: string): string[] {
  const addresses: string[] = [];
  let inAnswer = false;
  for (const line of output.split('\n')) {
    const nameLine = /^Name:\s*(\S+)/.exec(line);
    if (nameLine) inAnswer = nameLine[1] === name;
    const address = /^Address(?:\s+\d+)?:\s*([0-9.]+)\s*$/.exec(line);
    if (inAnswer && address) addresses.push(address[1]!);
  }
  return addresses;
}

/** Starts the DNS server on the gateway and waits (bounded) until it answers the lab's name. */
export async function startLabDns(topology: LabTopology, runDir: string, cleanup: Cleanup): Promise<LabDns> {
  const workDir = path.resolve(runDir, 'dns');
  await mkdir(workDir, { recursive: true });
  const log = path.join(workDir, 'dnsmasq.log');
  const dnsmasq = startTool('nsenter', inNetArgs(topology.bridgeNs, 'dnsmasq', labDnsArguments(topology, workDir)), {
    stdoutFile: path.join(workDir, 'dnsmasq.stdout'),
    stderrFile: path.join(workDir, 'dnsmasq.stderr'),
  });
  cleanup.add('DNS server', () => dnsmasq.stop(5_000, 'SIGTERM'));
  const record = labDnsRecord(topology);
  // Asked from the bridge namespace, through the server's own address, as a node asks it.
  let last = '';
  const answered = await waitFor(
    async () => {
      const result = await tryInNet(topology.bridgeNs, 'busybox', ['nslookup', record.name, topology.gateway], { timeoutMs: 5_000 });
      last = `${result.stdout}\n${result.stderr}`.trim();
      return nslookupAddresses(result.stdout, record.name).includes(record.address) ? true : undefined;
    },
    15_000,
    250,
  );
  if (!answered)
    throw new LabError(
      `the lab's DNS server on ${topology.gateway} does not answer ${record.name} within 15 s: ${last.split('\n').slice(-3).join(' | ')}; see ${log}`,
    );
  return { address: topology.gateway, record, log };
}
