/**
 * The pure parts of the emulated-board scenario: the cable's own MAC, the
 * pxelinux file name, and what a node's own report must say to pass.
 */
import path from 'node:path';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { cableMac } from '../../src/lab/board.js';
import { pxelinuxName, unitProblems, type NodeFacts } from '../../src/lab/scenarios/netboot-arm64.js';
import { loadProfile } from '../../src/profile/load.js';

const { cluster } = await loadProfile(path.resolve('profiles/opz3-netboot.yaml'));
const [server, , , agent] = cluster.nodes;

test("the cable end gives the board's MAC up for another unicast, locally administered one", () => {
  for (const mac of ['02:00:c0:00:02:3c', '52:54:00:12:34:56', '06:aa:bb:cc:dd:ee']) {
    const other = cableMac(mac);
    assert.is.not(other, mac);
    const first = parseInt(other.split(':')[0]!, 16);
    assert.is(first & 1, 0, `${other} is unicast`);
    assert.is(first & 2, 2, `${other} is locally administered`);
    assert.is(other.slice(2), mac.slice(2));
  }
});

test('pxelinux names a MAC as U-Boot asks for it', () => {
  assert.is(pxelinuxName('02:00:C0:00:02:3C'), '01-02-00-c0-00-02-3c');
});

const good = (name: string): NodeFacts => ({
  hostname: name,
  bootId: 'b1',
  addresses: ['192.0.2.60'],
  system: 'running',
  failed: [],
  root: { target: '/', source: `192.0.2.10:/srv/nfs/opz3-netboot/${name}`, fstype: 'nfs' },
  rancher: { target: '/var/lib/rancher', source: '/dev/loop0[/rancher]', fstype: 'ext4', label: 'netroot-local', uuid: 'u1' },
  units: {
    'keepalived.service': 'active',
    'mariadb.service': 'active',
    'k3s.service': 'active',
    'k3s-agent.service': 'inactive',
    'netroot-local-storage.service': 'active',
    'iscsid.service': 'active',
  },
});

test('a node that reports its own name, NFS root, loop-mounted local storage and active units passes', () => {
  assert.equal(unitProblems(good(server!.name), server!, cluster), []);
  const agentFacts = {
    ...good(agent!.name),
    units: { ...good(agent!.name).units, 'k3s-agent.service': 'active', 'k3s.service': 'inactive', 'mariadb.service': 'inactive' },
  };
  assert.equal(unitProblems(agentFacts, agent!, cluster), []);
});

test('each way a node can be wrong is named', () => {
  const facts = good(server!.name);
  const problems = unitProblems(
    {
      ...facts,
      hostname: 'localhost',
      system: 'degraded',
      failed: ['iscsid.service'],
      root: { ...facts.root, source: '192.0.2.10:/srv/nfs/opz3-netboot/opz3-2-midden' },
      rancher: { target: '/', source: '192.0.2.10:/srv/nfs/opz3-netboot/opz3-1-onder', fstype: 'nfs' },
      units: { ...facts.units, 'mariadb.service': 'failed', 'iscsid.service': 'failed' },
    },
    server!,
    cluster,
  );
  assert.equal(problems, [
    'hostname localhost, not opz3-1-onder',
    'systemd says degraded; failed: iscsid.service',
    '/ is 192.0.2.10:/srv/nfs/opz3-netboot/opz3-2-midden (nfs), not 192.0.2.10:/srv/nfs/opz3-netboot/opz3-1-onder over NFS',
    '/var/lib/rancher is 192.0.2.10:/srv/nfs/opz3-netboot/opz3-1-onder (nfs, label none), not the ext4 loop image labelled netroot-local',
    'not active: mariadb.service (failed), iscsid.service (failed)',
  ]);
});
