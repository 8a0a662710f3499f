/**
 * Cluster secrets: generated once, saved privately, reused; the environment
 * overrides the file; bad values are refused without ever echoing them.
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { ProfileError } from '../../src/errors.js';
import { defaultSecretsFile, loadSecrets, SECRET_ENV, secretsSchema, type SecretsOptions } from '../../src/profile/secrets.js';
import { position, tempDir } from './helpers.js';

const NAMES = [
  'keepalivedAuthPass',
  'mariadbRootPassword',
  'k3sDatabasePassword',
  'k3sToken',
  'k3sAgentToken',
  'galeraRecoveryKey',
  'longhornUiPassword',
] as const;
const SHOWN = 'opz3.secrets.yaml';

/** The four cluster secrets saved in a secrets file (which may hold more, such as node identities). */
async function savedSecrets(file: string): Promise<Record<string, unknown>> {
  const saved = parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  return Object.fromEntries(NAMES.filter((k) => k in saved).map((k) => [k, saved[k]]));
}

/** A fresh dir and the secrets file of profile opz3.yaml in it (not created). */
async function setup(): Promise<{ dir: string; file: string; options: (env?: NodeJS.ProcessEnv) => SecretsOptions }> {
  const dir = await tempDir('netroot-secrets-');
  const file = defaultSecretsFile(path.join(dir, 'opz3.yaml'));
  return { dir, file, options: (env = {}) => ({ file, env, cwd: dir }) };
}

/** Write a secrets file by hand, private unless told otherwise. */
async function writeSecrets(file: string, text: string, mode = 0o600): Promise<void> {
  await writeFile(file, text);
  await chmod(file, mode);
}

async function refused(promise: Promise<unknown>): Promise<ProfileError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ProfileError) return error;
    throw error;
  }
  assert.unreachable('the secrets were accepted, but they should have been refused');
  throw new Error('unreachable');
}

const VALID = {
  keepalivedAuthPass: 'Vr1pPass',
  mariadbRootPassword: 'RootRootRootRoot1234',
  k3sDatabasePassword: 'DbDbDbDbDbDbDbDb5678',
  k3sToken: 'TokenTokenTokenToken0123456789',
  k3sAgentToken: 'AgentAgentAgentAgent0123456789',
  galeraRecoveryKey: 'RecoveryRecoveryRecoveryKey01234',
  longhornUiPassword: 'LonghornLonghornUi0123',
};
const validText = (overrides: Partial<Record<string, string>> = {}) =>
  Object.entries({ ...VALID, ...overrides })
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n') + '\n';

const Secrets = suite('secrets');

Secrets('the secrets file is NAME.secrets.yaml beside the profile', () => {
  assert.is(defaultSecretsFile('/x/profiles/opz3.yaml'), '/x/profiles/opz3.secrets.yaml');
});

Secrets('first load generates all five, save() writes them with mode 0600, the next load reuses them', async () => {
  const { file, options } = await setup();
  const first = await loadSecrets(options());
  assert.equal([...first.generated].sort(), [...NAMES].sort());
  assert.ok(secretsSchema.safeParse(first.secrets).success, 'generated secrets pass their own schema');
  assert.is(first.secrets.keepalivedAuthPass.length, 8, 'VRRP auth pass uses all 8 characters VRRP keeps');
  assert.not.ok(existsSync(file), 'loading alone writes nothing');

  assert.is(await first.save(), file);
  assert.is((await stat(file)).mode & 0o777, 0o600);
  assert.equal(await savedSecrets(file), first.secrets);

  const second = await loadSecrets(options());
  assert.equal(second.secrets, first.secrets, 'a rebuild never changes the token or the passwords');
  assert.equal(second.generated, []);
  assert.is(await second.save(), undefined, 'nothing new to save');
  assert.is((await stat(file)).mode & 0o777, 0o600);
});

Secrets('two first loads generate different secrets', async () => {
  const a = await loadSecrets((await setup()).options());
  const b = await loadSecrets((await setup()).options());
  assert.is.not(a.secrets.k3sToken, b.secrets.k3sToken);
});

Secrets('environment variables override the file', async () => {
  const { file, options } = await setup();
  await writeSecrets(file, validText());
  const env = { [SECRET_ENV.k3sToken]: 'EnvTokenEnvTokenEnvToken', [SECRET_ENV.keepalivedAuthPass]: 'EnvPass1' };
  const loaded = await loadSecrets(options(env));
  assert.equal(loaded.secrets, { ...VALID, k3sToken: 'EnvTokenEnvTokenEnvToken', keepalivedAuthPass: 'EnvPass1' });
  assert.equal(loaded.generated, []);
  assert.is(SECRET_ENV.k3sToken, 'NETROOT_K3S_TOKEN');
  assert.is(SECRET_ENV.keepalivedAuthPass, 'NETROOT_KEEPALIVED_AUTH_PASS');
});

Secrets('a secret from the environment is not written into the file', async () => {
  const { file, options } = await setup();
  const loaded = await loadSecrets(options({ [SECRET_ENV.k3sToken]: 'EnvTokenEnvTokenEnvToken' }));
  assert.equal([...loaded.generated].sort(), [
    'galeraRecoveryKey',
    'k3sAgentToken',
    'k3sDatabasePassword',
    'keepalivedAuthPass',
    'longhornUiPassword',
    'mariadbRootPassword',
  ]);
  await loaded.save();
  assert.equal(Object.keys(await savedSecrets(file)).sort(), [
    'galeraRecoveryKey',
    'k3sAgentToken',
    'k3sDatabasePassword',
    'keepalivedAuthPass',
    'longhornUiPassword',
    'mariadbRootPassword',
  ]);
  assert.not.ok((await readFile(file, 'utf8')).includes('EnvTokenEnvTokenEnvToken'));
});

const TOO_LONG = 'is longer than 8 characters; VRRP PASS authentication silently uses only the first 8, so use at most 8';

Secrets('an auth pass longer than 8 characters from the environment is refused without showing it', async () => {
  const { file, options } = await setup();
  const secret = 'Sup3rSecretPass';
  const error = await refused(loadSecrets(options({ [SECRET_ENV.keepalivedAuthPass]: secret })));
  assert.is(error.exitCode, 2);
  assert.equal(error.issues, [{ key: 'NETROOT_KEEPALIVED_AUTH_PASS', message: `(environment) ${TOO_LONG}` }]);
  assert.ok(error.message.includes(`NETROOT_KEEPALIVED_AUTH_PASS: (environment) ${TOO_LONG}`), error.message);
  assert.not.ok(error.message.includes(secret.slice(0, 8)), 'not even the part VRRP would keep is shown');
  assert.not.ok(existsSync(file), 'nothing is written');
});

Secrets('an auth pass longer than 8 characters in the file is refused at its line without showing it', async () => {
  const { file, options } = await setup();
  const secret = 'FileSecretPass9';
  const text = validText({ keepalivedAuthPass: secret });
  await writeSecrets(file, text);
  const error = await refused(loadSecrets(options()));
  assert.is(error.exitCode, 2);
  assert.equal(error.issues, [
    {
      location: { file: SHOWN, ...position(text, { line: 'keepalivedAuthPass', col: secret }) },
      key: 'keepalivedAuthPass',
      message: TOO_LONG,
    },
  ]);
  assert.not.ok(error.message.includes(secret.slice(0, 8)), error.message);
});

Secrets('other bad values in the file are refused without showing them', async () => {
  const { file, options } = await setup();
  const secret = 'short@pw';
  const text = validText({ mariadbRootPassword: secret });
  await writeSecrets(file, text);
  const error = await refused(loadSecrets(options()));
  assert.is(error.issues.length, 1);
  assert.is(error.issues[0]!.key, 'mariadbRootPassword');
  assert.equal(error.issues[0]!.location, { file: SHOWN, ...position(text, { line: 'mariadbRootPassword', col: secret }) });
  assert.ok(error.issues[0]!.message.startsWith('must be 12–128 characters'), error.issues[0]!.message);
  assert.not.ok(error.message.includes(secret), error.message);
});

Secrets('a secrets file other users can read is refused with a chmod hint', async () => {
  const { file, options } = await setup();
  await writeSecrets(file, validText(), 0o644);
  const error = await refused(loadSecrets(options()));
  assert.is(error.exitCode, 2);
  assert.equal(error.issues, [
    {
      location: { file: SHOWN, line: 1, column: 1 },
      key: '',
      message: `the secrets file can be read by other users (mode 644); run: chmod 600 ${SHOWN}`,
    },
  ]);
  assert.not.ok(error.message.includes(VALID.k3sToken));
});

Secrets('an unknown key in the secrets file is reported at its line', async () => {
  const { file, options } = await setup();
  const text = validText() + 'k3sTokn: TokenTokenTokenToken0123456789\n';
  await writeSecrets(file, text);
  const error = await refused(loadSecrets(options()));
  assert.is(error.exitCode, 2);
  assert.is(error.issues.length, 1);
  const [issue] = error.issues;
  assert.equal(issue!.location, { file: SHOWN, ...position(text, { line: 'k3sTokn', col: 'k3sTokn' }) });
  assert.is(issue!.key, 'k3sTokn');
  // the list of known keys may grow (node identities); the secrets come first
  assert.ok(
    issue!.message.startsWith('unknown key "k3sTokn"; known: keepalivedAuthPass, mariadbRootPassword, k3sDatabasePassword, k3sToken'),
    issue!.message,
  );
});

Secrets('a partial secrets file is completed and the file keeps what it had', async () => {
  const { file, options } = await setup();
  await writeSecrets(file, `k3sToken: ${VALID.k3sToken}\n`);
  const loaded = await loadSecrets(options());
  assert.is(loaded.secrets.k3sToken, VALID.k3sToken);
  assert.equal([...loaded.generated].sort(), [
    'galeraRecoveryKey',
    'k3sAgentToken',
    'k3sDatabasePassword',
    'keepalivedAuthPass',
    'longhornUiPassword',
    'mariadbRootPassword',
  ]);
  await loaded.save();
  assert.equal(await savedSecrets(file), loaded.secrets);
  assert.is((await stat(file)).mode & 0o777, 0o600);
});

Secrets(
  'TLS: a CA and a certificate per server are kept with the secrets (0600) and reused; a server whose IP changes gets a new one, the others keep theirs',
  async () => {
    const { file, options } = await setup();
    const servers = [
      { name: 'a', ip: '192.0.2.61' },
      { name: 'b', ip: '192.0.2.62' },
    ];
    const tls = (list: typeof servers) => ({
      ...options(),
      nodes: list.map((s) => s.name),
      tls: { cluster: 'opz3', vip: '192.0.2.50', servers: list },
    });
    const first = await loadSecrets(tls(servers));
    assert.equal(
      first.generated.filter((g) => g.includes('TLS')),
      ['cluster TLS CA', 'node a TLS certificate', 'node b TLS certificate'],
    );
    await first.save();
    assert.is((await stat(file)).mode & 0o777, 0o600);
    const saved = parse(await readFile(file, 'utf8'));
    assert.match(saved.clusterCa.key, /^-----BEGIN PRIVATE KEY-----/);
    const second = await loadSecrets(tls(servers));
    assert.equal(second.generated, []);
    assert.is(second.identities.a!.tls!.cert, first.identities.a!.tls!.cert, 'a rebuild keeps the certificates');
    const moved = await loadSecrets(tls([servers[0]!, { name: 'b', ip: '192.0.2.72' }]));
    assert.equal(moved.generated, ['node b TLS certificate']);
    assert.is(moved.identities.a!.tls!.cert, first.identities.a!.tls!.cert);
    assert.is.not(moved.identities.b!.tls!.cert, first.identities.b!.tls!.cert);
    assert.is(moved.identities.b!.tls!.ca, first.identities.a!.tls!.ca, 'signed by the same CA');
    // A lost secrets file means a new CA: a rebuild over the old output names it.
    const { fingerprint, secretChanges } = await import('../../src/profile/store.js');
    const recorded = fingerprint(first.secrets, first.identities, ['a', 'b']);
    assert.equal(secretChanges(recorded, second.secrets, second.identities), []);
    const other = await loadSecrets({ ...tls(servers), file: path.join(path.dirname(file), 'other.secrets.yaml') });
    const changes = secretChanges(recorded, first.secrets, {
      a: { ...first.identities.a!, tls: other.identities.a!.tls! },
      b: first.identities.b!,
    });
    assert.equal(changes.length, 1);
    assert.match(changes[0]!, "the cluster's TLS CA (servers a)");
  },
);
