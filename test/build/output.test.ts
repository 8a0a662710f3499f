/**
 * What a build may replace and which secrets it uses, through the real
 * command line: every profile naming a cluster (one that extends another, a
 * copy elsewhere) finds that cluster's secrets; the old file beside the
 * profile is still found and copied to the cluster's place; secrets that
 * differ from the previous output's are refused unless --rotate-secrets; a
 * directory the build did not write is never replaced; bad paths are one line
 * and exit 2.
 */
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { OPZ3, tempDir } from '../profile/helpers.js';
import { cli } from '../deploy/support.js';

const Output = suite('build: secrets per cluster, and only its own output replaced');

const made: string[] = [];
Output.after(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

async function workspace(): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = await tempDir('netroot-output-');
  made.push(dir);
  await mkdir(path.join(dir, 'profiles'));
  await writeFile(path.join(dir, 'profiles', 'opz3.yaml'), OPZ3);
  const env = { PATH: process.env.PATH, HOME: dir, NETROOT_SECRETS_DIR: path.join(dir, 'secrets') };
  return { dir, env };
}

/** The server token's secret, from the secure form `K10<CA hash>::server:<secret>`. */
const token = async (out: string): Promise<string> =>
  /^token: "K10[0-9a-f]{64}::server:(.*)"$/m.exec(
    await readFile(path.join(out, 'opz3/nodes/opz3-1-onder/etc/rancher/k3s/config.yaml'), 'utf8'),
  )![1]!;
const hostKey = (out: string): Promise<string> => readFile(path.join(out, 'opz3/nodes/opz3-1-onder/etc/ssh/ssh_host_ed25519_key'), 'utf8');

Output("a profile that extends the cluster's, and a copy elsewhere, build the same cluster with its secrets", async () => {
  const { dir, env } = await workspace();
  const first = await cli(dir, ['build', '-p', 'opz3'], env);
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, /generated the cluster's secrets in .*secrets\/opz3\.secrets\.yaml/);
  const tokenBefore = await token(path.join(dir, 'out'));
  const keyBefore = await hostKey(path.join(dir, 'out'));

  await writeFile(path.join(dir, 'profiles', 'mine.yaml'), 'extends: opz3\n');
  const mine = await cli(dir, ['build', '-p', 'mine'], env);
  assert.is(mine.code, 0, mine.stderr);
  assert.not.match(mine.stdout, /generated/, 'no new secrets');
  assert.is(await token(path.join(dir, 'out')), tokenBefore, 'the same k3s token');
  assert.is(await hostKey(path.join(dir, 'out')), keyBefore, 'the same SSH host keys');

  await mkdir(path.join(dir, 'elsewhere'));
  await copyFile(path.join(dir, 'profiles', 'opz3.yaml'), path.join(dir, 'elsewhere', 'copied.yaml'));
  const copied = await cli(dir, ['build', '-p', 'elsewhere/copied.yaml'], env);
  assert.is(copied.code, 0, copied.stderr);
  assert.is(await token(path.join(dir, 'out')), tokenBefore, 'a copied profile: the same token');
});

Output("the secrets file beside the profile (the old place) is still used, and copied to the cluster's place", async () => {
  const { dir, env } = await workspace();
  const legacy = path.join(dir, 'profiles', 'opz3.secrets.yaml');
  await writeFile(
    legacy,
    'keepalivedAuthPass: Vr1pPass\nmariadbRootPassword: RootRootRootRoot1234\nk3sDatabasePassword: DbDbDbDbDbDbDbDb5678\nk3sToken: TokenTokenTokenToken0123456789\n',
  );
  await chmod(legacy, 0o600);
  const run = await cli(dir, ['build', '-p', 'opz3'], env);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, /copied the cluster's secrets from profiles\/opz3\.secrets\.yaml to .*secrets\/opz3\.secrets\.yaml/);
  assert.is(await token(path.join(dir, 'out')), 'TokenTokenTokenToken0123456789');
  assert.match(await readFile(path.join(dir, 'secrets', 'opz3.secrets.yaml'), 'utf8'), /k3sToken: TokenTokenTokenToken0123456789/);
  const again = await cli(dir, ['build', '-p', 'opz3'], env);
  assert.is(again.code, 0, again.stderr);
  assert.is(again.stdout.includes('copied'), false, 'copied once');
});

Output("secrets that differ from the previous output's are refused, and accepted with --rotate-secrets", async () => {
  const { dir, env } = await workspace();
  assert.is((await cli(dir, ['build', '-p', 'opz3'], env)).code, 0);
  const before = await token(path.join(dir, 'out'));
  // Another secrets directory (a lost one, another user's): every secret would change.
  const other = { ...env, NETROOT_SECRETS_DIR: path.join(dir, 'other-secrets') };
  const refused = await cli(dir, ['build', '-p', 'opz3'], other);
  assert.is(refused.code, 2, refused.stderr);
  for (const what of [
    'the k3s token',
    'the k3s database password',
    'the MariaDB root password',
    'the keepalived auth_pass',
    'the SSH host keys of opz3-1-onder',
  ]) {
    assert.ok(refused.stderr.includes(what), `names ${what}:\n${refused.stderr}`);
  }
  assert.not.ok(existsSync(path.join(dir, 'other-secrets')), 'no secrets saved on a refused build');
  assert.is(await token(path.join(dir, 'out')), before, 'the output is untouched');
  const rotated = await cli(dir, ['build', '-p', 'opz3', '--rotate-secrets'], other);
  assert.is(rotated.code, 0, rotated.stderr);
  assert.is.not(await token(path.join(dir, 'out')), before);
});

Output('a directory the build did not write is refused, never replaced', async () => {
  const { dir, env } = await workspace();
  await mkdir(path.join(dir, 'exports', 'opz3', 'opz3-1-onder', 'var/lib/mysql'), { recursive: true });
  await writeFile(path.join(dir, 'exports', 'opz3', 'opz3-1-onder', 'var/lib/mysql', 'ibdata1'), 'live data');
  const run = await cli(dir, ['build', '-p', 'opz3', '--out', 'exports'], env);
  assert.is(run.code, 2, run.stderr);
  assert.is(
    run.stderr,
    'build-images: exports/opz3 exists but was not written by netroot (no .netroot-output.json in it); a build replaces that directory whole, so it refuses to. Move it away or choose another --out (never the export root: deploy with "build-images deploy --to")\n',
  );
  assert.is(await readFile(path.join(dir, 'exports', 'opz3', 'opz3-1-onder', 'var/lib/mysql', 'ibdata1'), 'utf8'), 'live data');
});

const BAD: [string, string[], RegExp][] = [
  ['--profile a directory', ['build', '-p', './profiles'], /^build-images: profile \.\/profiles is a directory; give a profile file/],
  [
    '--out a file',
    ['build', '-p', 'opz3', '--out', 'profiles/opz3.yaml'],
    /^build-images: --out profiles\/opz3\.yaml: is a file, not a directory$/,
  ],
  [
    '--out below a file',
    ['build', '-p', 'opz3', '--out', 'profiles/opz3.yaml/out'],
    /^build-images: --out profiles\/opz3\.yaml\/out: a part of that path is a file, not a directory$/,
  ],
  [
    'deploy --to a file',
    ['deploy', '-p', 'opz3', '--to', 'profiles/opz3.yaml', '--no-exportfs'],
    /^build-images: --to profiles\/opz3\.yaml: is a file, not a directory$/,
  ],
];

for (const [name, args, message] of BAD) {
  Output(`${name}: one line, exit 2`, async () => {
    const { dir, env } = await workspace();
    const run = await cli(dir, args, env);
    assert.is(run.code, 2, run.stderr);
    assert.match(run.stderr.trimEnd(), message);
    assert.is(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
  });
}

Output('--out on a read-only filesystem: one line, exit 2', async () => {
  const { dir, env } = await workspace();
  const ro = path.join(dir, 'ro');
  await mkdir(ro);
  // As root every directory is writable by mode: a read-only mount is what cannot be written.
  await execa('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'netroot-test', ro]);
  try {
    const run = await cli(dir, ['build', '-p', 'opz3', '--out', 'ro/out'], env);
    assert.is(run.code, 2, run.stderr);
    assert.is(run.stderr, `build-images: --out ro/out: ${ro} is not writable (the directory would be made there)\n`);
  } finally {
    await execa('umount', [ro]);
  }
});
