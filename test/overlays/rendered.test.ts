/**
 * Rendered files, checked by the programs that read them: keepalived,
 * mariadbd, the mariadb client, dnsmasq, systemd-analyze and bash; plus what
 * each file must say for the profile it came from.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { buildToTemp, type TempBuild } from '../support/build.js';
import { startMariadb } from '../support/mariadb.js';
import { KINE_INDEXES } from '../../src/lab/scenarios/kine-sequence.js';
import { dnsmasqTest, keepalivedConfigTest, mariadbdCheck, mariadbdEffectiveOptions, sshdEffective, systemdVerify } from '../support/peers.js';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';

const builds = new Map<string, TempBuild>();
const PROFILES = ['opz3', 'rock64'];

// opz3 with SSH keys for a named user, one node with keys of its own, and a root password hash.
const CLUSTER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINebRy7VBys0QP6ubC9/5YatajgkJoeKAgIQmZNChbnS ops@example';
const NODE_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHUVOUnYIS1pMiYKeyhNc0TzFeLxoNTypisK6MGPcfm4 other@example';
const ROOT_HASH = "$6$salt$egUxKNxDs8kPfh8iPMNcosMhb2eWah6d3R44JDm5Rj/j/XWR5E33QPd0YmHXoDHOIDR6kL5D3JcQcz0O8FHE00";
let sshDir: string;
let hostKey: string;

test.before(async () => {
  for (const name of PROFILES) builds.set(name, await buildToTemp(name));
  sshDir = await mkdtemp(path.join(os.tmpdir(), 'netroot-ssh-profile-'));
  await writeFile(
    path.join(sshDir, 'opz3-ssh.yaml'),
    `extends: ${path.resolve('profiles/opz3.yaml')}\ncluster: { name: opz3-ssh }\n` +
      `ssh: { user: admin, authorizedKeys: ["${CLUSTER_KEY}"], rootPasswordHash: '${ROOT_HASH}' }\n` +
      `network: { ntp: [ntp.example.org, 192.0.2.5] }\n` +
      `nodes:\n  - { name: opz3-2-midden, ssh: { authorizedKeys: ["${NODE_KEY}", "${CLUSTER_KEY}"] }, network: { ntp: [192.0.2.6], dns: [192.0.2.7] } }\n`,
  );
  builds.set('opz3-ssh', await buildToTemp('opz3-ssh', { profilesDir: sshDir }));
  hostKey = path.join(sshDir, 'host_key');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
});
test.after(async () => {
  for (const b of builds.values()) await b.cleanup();
  if (sshDir) await rm(sshDir, { recursive: true, force: true });
});

test('opz3 without SSH keys: root logs in by key only, nobody by password, root\'s password locked, and the build warns', async () => {
  const b = builds.get('opz3')!;
  assert.equal(b.warnings.length, 1);
  assert.match(b.warnings[0]!, /^nobody can log in to any node over SSH as root \(not even on the console, root's password is locked\): add your public key to the profile, e\.g\. ssh: /);
  for (const node of b.plan.cluster.nodes) {
    const root = b.nodeRoot(node.name);
    const sshd = await sshdEffective(root, 'root', hostKey);
    assert.is(sshd.get('permitrootlogin'), 'without-password', `${node.name}: Armbian's PermitRootLogin yes is overridden`);
    assert.is(sshd.get('passwordauthentication'), 'no');
    assert.is(sshd.get('kbdinteractiveauthentication'), 'no');
    assert.is(sshd.get('authorizedkeysfile'), '.ssh/authorized_keys .ssh/authorized_keys2');
    assert.not.ok(existsSync(path.join(root, 'etc/ssh/netroot-authorized-keys')));
    assert.not.ok(existsSync(path.join(root, 'etc/sysusers.d/netroot-ssh.conf')));
  }
});

test('opz3 with SSH keys for admin: sshd takes the keys for admin only, root does not log in, the node\'s own keys win', async () => {
  const b = builds.get('opz3-ssh')!;
  assert.equal(b.warnings, []);
  for (const node of b.plan.cluster.nodes) {
    const root = b.nodeRoot(node.name);
    const admin = await sshdEffective(root, 'admin', hostKey);
    assert.is(admin.get('authorizedkeysfile'), '.ssh/authorized_keys /etc/ssh/netroot-authorized-keys');
    assert.is(admin.get('passwordauthentication'), 'no');
    assert.is(admin.get('permitrootlogin'), 'no');
    const other = await sshdEffective(root, 'mysql', hostKey);
    assert.is(other.get('authorizedkeysfile'), '.ssh/authorized_keys .ssh/authorized_keys2', 'the profile\'s keys open no other account');
    const keys = (await read(path.join(root, 'etc/ssh/netroot-authorized-keys'))).trim().split('\n');
    assert.equal(keys, node.name === 'opz3-2-midden' ? [NODE_KEY, CLUSTER_KEY] : [CLUSTER_KEY]);
    // ssh-keygen reads every line as a public key.
    const fingerprints = await execa('ssh-keygen', ['-l', '-f', path.join(root, 'etc/ssh/netroot-authorized-keys')]);
    assert.is(fingerprints.stdout.trim().split('\n').length, keys.length);
    // systemd-sysusers creates admin in a root that lacks it.
    const fake = await mkdtemp(path.join(sshDir, 'sysusers-'));
    await execa('mkdir', ['-p', path.join(fake, 'etc')]);
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) await writeFile(path.join(fake, 'etc', f), (await readFile(`/etc/${f}`, 'utf8')).split('\n').filter((l) => /^(root|sudo):/.test(l)).join('\n') + '\n');
    await execa('systemd-sysusers', [`--root=${fake}`, path.join(root, 'etc/sysusers.d/netroot-ssh.conf')]);
    assert.match(await read(path.join(fake, 'etc/passwd')), /^admin:x:\d+:\d+:netroot admin:\/home\/admin:\/bin\/bash$/m);
    assert.match(await read(path.join(fake, 'etc/group')), /^sudo:x:27:admin$/m);
  }
});

test('network.ntp and a node\'s own ntp and dns reach timesyncd and resolved', async () => {
  const b = builds.get('opz3-ssh')!;
  for (const node of b.plan.cluster.nodes) {
    const own = node.name === 'opz3-2-midden';
    assert.match(await read(path.join(b.nodeRoot(node.name), 'etc/systemd/timesyncd.conf.d/netroot.conf')), new RegExp(`^NTP=${own ? '192\\.0\\.2\\.6' : 'ntp\\.example\\.org 192\\.0\\.2\\.5'}$`, 'm'));
    const dns = own ? '192.0.2.7' : b.plan.cluster.profile.network.dns.join(' ');
    assert.match(await read(path.join(b.nodeRoot(node.name), 'etc/systemd/resolved.conf.d/netroot.conf')), new RegExp(`^DNS=${dns.replace(/\./g, '\\.')}$`, 'm'));
  }
});

test('root-password sets the profile\'s hash, or locks root where there is none (Armbian\'s 1234 never survives)', async () => {
  for (const [name, expected] of [['opz3', '!'], ['opz3-ssh', ROOT_HASH]] as const) {
    const b = builds.get(name)!;
    const fake = await mkdtemp(path.join(sshDir, 'shadow-'));
    await execa('mkdir', ['-p', path.join(fake, 'etc')]);
    await writeFile(path.join(fake, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
    await writeFile(path.join(fake, 'etc/group'), 'root:x:0:\n');
    // Armbian's root:1234.
    await writeFile(path.join(fake, 'etc/shadow'), 'root:$y$j9T$7V3ohPt0AWP9FnzR0.5P6.$uN5.DW8BGoK4Rs7gFm1/Vp3iG0uMw1W.YV1Vb3AAOn3:19000:0:99999:7:::\n', { mode: 0o600 });
    const hash = path.join(b.nodeRoot('opz3-1-onder'), 'etc/netroot/root-password-hash');
    if (name === 'opz3-ssh') {
      const { statSync } = await import('node:fs');
      assert.is(statSync(hash).mode & 0o777, 0o600, 'the hash is for root\'s eyes only');
      await execa('mkdir', ['-p', path.join(fake, 'etc/netroot')]);
      await writeFile(path.join(fake, 'etc/netroot/root-password-hash'), await readFile(hash));
    } else assert.not.ok(existsSync(hash));
    const run = await execa(path.join(b.nodeRoot('opz3-1-onder'), 'usr/local/lib/netroot/root-password'), [fake], { reject: false });
    assert.is(run.exitCode, 0, run.stderr);
    assert.is((await read(path.join(fake, 'etc/shadow'))).split(':')[1], expected, name);
  }
});

const read = (file: string) => readFile(file, 'utf8');

for (const profileName of PROFILES) {
  const get = () => builds.get(profileName)!;

  test(`${profileName}: keepalived --config-test accepts every server's keepalived.conf`, async () => {
    const b = get();
    for (const server of b.plan.cluster.servers) {
      const conf = await read(path.join(b.nodeRoot(server.name), 'etc/keepalived/keepalived.conf'));
      const scripts = [{ path: '/usr/local/lib/netroot/galera-ready', from: path.join(b.nodeRoot(server.name), 'usr/local/lib/netroot/galera-ready') }];
      const result = await keepalivedConfigTest(conf, [server.interface], scripts);
      assert.ok(result.ok, `${server.name}: ${result.output}`);
    }
  });

  test(`${profileName}: keepalived.conf carries the node's priority, state, interface, router id, auth and VIP`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    const priorities = new Set<number>();
    for (const server of b.plan.cluster.servers) {
      const conf = await read(path.join(b.nodeRoot(server.name), 'etc/keepalived/keepalived.conf'));
      const priority = Number(/^\s*priority (\d+)$/m.exec(conf)?.[1]);
      priorities.add(priority);
      assert.match(conf, new RegExp(`^\\s*interface ${server.interface}$`, 'm'));
      assert.match(conf, new RegExp(`^\\s*virtual_router_id ${profile.keepalived.virtualRouterId}$`, 'm'));
      assert.match(conf, new RegExp(`^\\s*auth_pass ${b.secrets.secrets.keepalivedAuthPass}$`, 'm'));
      assert.match(conf, new RegExp(`^\\s*${profile.network.vip.replace(/\./g, '\\.')}/24 dev ${server.interface}$`, 'm'));
      assert.match(conf, /^\s*state (MASTER|BACKUP)$/m);
    }
    assert.is(priorities.size, b.plan.cluster.servers.length, 'priorities are unique');
    const masters = [];
    for (const server of b.plan.cluster.servers) {
      const conf = await read(path.join(b.nodeRoot(server.name), 'etc/keepalived/keepalived.conf'));
      if (/state MASTER/.test(conf)) masters.push(Number(/priority (\d+)/.exec(conf)![1]));
    }
    assert.equal(masters, [Math.max(...priorities)], 'exactly one MASTER, the highest priority');
  });

  test(`${profileName}: agents get no keepalived, Galera or database secrets, and no server token`, async () => {
    const b = get();
    for (const agent of b.plan.cluster.agents) {
      const root = b.nodeRoot(agent.name);
      assert.not.ok(existsSync(path.join(root, 'etc/keepalived/keepalived.conf')));
      assert.not.ok(existsSync(path.join(root, 'etc/mysql')));
      assert.not.ok(existsSync(path.join(root, 'etc/netroot/k3s-datastore.sql')));
      for (const f of b.plan.nodes.find((n) => n.node.name === agent.name)!.files) {
        if (f.content) assert.not.ok(f.content.toString().includes(b.secrets.secrets.k3sDatabasePassword), `${f.path} holds the database password`);
      }
      // Every file on the agent's disk, as written: none holds the server token (only the agent token).
      const { stdout } = await execa('grep', ['-rlF', '--', b.secrets.secrets.k3sToken, root], { reject: false });
      assert.is(stdout, '', `${agent.name} holds the server token in ${stdout}`);
      const agentToken = await execa('grep', ['-rlF', '--', b.secrets.secrets.k3sAgentToken, root], { reject: false });
      assert.is(agentToken.stdout.trim(), path.join(root, 'etc/rancher/k3s/config.yaml'));
    }
  });

  test(`${profileName}: mariadbd accepts the Galera and bind-address files and takes their values`, async () => {
    const b = get();
    const servers = b.plan.cluster.servers;
    for (const server of servers) {
      const dir = path.join(b.nodeRoot(server.name), 'etc/mysql/mariadb.conf.d');
      const files = await Promise.all((await readdir(dir)).map(async (name) => ({ name, content: await read(path.join(dir, name)) })));
      const check = await mariadbdCheck(files);
      assert.ok(check.ok, `${server.name}: ${check.output}`);
      const options = await mariadbdEffectiveOptions(files);
      assert.is(options.get('bind-address'), '0.0.0.0');
      assert.is(options.get('wsrep-on'), 'TRUE');
      assert.is(options.get('wsrep-cluster-address'), `gcomm://${servers.map((s) => s.ip).join(',')}`);
      assert.is(options.get('wsrep-node-address'), server.ip);
      assert.is(options.get('wsrep-node-name'), server.name);
      assert.is(options.get('wsrep-cluster-name'), b.plan.cluster.profile.galera.clusterName);
      assert.is(options.get('wsrep-sst-method'), b.plan.cluster.profile.galera.sstMethod);
      assert.is(options.get('binlog-format'), 'ROW');
      // kine: ids that grow by exactly 1 and reads that see every committed write after the VIP moves.
      assert.is(options.get('wsrep-auto-increment-control'), 'FALSE');
      assert.is(options.get('wsrep-sync-wait'), '7');
      // An overlay-only build does not know the base's MariaDB: loose- is ignored where the option does not exist.
      assert.is(options.get('innodb-snapshot-isolation'), 'FALSE');
      // TLS for clients (k3s) and for Galera's group communication and IST.
      assert.is(options.get('ssl-ca'), '/etc/mysql/netroot-tls/ca.pem');
      assert.is(options.get('ssl-cert'), '/etc/mysql/netroot-tls/server.pem');
      // The key as mysql's copy in /run, made at each start (netroot-tls.conf).
      assert.is(options.get('ssl-key'), '/run/netroot-tls/server-key.pem');
      assert.is(options.get('wsrep-provider-options'), 'socket.ssl_ca=/etc/mysql/netroot-tls/ca.pem;socket.ssl_cert=/etc/mysql/netroot-tls/server.pem;socket.ssl_key=/run/netroot-tls/server-key.pem');
      // Written as rendered: the comment that says why reaches the node, just above the option it explains.
      const galera = files.find((f) => f.name === '70-netroot-galera.cnf')!.content;
      assert.match(galera, /^# Accounts are granted by address \('%'\), never by host name; without this every\n# connection \(k3s, peers, SST\) waits on a reverse DNS lookup, .*\n.*\nskip_name_resolve=ON$/m);
      assert.match(galera, /^# Generated by netroot from overlays\/galera\/etc\/mysql\/mariadb\.conf\.d\/70-netroot-galera\.cnf\.hbs; do not edit on the node\.$/m);
      assert.is(options.get('skip-name-resolve'), 'TRUE');
    }
  });

  test(`${profileName}: TLS: every server's certificate verifies against the cluster CA and names its IP and the VIP; the key matches; state transfers and the k3s user require it`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    const cas = new Set<string>();
    for (const server of b.plan.cluster.servers) {
      const dir = path.join(b.nodeRoot(server.name), 'etc/mysql/netroot-tls');
      cas.add(await read(path.join(dir, 'ca.pem')));
      const verify = await execa('openssl', ['verify', '-CAfile', path.join(dir, 'ca.pem'), path.join(dir, 'server.pem')], { reject: false });
      assert.is(verify.exitCode, 0, `${server.name}: ${verify.stdout} ${verify.stderr}`);
      const text = (await execa('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', path.join(dir, 'server.pem')])).stdout;
      assert.match(text, `IP Address:${server.ip}`);
      assert.match(text, `IP Address:${profile.network.vip}`);
      // The key is the certificate's, and only its owner reads it.
      const pub = async (args: string[]) => (await execa('openssl', args)).stdout;
      assert.is(await pub(['pkey', '-pubout', '-in', path.join(dir, 'server-key.pem')]), await pub(['x509', '-noout', '-pubkey', '-in', path.join(dir, 'server.pem')]));
      const { statSync } = await import('node:fs');
      assert.is(statSync(path.join(dir, 'server-key.pem')).mode & 0o777, 0o600);
      // wsrep_sst_rsync reads [sst] tca/tcert/tkey and ssl-mode: VERIFY_CA makes it use stunnel or refuse.
      const cnf = await read(path.join(b.nodeRoot(server.name), 'etc/mysql/mariadb.conf.d/72-netroot-tls.cnf'));
      const sst = cnf.split(/^\[sst\]$/m)[1]!;
      for (const line of ['tca=/etc/mysql/netroot-tls/ca.pem', 'tcert=/etc/mysql/netroot-tls/server.pem', 'tkey=/run/netroot-tls/server-key.pem', 'ssl-mode=VERIFY_CA']) assert.match(sst, new RegExp(`^${line}$`, 'm'));
      const sql = await read(path.join(b.nodeRoot(server.name), 'etc/netroot/k3s-datastore.sql'));
      assert.match(sql, new RegExp(`^CREATE USER IF NOT EXISTS '${profile.k3s.user}'@'%' IDENTIFIED BY '[^']+' REQUIRE SSL;$`, 'm'));
      assert.match(sql, new RegExp(`^ALTER USER '${profile.k3s.user}'@'%' IDENTIFIED BY '[^']+' REQUIRE SSL;$`, 'm'));
      const dropIn = await read(path.join(b.nodeRoot(server.name), 'etc/systemd/system/mariadb.service.d/netroot-tls.conf'));
      // The image's key stays root's (a deploy may rewrite it while MariaDB runs); each start copies it for mysql.
      const starts = dropIn.split('\n').filter((l) => l.startsWith('ExecStartPre='));
      assert.equal(starts, [
        'ExecStartPre=+/usr/bin/install -d -m 0700 -o mysql -g mysql /run/netroot-tls',
        'ExecStartPre=+/usr/bin/install -m 0600 -o mysql -g mysql /etc/mysql/netroot-tls/server-key.pem /run/netroot-tls/server-key.pem',
      ]);
    }
    assert.is(cas.size, 1, 'one CA for the cluster');
    for (const agent of b.plan.cluster.agents) assert.not.ok(existsSync(path.join(b.nodeRoot(agent.name), 'etc/mysql/netroot-tls')));
    // The wsrep_sst_rsync of this machine's MariaDB reads those names.
    const script = await read('/usr/bin/wsrep_sst_common');
    for (const name of ["'tca'", "'tcert'", "'tkey'"]) assert.ok(script.includes(name), name);
    assert.match(await read('/usr/bin/wsrep_sst_rsync'), "'ssl-mode'");
  });

  test(`${profileName}: the mariadb client reads the k3s datastore credentials`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    for (const server of b.plan.cluster.servers) {
      const cnf = path.join(b.nodeRoot(server.name), 'etc/netroot/k3s-datastore.cnf');
      const { stdout } = await execa('mariadb', [`--defaults-file=${cnf}`, '--print-defaults'], { timeout: 20_000 });
      const args = stdout.trim().split(/\s+/).slice(-10);
      for (const expected of [`--user=${profile.k3s.user}`, `--password=${b.secrets.secrets.k3sDatabasePassword}`, `--host=${profile.network.vip}`, '--port=3306', `--database=${profile.k3s.database}`]) {
        assert.ok(stdout.includes(expected), `${expected} missing from ${args.join(' ')}`);
      }
    }
  });

  test(`${profileName}: a real MariaDB runs the datastore SQL on every boot, and it completes kine's schema that a cut-off first start left half made`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    const server = b.plan.cluster.servers[0]!;
    const sql = await read(path.join(b.nodeRoot(server.name), 'etc/netroot/k3s-datastore.sql'));
    const db = await startMariadb();
    try {
      const indexes = async () =>
        (await db.sql(`SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = '${profile.k3s.database}' AND table_name = 'kine' ORDER BY index_name`))
          .split('\n')
          .filter(Boolean);
      // kine's first start cut off after its table and one index (what the lab saw when the VIP moved).
      await db.sql(`CREATE DATABASE \`${profile.k3s.database}\`; CREATE TABLE \`${profile.k3s.database}\`.kine (id BIGINT UNSIGNED AUTO_INCREMENT, name VARCHAR(630) CHARACTER SET ascii, created INTEGER, deleted INTEGER, create_revision BIGINT UNSIGNED, prev_revision BIGINT UNSIGNED, lease INTEGER, value MEDIUMBLOB, old_value MEDIUMBLOB, PRIMARY KEY (id)); CREATE INDEX kine_name_index ON \`${profile.k3s.database}\`.kine (name)`);
      await db.sql(`INSERT INTO \`${profile.k3s.database}\`.kine (name, prev_revision) VALUES ('/registry/a', 0)`);
      for (const boot of [1, 2]) {
        await db.sql(sql);
        // Every index kine makes (the list the lab's kine-sequence checks and the k3s stand-in's test holds its copy to).
        assert.equal((await indexes()).sort(), ['PRIMARY', ...KINE_INDEXES].sort(), `boot ${boot}`);
      }
      assert.is(await db.sql(`SELECT name FROM \`${profile.k3s.database}\`.kine`), '/registry/a', "kine's rows are kept");
      // The unique index is there: kine's compare-and-swap relies on it to refuse a second write of one revision.
      const again = await execa('mariadb', ['--no-defaults', `--socket=${db.socket}`, '--user=root', '-e', `INSERT INTO \`${profile.k3s.database}\`.kine (name, prev_revision) VALUES ('/registry/a', 0)`], { reject: false, timeout: 20_000 });
      assert.match(again.stderr, /ERROR 1062/);
    } finally {
      await db.stop();
    }
  });

  test(`${profileName}: dnsmasq --test accepts the DHCP/TFTP config, with a static lease per node`, async () => {
    const b = get();
    const conf = await read(path.join(b.dir, `dnsmasq/${b.plan.cluster.name}.conf`));
    const result = await dnsmasqTest(conf);
    assert.ok(result.ok, result.output);
    for (const node of b.plan.cluster.nodes) {
      assert.match(conf, new RegExp(`^dhcp-host=${node.mac},set:[^,]+,${node.ip.replace(/\./g, '\\.')},${node.name},infinite$`, 'm'));
    }
    assert.match(conf, new RegExp(`^tftp-root=${b.plan.cluster.profile.exports.tftpRoot}$`, 'm'));
    assert.match(conf, /^dhcp-range=[^,]+,[\d.]+,static,/m);
  });

  test(`${profileName}: systemd-analyze verify accepts every unit and drop-in of every node`, async () => {
    const b = get();
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      const unitDir = path.join(root, 'etc/systemd/system');
      const entries = await readdir(unitDir, { withFileTypes: true });
      const units = entries.filter((e) => e.isFile()).map((e) => e.name);
      const dropIns = entries.filter((e) => e.isDirectory() && e.name.endsWith('.d')).map((e) => e.name.slice(0, -2));
      assert.ok(units.length >= 3, `${node.name} has units`);
      const result = await systemdVerify(root, [...units, ...dropIns]);
      assert.ok(result.ok, `${node.name}: ${result.output}`);
    }
  });

  test(`${profileName}: every generated script parses (bash -n, or python3's parser)`, async () => {
    const b = get();
    for (const { node, files } of b.plan.nodes) {
      for (const f of files.filter((x) => x.type === 'file' && (x.mode & 0o111) !== 0)) {
        const text = f.content!.toString();
        const python = text.startsWith('#!/usr/bin/python3\n');
        assert.ok(text.startsWith('#!/bin/bash\n') || python, `${f.path} names its interpreter`);
        const file = path.join(b.nodeRoot(node.name), f.path);
        const r = python
          ? await execa('python3', ['-c', 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])', file], { reject: false, timeout: 10_000 })
          : await execa('bash', ['-n', file], { reject: false, timeout: 10_000 });
        assert.is(r.exitCode, 0, `${node.name}:${f.path}: ${r.stderr}`);
      }
    }
  });

  test(`${profileName}: k3s config.yaml: servers share the datastore, token and cluster flags; agents join through the VIP`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    const vip = profile.network.vip;
    const serverConfigs = [];
    const knownServerKeys = ['token', 'agent-token', 'datastore-endpoint', 'datastore-cafile', 'tls-san', 'node-name', 'node-ip', 'flannel-iface', 'write-kubeconfig-mode', 'disable'];
    for (const server of b.plan.cluster.servers) {
      const config = parse(await read(path.join(b.nodeRoot(server.name), 'etc/rancher/k3s/config.yaml')));
      for (const key of Object.keys(config)) assert.ok(knownServerKeys.includes(key), `unexpected k3s server key ${key}`);
      assert.is(config['datastore-endpoint'], `mysql://${profile.k3s.user}:${b.secrets.secrets.k3sDatabasePassword}@tcp(${vip}:3306)/${profile.k3s.database}`);
      assert.equal(config['tls-san'], [vip]);
      assert.is(config['node-ip'], server.ip);
      assert.is(config['node-name'], server.name);
      // The secure forms, with the CA's hash (test/k3s/ca.test.ts checks the hash).
      assert.match(config.token, new RegExp(`^K10[0-9a-f]{64}::server:${b.secrets.secrets.k3sToken}$`));
      assert.match(config['agent-token'], new RegExp(`^K10[0-9a-f]{64}::node:${b.secrets.secrets.k3sAgentToken}$`));
      assert.is(config['datastore-cafile'], '/etc/mysql/netroot-tls/ca.pem');
      assert.ok(config.disable.includes('local-storage'), 'local-path is not a second default StorageClass');
      serverConfigs.push(config);
    }
    const clusterWide = (c: Record<string, unknown>) => JSON.stringify([c.token, c['agent-token'], c['datastore-endpoint'], c['tls-san'], c.disable]);
    assert.is(new Set(serverConfigs.map(clusterWide)).size, 1, 'cluster-wide flags are identical on every server');
    for (const agent of b.plan.cluster.agents) {
      const config = parse(await read(path.join(b.nodeRoot(agent.name), 'etc/rancher/k3s/config.yaml')));
      assert.equal(Object.keys(config).sort(), ['flannel-iface', 'node-ip', 'node-name', 'server', 'token']);
      assert.is(config.server, `https://${vip}:6443`);
      assert.match(config.token, new RegExp(`^K10[0-9a-f]{64}::node:${b.secrets.secrets.k3sAgentToken}$`));
      assert.is(config['flannel-iface'], agent.interface);
    }
  });

  test(`${profileName}: k3s starts only with its local mounts (rancher, longhorn, container logs), each an enabled bind from local storage`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      const unit = await read(path.join(root, 'etc/systemd/system', node.isServer ? 'k3s.service' : 'k3s-agent.service'));
      const mounts = /^RequiresMountsFor=(.*)$/m.exec(unit)?.[1]?.split(' ') ?? [];
      const expected = ['/var/lib/rancher', ...(profile.longhorn.enabled ? ['/var/lib/longhorn'] : []), ...(node.storage.enabled ? ['/var/log/pods', '/var/log/containers'] : [])];
      assert.equal(mounts, expected, node.name);
      if (!node.storage.enabled) continue;
      for (const where of mounts) {
        const name = `${where.slice(1).replace(/\//g, '-')}.mount`;
        const mount = await read(path.join(root, 'etc/systemd/system', name));
        assert.match(mount, new RegExp(`^Where=${where}$`, 'm'));
        assert.match(mount, /^What=\/var\/lib\/netroot\/local\/[a-z-]+$/m, `${name} binds from the local storage`);
        // The link is absolute (as on the node), so read it rather than follow it into this machine's /etc.
        const { readlink } = await import('node:fs/promises');
        assert.is(await readlink(path.join(root, 'etc/systemd/system/local-fs.target.wants', name)), `/etc/systemd/system/${name}`, `${name} is enabled`);
      }
    }
  });

  test(`${profileName}: boot never stalls on wait-online, and Armbian's ramlog and zram are off`, async () => {
    const b = get();
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      const dropIn = await read(path.join(root, 'etc/systemd/system/systemd-networkd-wait-online.service.d/netroot.conf'));
      const execs = dropIn.split('\n').filter((l) => l.startsWith('ExecStart='));
      assert.equal(execs[0], 'ExecStart=', 'the packaged ExecStart is cleared');
      assert.match(execs[1]!, /^ExecStart=-\/lib\/systemd\/systemd-networkd-wait-online .*--timeout=10\b/);
      // The packaged binary takes these flags.
      const help = await execa('/lib/systemd/systemd-networkd-wait-online', ['--help']);
      for (const flag of ['--any', '--timeout']) assert.ok(help.stdout.includes(flag), flag);
      for (const unit of ['armbian-ramlog.service', 'armbian-zram-config.service']) {
        const { readlink } = await import('node:fs/promises');
        assert.is(await readlink(path.join(root, 'etc/systemd/system', unit)), '/dev/null', `${node.name}: ${unit} masked`);
      }
    }
  });

  test(`${profileName}: names through systemd-resolved (no base read: Armbian's), time from network.ntp through timesyncd; k3s and Galera after time-sync.target, bounded`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      assert.match(await read(path.join(root, 'etc/systemd/resolved.conf.d/netroot.conf')), new RegExp(`^\\[Resolve\\]\nDNS=${node.dns.join(' ')}$`, 'm'));
      assert.not.ok(existsSync(path.join(root, 'etc/resolv.conf')), 'resolved keeps the base\'s resolv.conf link');
      assert.equal(node.ntp, profile.network.ntp ?? [node.gateway], 'network.ntp, else the gateway');
      assert.match(await read(path.join(root, 'etc/systemd/timesyncd.conf.d/netroot.conf')), new RegExp(`^\\[Time\\]\nNTP=${node.ntp.join(' ')}$`, 'm'));
      assert.match(await read(path.join(root, 'etc/systemd/system/systemd-time-wait-sync.service.d/netroot.conf')), /^TimeoutStartSec=90s$/m);
      const { readlink } = await import('node:fs/promises');
      assert.is(await readlink(path.join(root, 'etc/systemd/system/sysinit.target.wants/systemd-time-wait-sync.service')), '/lib/systemd/system/systemd-time-wait-sync.service');
      const k3s = await read(path.join(root, 'etc/systemd/system', node.isServer ? 'k3s.service' : 'k3s-agent.service'));
      assert.ok(/^After=(.*)$/m.exec(k3s)![1]!.split(' ').includes('time-sync.target'), `${node.name}: k3s after time-sync.target`);
      if (node.isServer) assert.match(await read(path.join(root, 'etc/systemd/system/mariadb.service.d/netroot-time-sync.conf')), /^After=time-sync\.target$/m);
    }
  });

  test(`${profileName}: a base without systemd-resolved gets a static resolv.conf; with chrony, chrony's sources; without an NTP client, no wait`, async () => {
    const b = get();
    const { planCluster } = await import('../../src/plan/plan.js');
    const { baseNotes } = await import('../../src/plan/context.js');
    const file = (plan: ReturnType<typeof planCluster>, node: string, p: string) => plan.nodes.find((n) => n.node.name === node)!.files.find((f) => f.path === p);
    const facts = { mariadbVersion: '1:10.11.6-0+deb12u1', systemdResolved: false, chrony: true, timesyncd: false };
    const chrony = planCluster(b.plan.cluster, b.secrets.secrets, b.overlays, b.secrets.identities, facts);
    for (const node of b.plan.cluster.nodes) {
      const resolv = file(chrony, node.name, 'etc/resolv.conf')!.content!.toString();
      assert.equal(resolv.split('\n').filter((l) => l.startsWith('nameserver ')), node.dns.slice(0, 3).map((d) => `nameserver ${d}`));
      assert.is(file(chrony, node.name, 'etc/systemd/resolved.conf.d/netroot.conf'), undefined);
      const sources = file(chrony, node.name, 'etc/chrony/sources.d/netroot.sources')!.content!.toString();
      assert.equal(sources.split('\n').filter((l) => l && !l.startsWith('#')), node.ntp.map((n) => `server ${n} iburst`));
      assert.is(file(chrony, node.name, 'etc/systemd/timesyncd.conf.d/netroot.conf'), undefined);
      assert.ok(file(chrony, node.name, 'etc/systemd/system/sysinit.target.wants/systemd-time-wait-sync.service'));
    }
    const none = planCluster(b.plan.cluster, b.secrets.secrets, b.overlays, b.secrets.identities, { ...facts, chrony: false });
    for (const node of b.plan.cluster.nodes) {
      assert.is(file(none, node.name, 'etc/systemd/system/sysinit.target.wants/systemd-time-wait-sync.service'), undefined, 'no wait for a clock nothing sets');
    }
    assert.match(baseNotes({ ...facts, chrony: false }).warnings[0]!, 'the base has no NTP client');
    assert.match(baseNotes(undefined).notes[0]!, 'assumed Armbian\'s systemd-resolved');
  });

  test(`${profileName}: Longhorn manifest is a HelmChart with the deletion policy and Longhorn as default class`, async () => {
    const b = get();
    const { longhorn } = b.plan.cluster.profile;
    for (const server of b.plan.cluster.servers) {
      const docs = parseAllDocuments(await read(path.join(b.nodeRoot(server.name), 'usr/local/lib/netroot/manifests/longhorn.yaml'))).map((d) => d.toJS());
      const chart = docs.find((d) => d.kind === 'HelmChart');
      assert.is(chart.apiVersion, 'helm.cattle.io/v1');
      assert.is(chart.spec.version, longhorn.version.replace(/^v/, ''));
      const values = parse(chart.spec.valuesContent);
      assert.is(values.defaultSettings.nodeDownPodDeletionPolicy, longhorn.nodeDownPodDeletionPolicy);
      assert.is(values.persistence.defaultClass, true);
      // No Service: the UI is never a LoadBalancer (test/longhorn/ui.test.ts checks its authenticated route).
      assert.is(docs.find((d) => d.kind === 'Service'), undefined);
    }
  });

  test(`${profileName}: pxelinux file per MAC boots the node's own NFS root with cgroups for k3s, rebooting after a panic`, async () => {
    const b = get();
    const { profile } = b.plan.cluster;
    for (const node of b.plan.cluster.nodes) {
      const name = `01-${node.mac.replace(/:/g, '-')}`;
      const conf = await read(path.join(b.dir, 'tftp/pxelinux.cfg', name));
      const append = /^\s*append (.*)$/m.exec(conf)?.[1]?.split(' ') ?? [];
      assert.ok(append.includes('root=/dev/nfs'));
      assert.ok(append.includes(`nfsroot=${profile.network.nfsServer}:${profile.exports.root}/${node.name},vers=3,tcp`), append.join(' '));
      for (const arg of ['ip=dhcp', 'rw', 'rootwait', `console=${node.board.console}`, 'cgroup_enable=memory', `panic=${node.board.panic}`, ...node.board.append]) assert.ok(append.includes(arg), `append lacks ${arg}`);
      assert.match(conf, new RegExp(`^\\s*kernel boot/${node.board.name}/Image$`, 'm'));
      const fdt = node.board.fdt;
      if (fdt) assert.match(conf, new RegExp(`^\\s*fdt boot/${node.board.name}/${path.basename(fdt).replace('.', '\\.')}$`, 'm'));
      else assert.not.match(conf, /^\s*fdt /m, 'a board without a device tree gets no fdt line');
      assert.match(conf, /^default (\S+)$/m);
      assert.match(conf, new RegExp(`^label ${/^default (\S+)$/m.exec(conf)![1]}$`, 'm'));
    }
  });

  test(`${profileName}: each node's root is exported to that node's IP alone`, async () => {
    const b = get();
    const { cluster } = b.plan;
    const lines = (await read(path.join(b.dir, `exports/${cluster.name}.exports`))).split('\n').filter((l) => l && !l.startsWith('#'));
    assert.is(lines.length, cluster.nodes.length);
    for (const node of cluster.nodes) {
      const line = lines.find((l) => l.startsWith(`${cluster.profile.exports.root}/${node.name} `));
      assert.ok(line, `no export for ${node.name}`);
      const clients = line!.split(/\s+/).slice(1);
      assert.equal(clients, [`${node.ip}(rw,no_root_squash,no_subtree_check,sync)`]);
    }
    const ganesha = await read(path.join(b.dir, `exports/${cluster.name}.ganesha.conf`));
    const blocks = ganesha.split(/^EXPORT \{$/m).slice(1);
    assert.is(blocks.length, cluster.nodes.length);
    for (const [i, node] of cluster.nodes.entries()) {
      assert.match(blocks[i]!, new RegExp(`Path = "${cluster.profile.exports.root}/${node.name}";`));
      assert.match(blocks[i]!, new RegExp(`^\\s*Export_Id = ${cluster.profile.exports.firstExportId + i};$`, 'm'), 'Export_Ids count up from exports.firstExportId');
      assert.match(blocks[i]!, /^\s*Access_Type = None;$/m);
      assert.match(blocks[i]!, new RegExp(`Clients = ${node.ip.replace(/\./g, '\\.')};`));
    }
  });

  test(`${profileName}: each node has its own machine-id and SSH host keys, which sshd loads`, async () => {
    const b = get();
    const seen = new Set<string>();
    const { mkdir, mkdtemp, copyFile, chmod, rm } = await import('node:fs/promises');
    await mkdir('/run/sshd', { recursive: true });
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      const machineId = (await read(path.join(root, 'etc/machine-id'))).trim();
      assert.match(machineId, /^[0-9a-f]{32}$/);
      seen.add(machineId);
      const keys = await mkdtemp(path.join(b.tmp, 'keys-'));
      const args = ['-t', '-f', '/dev/null'];
      for (const type of ['ed25519', 'ecdsa']) {
        const key = path.join(keys, type);
        await copyFile(path.join(root, `etc/ssh/ssh_host_${type}_key`), key);
        await chmod(key, 0o600);
        args.push('-h', key);
        const derived = await execa('ssh-keygen', ['-y', '-f', key], { timeout: 10_000 });
        const pub = await read(path.join(root, `etc/ssh/ssh_host_${type}_key.pub`));
        assert.is(pub.split(' ').slice(0, 2).join(' '), derived.stdout.split(' ').slice(0, 2).join(' '), `${node.name} ${type}: .pub matches the private key`);
        seen.add(pub);
      }
      const sshd = await execa('/usr/sbin/sshd', args, { reject: false, timeout: 10_000 });
      assert.is(sshd.exitCode, 0, `${node.name}: sshd -t: ${sshd.stderr}`);
      await rm(keys, { recursive: true });
      const config = await read(path.join(root, 'etc/ssh/sshd_config.d/netroot-host-keys.conf'));
      assert.match(config, /^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m);
      const nodePlan = b.plan.nodes.find((n) => n.node.name === node.name)!;
      assert.ok(nodePlan.removes.includes('etc/ssh/ssh_host_*'), 'the base\'s host keys are removed');
    }
    assert.is(seen.size, b.plan.cluster.nodes.length * 3, 'no two nodes share a machine-id or a host key');
  });

  test(`${profileName}: nothing takes the boot interface down: NetworkManager, networkd and ifupdown leave it alone`, async () => {
    const b = get();
    for (const node of b.plan.cluster.nodes) {
      const root = b.nodeRoot(node.name);
      const nm = await read(path.join(root, 'etc/NetworkManager/conf.d/90-netroot-nfs-root.conf'));
      assert.match(nm, new RegExp(`^unmanaged-devices=interface-name:${node.interface}$`, 'm'));
      const networkd = await read(path.join(root, 'etc/systemd/network/00-netroot-nfs-root.network'));
      assert.match(networkd, new RegExp(`^Name=${node.interface}$`, 'm'));
      assert.match(networkd, /^\[Link\]\nUnmanaged=yes$/m);
      const interfaces = await read(path.join(root, 'etc/network/interfaces'));
      assert.not.match(interfaces, new RegExp(`^\\s*(auto|allow-hotplug|iface)\\s+${node.interface}\\b`, 'm'));
      const fstab = (await read(path.join(root, 'etc/fstab'))).split('\n').filter((l) => l && !l.startsWith('#'));
      assert.equal(fstab.map((l) => l.split(/\s+/).slice(0, 3)), [['/dev/nfs', '/', 'nfs'], ['tmpfs', '/tmp', 'tmpfs']]);
    }
  });

  test(`${profileName}: secret-bearing files are 0600 and manifest.json matches the files on disk`, async () => {
    const b = get();
    const manifest = JSON.parse(await read(path.join(b.dir, 'manifest.json')));
    const { k3sCa, ...values } = b.secrets.secrets;
    const caKeys = k3sCa ? [k3sCa.serviceKey, ...(['client', 'server', 'requestHeader', 'etcdPeer', 'etcdServer'] as const).map((l) => k3sCa[l].key)] : [];
    const secrets = [...Object.values(values), ...caKeys.map((k) => k.trim())];
    for (const { node, files } of b.plan.nodes) {
      const entries = manifest.nodes[node.name].files;
      assert.is(entries.length, files.length);
      for (const entry of entries) {
        const onDisk = path.join(b.nodeRoot(node.name), entry.path);
        if (entry.type !== 'file') continue;
        const content = await readFile(onDisk);
        const { createHash } = await import('node:crypto');
        const { statSync } = await import('node:fs');
        assert.is((statSync(onDisk).mode & 0o777).toString(8), entry.mode.replace(/^0/, ''), entry.path);
        if (secrets.some((s) => content.toString().includes(s))) assert.is(entry.mode, '0600', `${node.name}:${entry.path} holds a secret`);
        // A file only its owner may read is listed without a digest: one could be brute-forced back into the secret.
        if (entry.mode.endsWith('00')) assert.equal([entry.private, entry.sha256], [true, undefined], entry.path);
        else assert.is(createHash('sha256').update(content).digest('hex'), entry.sha256, entry.path);
      }
    }
    assert.not.ok(secrets.some((s) => JSON.stringify(manifest).includes(s)), 'manifest.json holds no secret');
  });
}

