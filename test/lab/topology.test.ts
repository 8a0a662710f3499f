/** The lab's network plan: names, addresses and the refusal of anything outside the documentation ranges. */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { loadProfile } from '../../src/profile/load.js';
import { inDocumentationRange, labTopology } from '../../src/lab/topology.js';
import { LabError } from '../../src/lab/errors.js';
import { LAB_CHECK_NAME, labDnsArguments, labDnsRecord } from '../../src/lab/dns.js';
import { OPZ3, writeProfiles } from '../profile/helpers.js';
import path from 'node:path';

test('the opz3-lab profile gives one namespace per node with its interface, MAC and address', async () => {
  const { cluster } = await loadProfile('opz3-lab');
  const topology = labTopology(cluster, 4242);
  assert.is(topology.bridgeNs, 'nrl4242-net');
  assert.is(topology.boot.ns, 'nrl4242-boot');
  assert.equal(topology.boot.addresses, ['192.0.2.10'], 'NFS and TFTP share one address, given once');
  assert.is(topology.gateway, '192.0.2.1');
  assert.is(topology.vip, '192.0.2.50');
  assert.is(topology.prefixLength, 24);
  assert.equal(
    topology.nodes.map((n) => [n.name, n.ns, n.interface, n.mac, n.ip, n.isServer]),
    [
      ['opz3-1-onder', 'nrl4242-n0', 'end0', '02:00:c0:00:02:3c', '192.0.2.60', true],
      ['opz3-2-midden', 'nrl4242-n1', 'end0', '02:00:c0:00:02:3d', '192.0.2.61', true],
      ['opz3-3-boven', 'nrl4242-n2', 'end0', '02:00:c0:00:02:3e', '192.0.2.62', true],
      ['opz3-4-top', 'nrl4242-n3', 'end0', '02:00:c0:00:02:3f', '192.0.2.63', false],
    ],
  );
  // Interface names are at most 15 characters; namespace names are file names.
  for (const node of topology.nodes) assert.ok(node.port.length <= 10, `${node.port} leaves room for "-peer"`);
});

test('the lab profiles point every node at the DNS server the lab runs on the gateway', async () => {
  for (const profile of ['opz3-lab', 'opz5-lab']) {
    const { cluster } = await loadProfile(profile);
    const topology = labTopology(cluster, 1);
    for (const node of topology.nodes) assert.equal(node.dns, [topology.gateway], `${profile} ${node.name}`);
  }
});

test("the lab's DNS server: on the gateway only, its own name and nothing of the host's", async () => {
  const { cluster } = await loadProfile('opz5-lab');
  const topology = labTopology(cluster, 1);
  assert.equal(labDnsRecord(topology), { name: LAB_CHECK_NAME, address: '198.51.100.1' });
  const args = labDnsArguments(topology, '/lab/run/dns');
  for (const arg of [
    '--no-resolv',
    '--no-hosts',
    '--conf-file=/dev/null',
    '--listen-address=198.51.100.1',
    '--bind-interfaces',
    '--host-record=lab-check.netroot.test,198.51.100.1',
    '--local=/netroot.test/',
  ]) {
    assert.ok(args.includes(arg), `${arg} in ${args.join(' ')}`);
  }
  assert.equal(
    args.filter((a) => a.startsWith('--listen-address') || a.startsWith('--interface')),
    ['--listen-address=198.51.100.1'],
    'one address, no interface',
  );
  for (const arg of args.filter((a) => /^--(pid-file|log-facility)=/.test(a)))
    assert.match(arg, /=\/lab\/run\/dns\//, 'state and log in the run directory');
});

test("a spare address for a machine of the lab's own: in the subnet and the ranges, used by nobody", async () => {
  const opz3 = labTopology((await loadProfile('opz3-lab')).cluster, 1);
  assert.is(opz3.spareAddress, '192.0.2.254');
  assert.is(labTopology((await loadProfile('opz5-lab')).cluster, 1).spareAddress, '198.51.100.254');
  // A node on .254 and the DNS server on .253: the next one down.
  const dir = await writeProfiles({
    'busy.yaml': OPZ3.replace('ip: 192.0.2.63,', 'ip: 192.0.2.254,').replace('dns: [192.0.2.1]', 'dns: [192.0.2.253]'),
  });
  const busy = labTopology((await loadProfile(path.join(dir, 'busy.yaml'))).cluster, 1);
  assert.is(busy.spareAddress, '192.0.2.252');
});

test('documentation ranges only', () => {
  for (const ip of ['192.0.2.1', '198.51.100.254', '203.0.113.9']) assert.ok(inDocumentationRange(ip), ip);
  for (const ip of ['192.0.3.1', '10.0.0.1', '192.168.1.10', '8.8.8.8', '198.51.101.1']) assert.not.ok(inDocumentationRange(ip), ip);
});

test('a profile on a real network is refused, naming every address outside the ranges', async () => {
  // The bundled opz3 moved onto a home network: the profile is valid, the lab must still refuse it.
  const dir = await writeProfiles({ 'home.yaml': OPZ3.replaceAll('192.0.2.', '192.168.1.') });
  const { cluster } = await loadProfile(path.join(dir, 'home.yaml'));
  try {
    labTopology(cluster, 1);
    assert.unreachable('a lab on 192.168.1.0/24 must be refused');
  } catch (error) {
    assert.instance(error, LabError);
    const message = (error as Error).message;
    assert.match(message, '192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24');
    for (const part of [
      'network.gateway 192.168.1.1',
      'network.vip 192.168.1.50',
      'network.nfsServer 192.168.1.10',
      'nodes opz3-1-onder ip 192.168.1.60',
      'nodes opz3-4-top ip 192.168.1.63',
    ])
      assert.match(message, part);
  }
});
