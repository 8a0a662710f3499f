/**
 * What the lab reads back from the network and from the build: a udhcpc lease,
 * a pxelinux file as the build renders it, a server's datastore endpoint.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { baseForArch } from '../../src/lab/lab.js';
import { parseLease, parsePxelinux, pxelinuxName } from '../../src/lab/netboot.js';
import { parseDatastoreEndpoint } from '../../src/lab/probes.js';
import { nslookupAddresses } from '../../src/lab/dns.js';
import { systemdArguments } from '../../src/lab/machine.js';
import {
  galeraTlsProblems,
  parseFailedUnits,
  parseGetentHosts,
  parseProviderOptions,
  startupSeconds,
  timeoutLines,
} from '../../src/lab/node-checks.js';
import { GALERA_CNF, parseGaleraCnf, readRogueLog, rogueCnf } from '../../src/lab/scenarios/rogue-galera-node.js';
import { buildToTemp, type TempBuild } from '../support/build.js';

let lab: TempBuild;
test.before(async () => {
  lab = await buildToTemp('opz3-lab');
});
test.after(() => lab.cleanup());

test('a lease printed by the udhcpc script', () => {
  const lease = parseLease(
    'udhcpc: started\nlease ip=192.0.2.61 subnet=255.255.255.0 router=192.0.2.1 hostname=opz3-2-midden siaddr=192.0.2.10 boot_file=pxelinux.0\n',
  );
  assert.equal(lease, {
    ip: '192.0.2.61',
    subnet: '255.255.255.0',
    router: '192.0.2.1',
    hostname: 'opz3-2-midden',
    siaddr: '192.0.2.10',
    bootFile: 'pxelinux.0',
  });
  assert.equal(
    parseLease('lease ip=192.0.2.61 subnet= router= hostname= siaddr= boot_file='),
    { ip: '192.0.2.61' },
    'empty options are absent, not empty strings',
  );
  assert.is(parseLease('udhcpc: no lease, failing'), undefined);
});

test("the pxelinux file the build renders names kernel, initrd and the node's own export", async () => {
  const node = lab.plan.cluster.nodes[1]!;
  const text = await readFile(path.join(lab.dir, 'tftp/pxelinux.cfg', pxelinuxName(node.mac)), 'utf8');
  assert.is(pxelinuxName('02:00:C0:00:02:3D'), '01-02-00-c0-00-02-3d');
  const entry = parsePxelinux(text);
  assert.is(entry.kernel, 'boot/lab-amd64/vmlinuz');
  assert.is(entry.initrd, 'boot/lab-amd64/initrd.img');
  assert.is(entry.fdt, undefined, 'the lab board has no device tree');
  assert.is(entry.nfsServer, '192.0.2.10');
  assert.is(entry.nfsPath, `/srv/nfs/opz3/${node.name}`);
});

test('the datastore endpoint of a rendered server config, and none on an agent', async () => {
  const server = await readFile(path.join(lab.nodeRoot('opz3-1-onder'), 'etc/rancher/k3s/config.yaml'), 'utf8');
  const datastore = parseDatastoreEndpoint(server);
  assert.ok(datastore, 'a server has a datastore-endpoint');
  assert.equal({ ...datastore!, password: '…' }, { user: 'k3s', password: '…', host: '192.0.2.50', port: '3306', database: 'k3s' });
  assert.ok(datastore!.password.length >= 16, 'the generated password is there');
  const agent = await readFile(path.join(lab.nodeRoot('opz3-4-top'), 'etc/rancher/k3s/config.yaml'), 'utf8');
  assert.is(parseDatastoreEndpoint(agent), undefined);
  assert.is(parseDatastoreEndpoint('datastore-endpoint: "postgres://a:b@c/d"'), undefined, 'only the MySQL form k3s uses for MariaDB');
});

test('--arch swaps the architecture of a debootstrap base and refuses other bases', () => {
  assert.is(baseForArch('debootstrap:bookworm:amd64:python3,dbus', 'arm64'), 'debootstrap:bookworm:arm64:python3,dbus');
  assert.is(
    baseForArch('debootstrap:bookworm:amd64:python3,linux-image-amd64', 'arm64'),
    'debootstrap:bookworm:arm64:python3,linux-image-arm64',
    'the kernel package follows',
  );
  assert.is(baseForArch('debootstrap:bookworm:amd64', 'arm64'), 'debootstrap:bookworm:arm64');
  assert.throws(() => baseForArch('/srv/armbian.img', 'arm64'), /--arch needs a profile whose base is debootstrap/);
  assert.throws(() => baseForArch(undefined, 'arm64'), /not none/);
});

test("a node's kernel command line reaches its container's systemd only through its systemd.* arguments", async () => {
  const node = lab.plan.cluster.nodes[0]!;
  const entry = parsePxelinux(await readFile(path.join(lab.dir, 'tftp/pxelinux.cfg', pxelinuxName(node.mac)), 'utf8'));
  const args = entry.append!.split(/\s+/);
  assert.ok(args.includes('root=/dev/nfs'), entry.append);
  assert.equal(systemdArguments(args), [], 'the lab profile carries no host workaround: the lab decides those itself');
  assert.equal(systemdArguments([...args, 'systemd.mask=a.mount', 'quiet']), ['systemd.mask=a.mount']);
});

test("busybox nslookup: the answer's addresses, not the server's", () => {
  const out =
    'Server:\t\t192.0.2.1\nAddress:\t192.0.2.1:53\n\nName:\tlab-check.netroot.test\nAddress: 192.0.2.1\n\nNon-authoritative answer:\n';
  assert.equal(nslookupAddresses(out, 'lab-check.netroot.test'), ['192.0.2.1']);
  assert.equal(
    nslookupAddresses(
      "Server:\t\t192.0.2.1\nAddress:\t192.0.2.1:53\n\n** server can't find lab-check.netroot.test: NXDOMAIN\n",
      'lab-check.netroot.test',
    ),
    [],
  );
  assert.equal(nslookupAddresses('Name:\tother.netroot.test\nAddress: 192.0.2.9\n', 'lab-check.netroot.test'), []);
});

test('what systemd and getent say inside a node', () => {
  assert.equal(parseGetentHosts('192.0.2.1       lab-check.netroot.test\n'), ['192.0.2.1']);
  assert.equal(parseGetentHosts(''), []);
  // systemctl --failed --no-legend --plain, as bookworm's systemd 252 prints it in the lab.
  assert.equal(
    parseFailedUnits(
      'run-rpc_pipefs.mount loaded failed failed RPC Pipe File System\n● k3s.service loaded failed failed Lightweight Kubernetes\n',
    ),
    ['run-rpc_pipefs.mount', 'k3s.service'],
  );
  assert.equal(parseFailedUnits(''), []);
  assert.is(startupSeconds('UserspaceTimestampMonotonic=1000000\nFinishTimestampMonotonic=20761000\n'), 19.8);
  assert.is(startupSeconds('UserspaceTimestampMonotonic=1000000\nFinishTimestampMonotonic=0\n'), undefined, 'still starting');
  assert.equal(
    timeoutLines(
      'Starting foo.service...\nsystemd-time-wait-sync.service: start operation timed out. Terminating.\nTimed out waiting for device /dev/disk/by-label/netroot-local.\nStarted bar.service.',
    ),
    [
      'systemd-time-wait-sync.service: start operation timed out. Terminating.',
      'Timed out waiting for device /dev/disk/by-label/netroot-local.',
    ],
  );
});

test('Galera over TLS, read from wsrep_provider_options', () => {
  // Abridged from a lab server (Galera 4.23): the rendered socket.ssl_* are in effect.
  const tls = parseProviderOptions(
    'base_dir = /var/lib/mysql/; gmcast.listen_addr = ssl://0.0.0.0:4567; socket.ssl = YES; socket.ssl_ca = /etc/mysql/netroot-tls/ca.pem; socket.ssl_cert = /etc/mysql/netroot-tls/server.pem; socket.ssl_cipher = ; socket.ssl_key = /etc/mysql/netroot-tls/server-key.pem; socket.ssl_reload = 1',
  );
  assert.is(tls.get('socket.ssl_cipher'), '');
  assert.equal(galeraTlsProblems(tls), []);
  // Without socket.ssl_* (Galera 4.23 on this host), no socket.ssl option is listed at all.
  const plain = parseProviderOptions(
    'base_dir = /var/lib/mysql/; gcache.size = 16M; gmcast.listen_addr = tcp://0.0.0.0:4567; gmcast.mcast_addr = ',
  );
  assert.equal(galeraTlsProblems(plain), [
    'socket.ssl is not set',
    'socket.ssl_ca is empty',
    'socket.ssl_cert is empty',
    'socket.ssl_key is empty',
    'gmcast.listen_addr is tcp://0.0.0.0:4567, not ssl://',
  ]);
  assert.equal(
    galeraTlsProblems(
      parseProviderOptions(
        'gmcast.listen_addr = ssl://0.0.0.0:4567; socket.ssl = NO; socket.ssl_ca = /ca.pem; socket.ssl_cert = /c.pem; socket.ssl_key = /k.pem',
      ),
    ),
    ['socket.ssl is NO'],
  );
});

test("the stranger knows what every server's config says: the cluster's name and peers", async () => {
  const galera = parseGaleraCnf(await readFile(path.join(lab.nodeRoot('opz3-2-midden'), GALERA_CNF), 'utf8'));
  assert.equal(galera, {
    clusterName: 'k3s_cluster',
    clusterAddress: 'gcomm://192.0.2.60,192.0.2.61,192.0.2.62',
    provider: '/usr/lib/galera/libgalera_smm.so',
  });
  assert.is(parseGaleraCnf('[mysqld]\nwsrep_on=ON\n'), undefined);
  const base = { dir: '/lab/run/rogue', address: '192.0.2.254', galera: galera!, clusterCa: '/build/ca.pem' };
  const plain = rogueCnf({ ...base, kind: 'plain' });
  assert.match(plain, /^wsrep_cluster_name=k3s_cluster$/m);
  assert.match(plain, /^wsrep_cluster_address=gcomm:\/\/192\.0\.2\.60,192\.0\.2\.61,192\.0\.2\.62$/m);
  assert.match(plain, /^wsrep_node_address=192\.0\.2\.254$/m);
  assert.match(plain, /^datadir=\/lab\/run\/rogue\/data$/m);
  assert.match(plain, /^wsrep_provider_options="gcache\.size=16M"$/m, 'no TLS');
  const forged = rogueCnf({ ...base, kind: 'forged' });
  assert.match(
    forged,
    'socket.ssl_ca=/build/ca.pem;socket.ssl_cert=/lab/run/rogue/tls/cert.pem;socket.ssl_key=/lab/run/rogue/tls/key.pem',
    "the cluster's CA, its own certificate",
  );
});

/** Lines of the stranger's MariaDB log in the lab (Galera 4.23), the timestamps cut. */
const ROGUE_HEAD = [
  "0 [Note] WSREP: (5945d8ea-9e2d, 'ssl://0.0.0.0:4567') listening at ssl://0.0.0.0:4567",
  "0 [Note] WSREP: gcomm: connecting to group 'k3s_cluster', peer '192.0.2.60:,192.0.2.61:,192.0.2.62:'",
];
const ROGUE_ALONE = [
  '0 [Note] WSREP: No nodes coming from primary view, primary view is not possible',
  '0 [Note] WSREP: view(view_id(NON_PRIM,5945d8ea-9e2d,1) memb {',
  '\t5945d8ea-9e2d,0',
  '} joined {',
  '} left {',
  '} partitioned {',
  '})',
];
const ROGUE_END = [
  '0 [ERROR] WSREP: failed to open gcomm backend connection: 110: failed to reach primary view',
  "0 [ERROR] WSREP: ./gcs/src/gcs.cpp:gcs_open():1701: Failed to open channel 'k3s_cluster' at 'gcomm://192.0.2.60,192.0.2.61,192.0.2.62': -110 (Connection timed out)",
  '0 [ERROR] Aborting',
];

test("the stranger's log: what it tried, why it got nowhere, and a join when there is one", () => {
  const forged = readRogueLog(
    [
      ...ROGUE_HEAD,
      "0 [Warning] WSREP: read_handler(): tlsv1 alert unknown ca (167773208: 'error:0A000418:SSL routines::tlsv1 alert unknown ca')",
      "0 [Warning] WSREP: read_handler(): tlsv1 alert unknown ca (167773208: 'error:0A000418:SSL routines::tlsv1 alert unknown ca')",
      ...ROGUE_ALONE,
      ...ROGUE_END,
    ].join('\n'),
  );
  assert.is(forged.tried, "gcomm: connecting to group 'k3s_cluster', peer '192.0.2.60:,192.0.2.61:,192.0.2.62:'");
  assert.equal(
    forged.refusals,
    [
      'read_handler(): tlsv1 alert unknown ca',
      'No nodes coming from primary view, primary view is not possible',
      'failed to reach primary view',
    ],
    'each once',
  );
  assert.is(forged.members, 1);
  assert.is(forged.primary, false);
  assert.is(forged.ended, 'Aborting');

  const joined = readRogueLog(
    [
      ...ROGUE_HEAD,
      '0 [Note] WSREP: view(view_id(PRIM,274a59c0-9fb5,4) memb {',
      '\t274a59c0-9fb5,0',
      '\t27e1fdff-8442,0',
      '\t27f478c7-b0df,0',
      '\t5945d8ea-9e2d,0',
      '} joined {',
      '})',
      '0 [Note] WSREP: New cluster view: global state: 274ac96a-edba-11f1-ba94-c3e4f3d2e5bc:28, view# 5: Primary, number of nodes: 4, my index: 3, protocol version 3',
    ].join('\n'),
  );
  assert.is(joined.members, 4);
  assert.is(joined.primary, true);
  assert.is(joined.ended, undefined);
  assert.is(readRogueLog('').tried, undefined);
});
