/**
 * k3s's CAs, made by the build: the tokens carry the hash k3s computes for them
 * (checked here with openssl and node:crypto, not with netroot's own code), a
 * rebuild keeps them, the files are private, and the script that places them
 * on local storage copies what is missing and never replaces what k3s has.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { createHash, X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { buildToTemp, type TempBuild } from '../support/build.js';
import { prepare } from '../../src/build.js';
import { generateK3sCa } from '../../src/profile/k3s-ca.js';
import { fingerprint, secretChanges } from '../../src/profile/store.js';
import { hasProgram, systemdVerify } from '../support/peers.js';
import { requires } from '../support/requires.js';

const CA_DIR = 'usr/local/lib/netroot/k3s-ca';
const FILES = [
  'client-ca.crt',
  'client-ca.key',
  'server-ca.crt',
  'server-ca.key',
  'request-header-ca.crt',
  'request-header-ca.key',
  'etcd/peer-ca.crt',
  'etcd/peer-ca.key',
  'etcd/server-ca.crt',
  'etcd/server-ca.key',
  'service.key',
];
let b: TempBuild;
let work: string;

test.before(async () => {
  b = await buildToTemp('opz3');
  await b.secrets.save();
  work = await mkdtemp(path.join(os.tmpdir(), 'netroot-k3s-ca-test-'));
});
test.after(async () => {
  await b?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

const pems = (text: string) => text.match(/-----BEGIN CERTIFICATE-----\n[^-]+-----END CERTIFICATE-----\n/g) ?? [];
const config = async (node: string) => parse(await readFile(path.join(b.nodeRoot(node), 'etc/rancher/k3s/config.yaml'), 'utf8'));

/** What k3s's hashCA does with a bundle of more than one certificate: SHA-256 of the DER of the root the first chains to. */
async function hashOfBundle(bundle: string): Promise<string> {
  const certs = pems(bundle);
  assert.is(certs.length, 3, 'leaf CA, intermediate, root');
  const [leaf, intermediate, root] = certs.map((c, i) => path.join(work, `cert-${i}.pem`));
  for (const [i, c] of certs.entries()) await writeFile(path.join(work, `cert-${i}.pem`), c);
  // The chain verifies (k3s falls back to hashing the whole file when it does not).
  const verify = await execa('openssl', ['verify', '-CAfile', root!, '-untrusted', intermediate!, leaf!], {
    reject: false,
    timeout: 10_000,
  });
  assert.is(verify.exitCode, 0, verify.stderr || verify.stdout);
  // k3s takes a certificate without an authority key id, or with one equal to its own, for a root: only the last may be one.
  for (const [i, file] of [leaf!, intermediate!, root!].entries()) {
    const ext = await execa('openssl', ['x509', '-in', file, '-noout', '-ext', 'subjectKeyIdentifier,authorityKeyIdentifier'], {
      timeout: 10_000,
    });
    const ids = [...ext.stdout.matchAll(/^\s+(?:keyid:)?([0-9A-F:]{20,})$/gm)].map((m) => m[1]);
    if (i < 2) {
      assert.is(ids.length, 2, `${file}: ${ext.stdout}`);
      assert.is.not(ids[0], ids[1], `certificate ${i} names its issuer's key`);
    } else assert.ok(ids.length === 1 || ids[0] === ids[1], `the root names no other issuer: ${ext.stdout}`);
  }
  const der = await execa('openssl', ['x509', '-in', root!, '-outform', 'DER'], { encoding: 'buffer', timeout: 10_000 });
  return createHash('sha256').update(der.stdout).digest('hex');
}

test('servers and agents carry secure tokens whose hash is that of the root of the CA bundle k3s serves', async () => {
  const server = b.plan.cluster.servers[0]!;
  const bundle = await readFile(path.join(b.nodeRoot(server.name), CA_DIR, 'server-ca.crt'), 'utf8');
  const hash = await hashOfBundle(bundle);
  assert.is(
    hash,
    createHash('sha256')
      .update(new X509Certificate(pems(bundle)[2]!).raw)
      .digest('hex'),
  );
  const { k3sToken, k3sAgentToken } = b.secrets.secrets;
  for (const s of b.plan.cluster.servers) {
    const c = await config(s.name);
    assert.is(c.token, `K10${hash}::server:${k3sToken}`, s.name);
    assert.is(c['agent-token'], `K10${hash}::node:${k3sAgentToken}`, s.name);
    assert.is(await readFile(path.join(b.nodeRoot(s.name), CA_DIR, 'server-ca.crt'), 'utf8'), bundle, 'every server has the same CAs');
  }
  assert.ok(b.plan.cluster.agents.length > 0);
  for (const a of b.plan.cluster.agents) {
    assert.is((await config(a.name)).token, `K10${hash}::node:${k3sAgentToken}`, a.name);
    assert.not.ok(await stat(path.join(b.nodeRoot(a.name), CA_DIR)).catch(() => undefined), 'agents hold no CA key');
  }
  // Every leaf CA chains to the same root.
  for (const name of ['client-ca.crt', 'request-header-ca.crt', 'etcd/peer-ca.crt', 'etcd/server-ca.crt']) {
    assert.is(await hashOfBundle(await readFile(path.join(b.nodeRoot(server.name), CA_DIR, name), 'utf8')), hash, name);
  }
});

test('the CA keys are 0600 (certificates 0644), each key fits its certificate, and the root and intermediate keys stay in the secrets file', async () => {
  const dir = path.join(b.nodeRoot(b.plan.cluster.servers[0]!.name), CA_DIR);
  const found = [...(await readdir(dir)), ...(await readdir(path.join(dir, 'etcd'))).map((f) => `etcd/${f}`)].filter((f) => f !== 'etcd');
  assert.equal(found.sort(), [...FILES].sort());
  // Keys are private; the certificates are public (k3s serves the bundle to anyone at /cacerts).
  for (const f of FILES) assert.is((await stat(path.join(dir, f))).mode & 0o777, f.endsWith('.key') ? 0o600 : 0o644, f);
  assert.is((await stat(path.join(b.tmp, 'secrets.yaml'))).mode & 0o777, 0o600);
  const ca = b.secrets.secrets.k3sCa!;
  for (const f of FILES) {
    const text = await readFile(path.join(dir, f), 'utf8');
    assert.not.ok(
      text.includes(ca.root.key.trim()) || text.includes(ca.intermediate.key.trim()),
      `${f} holds the root or intermediate key`,
    );
  }
  for (const name of ['client-ca', 'server-ca', 'request-header-ca', 'etcd/peer-ca', 'etcd/server-ca']) {
    const pub = async (args: string[]) => (await execa('openssl', args, { timeout: 10_000 })).stdout;
    const fromKey = await pub(['pkey', '-in', path.join(dir, `${name}.key`), '-pubout']);
    const fromCert = await pub(['x509', '-in', path.join(dir, `${name}.crt`), '-noout', '-pubkey']);
    assert.is(fromKey.trim(), fromCert.trim(), name);
  }
  const rsa = await execa('openssl', ['rsa', '-in', path.join(dir, 'service.key'), '-check', '-noout'], { reject: false, timeout: 10_000 });
  assert.is(rsa.exitCode, 0, rsa.stderr);
});

test('a rebuild with the same secrets file keeps the CAs and the tokens, byte for byte', async () => {
  const again = await prepare({
    profile: 'opz3',
    cwd: b.tmp,
    searchDirs: [path.resolve('profiles')],
    secrets: path.join(b.tmp, 'secrets.yaml'),
    env: {},
  });
  assert.not.ok(again.secrets.generated.includes('k3s CAs'));
  assert.equal(again.secrets.secrets.k3sCa, b.secrets.secrets.k3sCa);
  const files = (p: typeof again.plan, node: string) =>
    p.nodes.find((n) => n.node.name === node)!.files.filter((f) => f.path.startsWith(CA_DIR) || f.path === 'etc/rancher/k3s/config.yaml');
  for (const node of b.plan.cluster.nodes) {
    const before = files(b.plan, node.name);
    const after = files(again.plan, node.name);
    assert.ok(before.length > 0);
    assert.equal(
      after.map((f) => [f.path, f.content?.toString()]),
      before.map((f) => [f.path, f.content?.toString()]),
      node.name,
    );
  }
});

test('k3s.service runs the placing script first, and systemd-analyze verify accepts it', async () => {
  const root = b.nodeRoot(b.plan.cluster.servers[0]!.name);
  const unit = await readFile(path.join(root, 'etc/systemd/system/k3s.service'), 'utf8');
  const pre = [...unit.matchAll(/^ExecStartPre=(.*)$/gm)].map((m) => m[1]);
  assert.ok(pre.indexOf('/usr/local/lib/netroot/install-k3s-ca') >= 0, unit);
  assert.ok(pre.indexOf('/usr/local/lib/netroot/install-k3s-ca') < pre.indexOf('/usr/local/lib/netroot/wait-for-datastore'));
  const result = await systemdVerify(root, ['k3s.service']);
  assert.ok(result.ok, result.output);
});

requires(hasProgram('shellcheck'), 'shellcheck is not installed (apt-get install shellcheck)')(
  'shellcheck accepts the placing script',
  async () => {
    const script = path.join(b.nodeRoot(b.plan.cluster.servers[0]!.name), 'usr/local/lib/netroot/install-k3s-ca');
    const r = await execa('shellcheck', ['--severity=style', script], { reject: false, timeout: 30_000 });
    assert.is(r.exitCode, 0, r.stdout);
  },
);

/** The node's script, pointed at temporary directories instead of the image's and local storage's. */
async function runPlacing(src: string, dst: string) {
  const text = await readFile(path.join(b.nodeRoot(b.plan.cluster.servers[0]!.name), 'usr/local/lib/netroot/install-k3s-ca'), 'utf8');
  const moved = text.replace(/^src=.*$/m, `src=${src}`).replace(/^dst=.*$/m, `dst=${dst}`);
  assert.is.not(moved, text);
  const file = path.join(work, 'install-k3s-ca');
  await writeFile(file, moved);
  await chmod(file, 0o755);
  return execa(file, [], { reject: false, timeout: 10_000 });
}

test('the placing script copies every file as 0600 on a first start, and never replaces a file k3s already has', async () => {
  const src = path.join(b.nodeRoot(b.plan.cluster.servers[0]!.name), CA_DIR);
  const dst = path.join(work, 'tls');
  const first = await runPlacing(src, dst);
  assert.is(first.exitCode, 0, first.stderr);
  for (const f of FILES) {
    assert.is(await readFile(path.join(dst, f), 'utf8'), await readFile(path.join(src, f), 'utf8'), f);
    assert.is((await stat(path.join(dst, f))).mode & 0o777, 0o600, f);
  }
  assert.equal(
    (await readdir(dst)).filter((f) => f.includes('netroot-new')),
    [],
  );
  // k3s made CAs of its own earlier: they stay, the script says so, and a lost file is put back.
  const other = path.join(work, 'tls-k3s');
  await mkdir(path.join(other, 'etcd'), { recursive: true });
  await writeFile(path.join(other, 'server-ca.crt'), 'k3s own CA\n');
  const second = await runPlacing(src, other);
  assert.is(second.exitCode, 0, second.stderr);
  assert.is(await readFile(path.join(other, 'server-ca.crt'), 'utf8'), 'k3s own CA\n');
  assert.match(second.stderr, `${other}/server-ca.crt is not the cluster's`);
  assert.is(await readFile(path.join(other, 'client-ca.key'), 'utf8'), await readFile(path.join(src, 'client-ca.key'), 'utf8'));
});

test('a build with other k3s CAs than the previous one is refused, saying what breaks', async () => {
  const recorded = fingerprint(b.secrets.secrets, b.secrets.identities, []);
  assert.equal(secretChanges(recorded, b.secrets.secrets, b.secrets.identities), []);
  const other = { ...b.secrets.secrets, k3sCa: await generateK3sCa('opz3') };
  const changes = secretChanges(recorded, other, b.secrets.identities);
  assert.is(changes.length, 1);
  assert.match(changes[0]!, "k3s's CAs");
  // A cluster recorded before netroot made k3s's CAs: its k3s made its own, and the new tokens would not name it.
  const { k3sCa: _none, ...older } = recorded;
  const upgrade = secretChanges(older, b.secrets.secrets, b.secrets.identities);
  assert.equal(upgrade.length, 1);
  assert.match(upgrade[0]!, "k3s's CAs, new to this cluster");
});
