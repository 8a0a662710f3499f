/**
 * The Longhorn UI: off by default; when a profile turns it on, only Traefik's
 * basic-auth route reaches it, with credentials from the secrets file. The
 * htpasswd entry is checked with openssl, which makes the same $apr1$ form.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { readFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { buildToTemp, type TempBuild } from '../support/build.js';
import { apr1, htpasswdEntry } from '../../src/plan/longhorn-ui.js';

const MANIFESTS = 'usr/local/lib/netroot/manifests';
let on: TempBuild;
let off: TempBuild;

test.before(async () => {
  on = await buildToTemp('opz3');
  off = await buildToTemp('rock64');
});
test.after(async () => {
  await on?.cleanup();
  await off?.cleanup();
});

const docs = async (b: TempBuild, node: string, file: string) =>
  parseAllDocuments(await readFile(path.join(b.nodeRoot(node), MANIFESTS, file), 'utf8')).map((d) => d.toJS());

/** openssl's answer for the password and the entry's own salt. */
async function opensslApr1(password: string, salt: string): Promise<string> {
  const r = await execa('openssl', ['passwd', '-apr1', '-salt', salt, '-stdin'], { input: password, timeout: 10_000 });
  return r.stdout.trim();
}

test('apr1 agrees with openssl passwd -apr1, and the entry is the same for the same password', async () => {
  for (const [password, salt] of [
    ['a', 'x'],
    ['Longhorn0123456789abcdefghijklmn', 'abcdefgh'],
    ['sixteen-chars!!!seventeen', './09AZaz'],
  ] as const) {
    assert.is(apr1(password, salt), await opensslApr1(password, salt));
  }
  assert.is(htpasswdEntry('longhorn', 'secretsecretsecret'), htpasswdEntry('longhorn', 'secretsecretsecret'));
  assert.is.not(htpasswdEntry('longhorn', 'secretsecretsecret'), htpasswdEntry('longhorn', 'secretsecretsecreT'));
});

test('off by default: no UI manifest, and the chart keeps the UI service a ClusterIP', async () => {
  assert.is(off.plan.cluster.profile.longhorn.ui.enabled, false);
  for (const server of off.plan.cluster.servers) {
    assert.not.ok(existsSync(path.join(off.nodeRoot(server.name), MANIFESTS, 'longhorn-ui.yaml')));
    const manifests = await docs(off, server.name, 'longhorn.yaml');
    assert.equal(
      manifests.map((d) => d.kind),
      ['HelmChart'],
    );
    assert.is(parse(manifests[0].spec.valuesContent).service.ui.type, 'ClusterIP');
  }
});

test('on: a basic-auth Middleware with the generated credentials guards an HTTPS-only Ingress, and nothing else exposes the UI', async () => {
  const password = on.secrets.secrets.longhornUiPassword;
  const vip = on.plan.cluster.profile.network.vip;
  for (const server of on.plan.cluster.servers) {
    const file = path.join(on.nodeRoot(server.name), MANIFESTS, 'longhorn-ui.yaml');
    assert.is((await stat(file)).mode & 0o777, 0o600, "the password hash is root's alone");
    const text = await readFile(file, 'utf8');
    assert.ok(text.includes(`https://${vip}/`), 'the address docs/trust.md names');
    const manifests = [...(await docs(on, server.name, 'longhorn.yaml')), ...(await docs(on, server.name, 'longhorn-ui.yaml'))];
    // No Service at all in netroot's manifests (the chart's UI service is a ClusterIP); above all no LoadBalancer.
    assert.equal(
      manifests.filter((d) => d.kind === 'Service'),
      [],
    );
    assert.is(parse(manifests[0].spec.valuesContent).service.ui.type, 'ClusterIP');

    const secret = manifests.find((d) => d.kind === 'Secret');
    const middleware = manifests.find((d) => d.kind === 'Middleware');
    const ingress = manifests.find((d) => d.kind === 'Ingress');
    const lines = String(secret.stringData.users).trim().split('\n');
    assert.is(lines.length, 1);
    const m = /^longhorn:(\$apr1\$([./0-9A-Za-z]{1,8})\$[./0-9A-Za-z]{22})$/.exec(lines[0]!);
    assert.ok(m, `an htpasswd line: ${lines[0]}`);
    assert.is(await opensslApr1(password, m![2]!), m![1], "the entry is the secrets file's password");
    assert.not.ok(text.includes(password), 'the password itself is not in the manifest');

    assert.is(middleware.apiVersion, 'traefik.io/v1alpha1');
    assert.is(middleware.metadata.namespace, secret.metadata.namespace);
    assert.is(middleware.spec.basicAuth.secret, secret.metadata.name);
    const annotations = ingress.metadata.annotations;
    assert.is(
      annotations['traefik.ingress.kubernetes.io/router.middlewares'],
      `${middleware.metadata.namespace}-${middleware.metadata.name}@kubernetescrd`,
    );
    assert.is(
      annotations['traefik.ingress.kubernetes.io/router.entrypoints'],
      'websecure',
      'never plain HTTP: basic auth would send the password in the clear',
    );
    assert.is(annotations['traefik.ingress.kubernetes.io/router.tls'], 'true');
    assert.is(ingress.metadata.namespace, 'longhorn-system');
    assert.equal(ingress.spec.rules, [
      { http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'longhorn-frontend', port: { number: 80 } } } }] } },
    ]);
  }
  for (const agent of on.plan.cluster.agents) assert.not.ok(existsSync(path.join(on.nodeRoot(agent.name), MANIFESTS)));
  // The credentials are in the secrets file, never in the profile.
  const profile = await readFile(path.resolve('profiles/opz3.yaml'), 'utf8');
  assert.not.ok(profile.includes(password));
  const { stdout } = await execa('grep', ['-rlF', '--', password, on.dir], { reject: false, timeout: 10_000 });
  assert.is(stdout, '', 'no built file holds the password');
});
