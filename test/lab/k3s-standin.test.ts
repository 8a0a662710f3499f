/**
 * The lab's k3s stand-in (scripts/lab/k3s-standin) against a real MariaDB on
 * loopback: it reads the configuration the build renders, refuses keys k3s
 * does not know, stores the token's digest in the datastore and refuses a
 * server or agent with another token, and joins agents to a server; with the
 * secure token, an agent checks the server's CA bundle first, as k3s does, and
 * sends nothing to a server whose CA is not the cluster's.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { K3S_STANDIN } from '../../src/lab/lab.js';
import { KINE_INDEXES } from '../../src/lab/scenarios/kine-sequence.js';
import { buildToTemp, type TempBuild } from '../support/build.js';
import { startMariadb, type TestMariadb } from '../support/mariadb.js';

const PASSWORD = 'lab-test-password';
let db: TestMariadb;
let opz3: TempBuild;
let tmp: string;
const running: ResultPromise[] = [];

test.before(async () => {
  [db, opz3, tmp] = await Promise.all([startMariadb(), buildToTemp('opz3'), mkdtemp(path.join(os.tmpdir(), 'netroot-standin-'))]);
  await db.sql(`CREATE DATABASE k3s; CREATE USER 'k3s'@'%' IDENTIFIED BY '${PASSWORD}'; GRANT ALL ON k3s.* TO 'k3s'@'%';`);
  // Where install-k3s-ca puts the cluster's CA bundle on a server before k3s starts.
  await mkdir(path.join(tmp, 'k3s/server/tls'), { recursive: true });
  await copyFile(
    path.join(opz3.nodeRoot('opz3-1-onder'), 'usr/local/lib/netroot/k3s-ca/server-ca.crt'),
    path.join(tmp, 'k3s/server/tls/server-ca.crt'),
  );
});
test.after(async () => {
  for (const child of running) child.kill('SIGKILL');
  await Promise.allSettled(running);
  await Promise.all([db.stop(), opz3.cleanup(), rm(tmp, { recursive: true, force: true })]);
});

/** The rendered config of a node, pointed at the test's own datastore and loopback instead of the cluster's VIP. */
async function renderedConfig(node: string, changes: Record<string, string> = {}): Promise<string> {
  let text = await readFile(path.join(opz3.nodeRoot(node), 'etc/rancher/k3s/config.yaml'), 'utf8');
  text = text.replace(/^datastore-endpoint: .*$/m, `datastore-endpoint: "mysql://k3s:${PASSWORD}@tcp(127.0.0.1:${db.port})/k3s"`);
  text = text.replace(/^server: .*$/m, 'server: "https://127.0.0.1:6443"');
  // The test's MariaDB has no TLS; the lab checks datastore-cafile against the cluster's.
  text = text.replace(/^datastore-cafile: .*\n/m, '');
  for (const [key, value] of Object.entries(changes)) text = text.replace(new RegExp(`^${key}: .*$`, 'm'), `${key}: ${value}`);
  return `${text}bind-address: "127.0.0.1"\ndata-dir: "${path.join(tmp, 'k3s')}"\n`;
}

async function configFile(name: string, text: string): Promise<string> {
  const file = path.join(tmp, `${name}.yaml`);
  await writeFile(file, text, { mode: 0o600 });
  return file;
}

const env = (config: string) => ({ K3S_CONFIG_FILE: config, PATH: process.env.PATH ?? '/usr/bin:/bin' });

/** Runs the stand-in until it exits or its port answers. */
async function start(mode: 'server' | 'agent', config: string): Promise<{ ready: boolean; exitCode?: number; output: string }> {
  const child = execa(K3S_STANDIN, [mode], { env: env(config), extendEnv: false, reject: false, all: true, stdin: 'ignore' });
  running.push(child);
  let output = '';
  child.all?.on('data', (chunk: Buffer) => (output += String(chunk)));
  const url = mode === 'server' ? 'http://127.0.0.1:6443/readyz' : 'http://127.0.0.1:10250/healthz';
  const exited = child.then((r) => r.exitCode);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const done = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
    if (done !== undefined) return { ready: false, exitCode: done, output };
    // Only this process's answer counts: an earlier server may still hold the port.
    const body = await fetch(url).then(
      (r) => (r.ok ? r.text() : ''),
      () => '',
    );
    if (body.trim() === `ok ${child.pid}`) return { ready: true, output };
  }
  return { ready: false, output: `${output}\n(not ready within 30 s)` };
}

test('it says what it is', async () => {
  const version = await execa(K3S_STANDIN, ['--version']);
  assert.match(String(version.stdout), 'stand-in (netroot lab); not k3s');
});

test('a key k3s does not know fails before anything else, naming the key', async () => {
  const config = await configFile('typo', `${await renderedConfig('opz3-1-onder')}tls-sann: ["x"]\n`);
  const result = await start('server', config);
  assert.is(result.exitCode, 1, result.output);
  assert.match(result.output, `${config}: unknown key 'tls-sann': \`k3s server\` has no flag --tls-sann`);
});

test('server-only keys are refused in an agent', async () => {
  const config = await configFile(
    'agent-with-datastore',
    `${await renderedConfig('opz3-4-top')}datastore-endpoint: "mysql://k3s:x@tcp(127.0.0.1:1)/k3s"\n`,
  );
  const result = await start('agent', config);
  assert.is(result.exitCode, 1, result.output);
  assert.match(result.output, "unknown key 'datastore-endpoint': `k3s agent` has no flag --datastore-endpoint");
});

test('the first server stores its token; a server with another token is refused as k3s refuses it', async () => {
  const first = await start('server', await configFile('server-1', await renderedConfig('opz3-1-onder')));
  assert.ok(first.ready, `the rendered server config starts a server: ${first.output}`);
  assert.match(first.output, 'token matches the cluster');
  const stored = await db.sql('SELECT COUNT(*) FROM k3s.netroot_standin_bootstrap');
  assert.is(stored.trim(), '1');
  // kine's table, as kine's MySQL driver creates it.
  const indexes = await db.sql(
    "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = 'k3s' AND table_name = 'kine' ORDER BY index_name",
  );
  assert.equal(indexes.trim().split('\n').sort(), ['PRIMARY', ...KINE_INDEXES].sort());

  const other = await start(
    'server',
    await configFile('server-other-token', await renderedConfig('opz3-2-midden', { token: '"another-token"' })),
  );
  assert.is(other.exitCode, 1, other.output);
  assert.match(other.output, 'bootstrap data already found and encrypted with different token');
});

test('an agent with the cluster token joins the server; one with another token is refused', async () => {
  const bad = await start('agent', await configFile('agent-bad', await renderedConfig('opz3-4-top', { token: '"another-token"' })));
  assert.is(bad.exitCode, 1, bad.output);
  assert.match(bad.output, 'refused to join: 401');
  const good = await start('agent', await configFile('agent', await renderedConfig('opz3-4-top')));
  assert.ok(good.ready, `the rendered agent config joins: ${good.output}`);
  // The rendered token's hash (k3sCaHash) is the one the stand-in computes from the served bundle, as k3s would.
  const hash = /token: "K10([0-9a-f]{64})::node:/.exec(await renderedConfig('opz3-4-top'))?.[1];
  assert.ok(hash, 'the agent has a secure token');
  assert.match(good.output, `cluster CA of https://127.0.0.1:6443 matches the token's CA hash ${hash}`);
  assert.match(good.output, 'joined https://127.0.0.1:6443');
});

test('an agent shown another CA at its server address sends no credentials, and keeps trying as k3s does', async () => {
  // An impostor: a plain HTTP server that serves a CA bundle of its own at /cacerts and logs every request.
  const dir = path.join(tmp, 'impostor');
  await mkdir(dir, { recursive: true });
  await execa('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cacerts'), '-subj', '/CN=impostor CA',
  ]); // prettier-ignore
  const impostor = execa('python3', ['-m', 'http.server', '--bind', '127.0.0.1', '--directory', dir, '16443'], {
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  running.push(impostor);
  let requests = '';
  impostor.all?.on('data', (chunk: Buffer) => (requests += String(chunk)));
  const config = await configFile('agent-impostor', await renderedConfig('opz3-4-top', { server: '"https://127.0.0.1:16443"' }));
  const agent = execa(K3S_STANDIN, ['agent'], { env: env(config), extendEnv: false, reject: false, all: true, stdin: 'ignore' });
  running.push(agent);
  let output = '';
  agent.all?.on('data', (chunk: Buffer) => (output += String(chunk)));
  // Two refusals: the second after its retry, still without credentials.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && (output.match(/token CA hash does not match/g) ?? []).length < 2)
    await new Promise((r) => setTimeout(r, 200));
  agent.kill('SIGKILL');
  impostor.kill('SIGKILL');
  await Promise.allSettled([agent, impostor]);
  assert.is((output.match(/token CA hash does not match the Cluster CA certificate hash/g) ?? []).length, 2, output);
  assert.match(output, 'no credentials sent');
  assert.not.match(output, 'joined');
  assert.match(requests, '"GET /cacerts HTTP/1.1" 200', requests);
  assert.not.match(requests, '/join', `the impostor was never sent the token: ${requests}`);
});

test('a datastore that does not answer fails the server with the endpoint in the message', async () => {
  const config = await configFile(
    'no-db',
    (await renderedConfig('opz3-3-boven')).replace(/^datastore-endpoint: .*$/m, 'datastore-endpoint: "mysql://k3s:x@tcp(127.0.0.1:1)/k3s"'),
  );
  const result = await start('server', config);
  assert.is(result.exitCode, 1, result.output);
  assert.match(result.output, 'datastore 127.0.0.1:1/k3s as k3s:');
  assert.not.match(result.output, 'x@', 'the password is not printed');
});
