/**
 * The plan: strict templates (a missing variable is an error naming template
 * and variable, never an empty string), declared modes, role-specific files.
 */
import { htpasswdEntry, LONGHORN_UI_USER } from '../../src/plan/longhorn-ui.js';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { cp, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build, prepare } from '../../src/build.js';
import { hasSnapshotIsolation, snapshotIsolationOption } from '../../src/plan/context.js';
import { manifest, planCluster } from '../../src/plan/plan.js';
import { NetrootError, TemplateError } from '../../src/errors.js';

let tmp: string;
let overlays: string;

test.before.each(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-plan-'));
  overlays = path.join(tmp, 'overlays');
  await cp(path.resolve('overlays'), overlays, { recursive: true });
});
test.after.each(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const options = () => ({
  profile: path.resolve('profiles/opz3.yaml'),
  cwd: tmp,
  overlays,
  secrets: path.join(tmp, 'secrets.yaml'),
  env: {},
});

async function expectError(promise: Promise<unknown>): Promise<NetrootError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, NetrootError);
    return error as NetrootError;
  }
  throw new assert.Assertion({ message: 'expected an error', generated: true, operator: 'throws', expects: 'error', actual: 'none' });
}

test('a template that uses a value an agent does not have fails, naming template, line and variable', async () => {
  const template = path.join(overlays, 'k3s-agent/etc/rancher/k3s/config.yaml.hbs');
  const text = await readFile(template, 'utf8');
  await writeFile(template, `${text}galera-cluster: {{json galera.clusterName}}\n`);
  const lines = text.split('\n').length;
  const error = await expectError(prepare(options()));
  assert.instance(error, TemplateError);
  assert.is(error.exitCode, 2);
  assert.match(error.message, `overlays/k3s-agent/etc/rancher/k3s/config.yaml.hbs:${lines}:`);
  assert.match(error.message, 'uses "galera.clusterName"');
  assert.match(error.message, 'node opz3-4-top (agent) does not have');
  assert.match(error.message, 'variable "galera" is not defined');
});

test('a typo in a template variable is an error, not an empty value', async () => {
  const template = path.join(overlays, 'keepalived/etc/keepalived/keepalived.conf.hbs');
  await writeFile(template, (await readFile(template, 'utf8')).replace('{{keepalived.priority}}', '{{keepalived.priorty}}'));
  const error = await expectError(prepare(options()));
  assert.match(error.message, 'uses "keepalived.priorty"');
  assert.match(error.message, 'node opz3-1-onder (server)');
});

test('a failed build writes nothing: no output directory and no secrets file', async () => {
  const template = path.join(overlays, 'base/etc/hosts.hbs');
  await writeFile(template, '{{no.such.value}}\n');
  await expectError(build({ ...options(), out: path.join(tmp, 'out') }));
  assert.not.ok(existsSync(path.join(tmp, 'out')), 'out/ was created');
  assert.not.ok(existsSync(path.join(tmp, 'secrets.yaml')), 'secrets were saved');
});

test('a template file that overlay.yaml does not declare is refused, so no file ships with an unchosen mode', async () => {
  await writeFile(path.join(overlays, 'keepalived/etc/keepalived/extra.conf.hbs'), 'x\n');
  const error = await expectError(prepare(options()));
  assert.match(error.message, 'extra.conf.hbs is not declared in');
  assert.match(error.message, 'keepalived/overlay.yaml');
});

test('a template that renders INI MariaDB would not read fails, naming the template, the node and the line; nothing is written', async () => {
  const template = path.join(overlays, 'galera/etc/mysql/mariadb.conf.d/71-netroot-bind-address.cnf.hbs');
  // An option that the node's name turns into two words: no option name MariaDB knows.
  await writeFile(template, '[mysqld]\nbind-address=0.0.0.0\n{{node.name}} extra=1\n');
  const error = await expectError(build({ ...options(), out: path.join(tmp, 'out') }));
  assert.instance(error, TemplateError);
  assert.is(error.exitCode, 2);
  // Line 4 of the file on the node: the generated-by line comes first.
  assert.match(
    error.message,
    /\/overlays\/galera\/etc\/mysql\/mariadb\.conf\.d\/71-netroot-bind-address\.cnf\.hbs: rendered INI that does not parse, for node opz3-1-onder \(server\): line 4 of the file: "opz3-1-onder extra" is not an option name/,
  );
  assert.not.ok(existsSync(path.join(tmp, 'out')), 'out/ was created');
  await writeFile(template, 'bind-address=0.0.0.0\n');
  assert.match(
    (await expectError(prepare(options()))).message,
    /71-netroot-bind-address\.cnf\.hbs: .*line 2 of the file: option bind-address comes before any \[group\]/,
  );
});

test('rendered INI keeps what a decode and re-encode would lose: comments, repeated keys, bare flags, includes', async () => {
  const template = path.join(overlays, 'galera/etc/mysql/mariadb.conf.d/71-netroot-bind-address.cnf.hbs');
  const text =
    '[mysqld]\n# why: a comment\nbind-address=0.0.0.0\nplugin-load-add=a.so\nplugin-load-add=b.so\nskip-name-resolve\n; another comment\n!includedir /etc/mysql/extra.d\n';
  await writeFile(template, text);
  const written = (await prepare(options())).plan.nodes[0]!.files.find(
    (f) => f.path === 'etc/mysql/mariadb.conf.d/71-netroot-bind-address.cnf',
  )!.content!.toString();
  assert.is(
    written,
    `# Generated by netroot from overlays/galera/etc/mysql/mariadb.conf.d/71-netroot-bind-address.cnf.hbs; do not edit on the node.\n${text}`,
  );
});

test('an overlay file that declares a broken Handlebars template is refused at load', async () => {
  const template = path.join(overlays, 'base/etc/hostname.hbs');
  await writeFile(template, '{{#if node.name}}unclosed\n');
  const error = await expectError(prepare(options()));
  assert.match(error.message, /base\/etc\/hostname\.hbs:2:1: is not a valid Handlebars template: expecting .*got 'EOF'$/);
});

test('roles decide the files: servers get keepalived, Galera, the bootstrap decision and the datastore; agents none of it', async () => {
  const { plan } = await prepare(options());
  const paths = (name: string) => plan.nodes.find((n) => n.node.name === name)!.files.map((f) => f.path);
  for (const server of ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven']) {
    assert.ok(paths(server).includes('etc/keepalived/keepalived.conf'));
    assert.ok(paths(server).includes('etc/systemd/system/k3s.service'));
    assert.not.ok(paths(server).includes('etc/systemd/system/k3s-agent.service'));
  }
  for (const server of ['opz3-1-onder', 'opz3-2-midden']) {
    assert.ok(paths(server).includes('etc/systemd/system/netroot-galera-exchange.service'));
    assert.ok(paths(server).includes('usr/local/lib/netroot/galera-recovery'));
  }
  // The decision itself is run against fabricated peers in test/overlays/galera-recovery.test.ts; here, what it is told.
  const config = (name: string) =>
    JSON.parse(
      plan.nodes
        .find((n) => n.node.name === name)!
        .files.find((f) => f.path === 'etc/netroot/galera-recovery.json')!
        .content!.toString(),
    );
  const midden = config('opz3-2-midden');
  assert.is(midden.node, 'opz3-2-midden');
  assert.is(midden.bootstrapNode, 'opz3-1-onder');
  assert.equal(
    midden.servers.map((s: { name: string }) => s.name),
    ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven'],
  );
  assert.is(midden.policy, 'majority');
  assert.is(
    plan.nodes.find((n) => n.node.name === 'opz3-2-midden')!.files.find((f) => f.path === 'etc/netroot/galera-recovery.json')!.mode,
    0o600,
  );
  assert.ok(paths('opz3-4-top').includes('etc/systemd/system/k3s-agent.service'));
  // An agent holds no keepalived or MariaDB file; the shared base's units for them are masked (links to /dev/null).
  const agent = plan.nodes.find((n) => n.node.name === 'opz3-4-top')!;
  const masked = (p: string) => agent.files.find((f) => f.path === p)?.target === '/dev/null';
  assert.not.ok(paths('opz3-4-top').some((p) => (p.includes('keepalived') || p.includes('mysql') || p.includes('mariadb')) && !masked(p)));
  assert.ok(
    masked('etc/systemd/system/mariadb.service') && masked('etc/systemd/system/keepalived.service'),
    "the base's MariaDB and keepalived never start on an agent",
  );
  for (const name of ['opz3-1-onder', 'opz3-4-top']) {
    assert.ok(paths(name).includes('etc/systemd/system/var-lib-rancher.mount'), 'containerd state off NFS');
    assert.ok(paths(name).includes('etc/systemd/system/var-lib-longhorn.mount'), 'Longhorn data off NFS');
    assert.ok(paths(name).includes('etc/systemd/system/multi-user.target.wants/iscsid.service'), 'iscsid enabled');
  }
});

test('declared modes: secret-bearing files are 0600, scripts 0755, machine-id 0444 as systemd makes it, the rest 0644, all owned by 0:0', async () => {
  const { plan, secrets } = await prepare(options());
  const hostKeys = Object.values(secrets.identities).flatMap((i) =>
    [...Object.values(i.sshHostKeys), ...(i.tls ? [i.tls.key] : [])].map((k) => k.trim()),
  );
  const k3sCa = secrets.secrets.k3sCa!;
  const k3sKeys = [
    k3sCa.root.key,
    k3sCa.intermediate.key,
    k3sCa.serviceKey,
    ...(['client', 'server', 'requestHeader', 'etcdPeer', 'etcdServer'] as const).map((l) => k3sCa[l].key),
  ].map((k) => k.trim());
  // The Longhorn UI's htpasswd entry stands for its password.
  const uiEntry = htpasswdEntry(LONGHORN_UI_USER, secrets.secrets.longhornUiPassword);
  const values = [...Object.values(secrets.secrets).filter((v) => typeof v === 'string'), ...hostKeys, ...k3sKeys, uiEntry];
  for (const { files } of plan.nodes) {
    for (const f of files.filter((x) => x.type === 'file')) {
      const text = f.content!.toString();
      assert.is(`${f.uid}:${f.gid}`, '0:0', f.path);
      if (values.some((v) => text.includes(v))) assert.is(f.mode, 0o600, `${f.path} holds a secret`);
      else if (text.startsWith('#!')) assert.is(f.mode, 0o755, f.path);
      else if (f.path === 'etc/machine-id') assert.is(f.mode, 0o444, f.path);
      else assert.is(f.mode, 0o644, f.path);
    }
  }
});

test('manifest.json: a digest for every file others may read; none for a file only its owner reads, even with a weak given password', async () => {
  const weak = 'password1234';
  const { plan } = await prepare({ ...options(), env: { NETROOT_MARIADB_ROOT_PASSWORD: weak } });
  const listed = manifest(plan, 'test') as {
    nodes: Record<string, { files: { path: string; sha256?: string; size?: number; private?: true }[] }>;
  };
  const { createHash } = await import('node:crypto');
  let privateFiles = 0;
  for (const { node, files } of plan.nodes) {
    const entries = new Map(listed.nodes[node.name]!.files.map((e) => [e.path, e]));
    for (const f of files.filter((x) => x.type === 'file')) {
      const entry = entries.get(f.path)!;
      const digest = createHash('sha256').update(f.content!).digest('hex');
      if (f.mode & 0o077) assert.equal([entry.sha256, entry.size], [digest, f.content!.length], f.path);
      else {
        privateFiles++;
        assert.equal([entry.private, entry.sha256, entry.size], [true, undefined, undefined], f.path);
        assert.not.ok(JSON.stringify(listed).includes(digest), `${f.path}: its digest is nowhere in the manifest`);
      }
    }
  }
  assert.ok(
    plan.nodes.some(({ files }) => files.some((f) => f.mode === 0o600 && f.content?.includes(weak))),
    'the weak password is in a private file',
  );
  assert.ok(privateFiles > 0);
});

test('the plan is deterministic: the same inputs and saved secrets give the same files, wherever the overlays sit', async () => {
  const a = await prepare(options());
  await a.secrets.save();
  const elsewhere = path.join(tmp, 'elsewhere', 'overlays');
  await cp(overlays, elsewhere, { recursive: true });
  const b = await prepare({ ...options(), overlays: elsewhere });
  assert.is(b.secrets.generated.length, 0, 'the second run generated nothing');
  const flat = (p: typeof a.plan) =>
    JSON.stringify(p.nodes.map((n) => n.files.map((f) => [f.path, f.mode, f.target, f.content?.toString('base64')])));
  assert.is(flat(a.plan), flat(b.plan));
});

test('Longhorn off: no Longhorn mount, manifest or iscsid, and local-path is not disabled', async () => {
  const profile = path.join(tmp, 'nolonghorn.yaml');
  await writeFile(profile, `extends: ${path.resolve('profiles/opz3.yaml')}\nlonghorn: { enabled: false }\n`);
  const { plan } = await prepare({ ...options(), profile });
  const server = plan.nodes.find((n) => n.node.name === 'opz3-1-onder')!;
  assert.not.ok(server.files.some((f) => f.path.includes('longhorn') || f.path.includes('iscsid')));
  const config = server.files.find((f) => f.path === 'etc/rancher/k3s/config.yaml')!.content!.toString();
  assert.not.match(config, 'local-storage');
});

test('a board without a device tree (U-Boot passes its own, as on QEMU virt): no fdt line; `fdt: null` removes an inherited one', async () => {
  const profile = path.join(tmp, 'nofdt.yaml');
  await writeFile(
    profile,
    `extends: ${path.resolve('profiles/opz3.yaml')}\nboard: { name: qemu-virt, kernel: /vmlinuz, initrd: /initrd.img, fdt: null }\n`,
  );
  const { plan } = await prepare({ ...options(), profile });
  const pxe = plan.bootServer.find((f) => f.path === 'tftp/pxelinux.cfg/01-02-00-c0-00-02-3c')!.content!.toString();
  assert.not.match(pxe, /^\s*fdt /m);
  assert.match(pxe, /^\s*kernel boot\/qemu-virt\/vmlinuz$/m);
  assert.match(pxe, /^\s*initrd boot\/qemu-virt\/initrd\.img$/m);
});

test("innodb_snapshot_isolation is turned off as the base's MariaDB spells it, decided from its package version", async () => {
  // Added in 10.6.18, 10.11.8, 11.0.6, 11.1.5, 11.2.4 and 11.4.2 (MariaDB's "System Variables Added" pages).
  for (const [version, has] of [
    ['1:10.11.19-0+deb12u1', true],
    ['1:10.11.6-0+deb12u1', false],
    ['1:10.11.8-0+deb12u1', true],
    ['1:10.6.17-0+deb11u1', false],
    ['1:10.6.18-0+deb11u1', true],
    ['1:10.5.23-0+deb11u1', false],
    ['1:11.4.2-1', true],
    ['1:11.8.3-1', true],
    ['1:10.9.8-1', false],
  ] as const) {
    assert.is(hasSnapshotIsolation(version), has, version);
  }
  assert.is(snapshotIsolationOption(undefined), 'loose-innodb_snapshot_isolation');
  assert.is(snapshotIsolationOption({ mariadbVersion: null, systemdResolved: false, chrony: false, timesyncd: true }), null);
  const { plan: overlayOnly, secrets, overlays: set } = await prepare(options());
  const cnf = (p: typeof overlayOnly) =>
    p.nodes[0]!.files.find((f) => f.path === 'etc/mysql/mariadb.conf.d/70-netroot-galera.cnf')!.content!.toString();
  assert.match(cnf(overlayOnly), /^loose-innodb_snapshot_isolation=OFF$/m);
  const bookworm = planCluster(overlayOnly.cluster, secrets.secrets, set, secrets.identities, {
    mariadbVersion: '1:10.11.19-0+deb12u1',
    systemdResolved: false,
    chrony: false,
    timesyncd: true,
  });
  assert.match(cnf(bookworm), /^innodb_snapshot_isolation=OFF$/m);
  const old = planCluster(overlayOnly.cluster, secrets.secrets, set, secrets.identities, {
    mariadbVersion: '1:10.11.6-0+deb12u1',
    systemdResolved: false,
    chrony: false,
    timesyncd: true,
  });
  assert.not.match(cnf(old), /snapshot_isolation/);
  // Written as rendered: the comments that say why reach the node.
  assert.match(cnf(bookworm), /^# Every write reaches one server, the VIP's holder/m);
});
