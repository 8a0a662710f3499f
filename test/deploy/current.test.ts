/**
 * Deploy puts the profile's build in place, never an older one: edit the
 * profile and deploy, and the target gets the edited value (the build is
 * rebuilt first, saying why) or a clear refusal with the command that
 * rebuilds it, when the base it was built from is not named.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { build } from '../../src/build.js';
import { deploy, planDeploy, type DeployOptions } from '../../src/deploy/index.js';
import { readManifest } from '../../src/deploy/manifest.js';
import { silentReporter } from '../../src/progress.js';
import { makeArmbianBase } from '../support/armbian-base.js';
import { rejects } from '../support/assert.js';
import { edit, opz3With } from '../profile/helpers.js';
import { assertSameTree, cli, NODES } from './support.js';

const SERVER = NODES[0]!;
const KEEPALIVED = `${SERVER}/etc/keepalived/keepalived.conf`;
const EDIT = ['advertInterval: 1', 'advertInterval: 4'] as const;

let tmp: string;
let env: NodeJS.ProcessEnv;
const Current = suite('deploy uses only the build of the profile given');
Current.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-current-'));
  env = {
    SOURCE_DATE_EPOCH: '1700000000',
    NETROOT_SECRETS_DIR: path.join(tmp, 'secrets'),
    XDG_CACHE_HOME: path.join(tmp, 'xdg'),
    PATH: process.env.PATH,
  };
});
Current.after(async () => tmp && rm(tmp, { recursive: true, force: true }));

/** A profile file of its own, and deploy options onto an export root of its own. */
async function setup(label: string): Promise<{ profile: string; root: string; options: DeployOptions; flags: string[] }> {
  const profile = path.join(tmp, label, 'opz3.yaml');
  await mkdir(path.dirname(profile), { recursive: true });
  await writeFile(profile, opz3With());
  const root = path.join(tmp, label, 'exports');
  const server = path.join(tmp, label, 'server');
  const out = path.join(tmp, label, 'out');
  const boot = { tftp: `${server}/tftp`, dnsmasq: `${server}/dnsmasq.d`, exportsDir: `${server}/exports.d` };
  return {
    profile,
    root,
    options: { profile, cwd: tmp, out, to: root, ...boot, ganeshaDir: false, exportfs: false, env, reporter: silentReporter },
    flags: [
      '-p',
      profile,
      '--out',
      out,
      '--to',
      root,
      '--tftp',
      boot.tftp,
      '--dnsmasq',
      boot.dnsmasq,
      '--exports-dir',
      boot.exportsDir,
      '--no-exportfs',
    ],
  };
}

const editProfile = async (file: string): Promise<void> => writeFile(file, edit(await readFile(file, 'utf8'), EDIT));

Current('a build without a base: deploy rebuilds it from the edited profile, says why, and the target gets the new value', async () => {
  const { profile, root, options, flags } = await setup('overlays');
  await deploy(options);
  assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 1\n/);
  assert.equal((await deploy(options)).rebuilt, undefined, 'a current build is not rebuilt');

  await editProfile(profile);
  const plan = await cli(tmp, ['plan', ...flags], env);
  assert.is(plan.code, 2, plan.stderr);
  assert.match(plan.stderr, /is not the build of .*opz3\.yaml: the profile changed since\. Nothing was changed; deploy rebuilds it first/);
  const run = await cli(tmp, ['deploy', ...flags], env);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, /rebuilt .*out\/opz3 first: the profile changed since/);
  assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 4\n/);
});

Current(
  'a build from a base the deploy is not told of: refused with exit 2 and the command that rebuilds it; that command, then deploy, brings the new value',
  { timeout: 180_000 },
  async () => {
    const { profile, root, options, flags } = await setup('base');
    const base = path.join(tmp, 'base', 'armbian');
    await makeArmbianBase(base, path.join(tmp, 'base', 'work'));
    const k3s = path.join(tmp, 'base', 'k3s');
    await writeFile(k3s, '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
    await build({ ...options, base, formats: ['tree'], k3sBinary: k3s });
    await deploy(options);
    assert.ok(existsSync(path.join(root, SERVER, 'etc/os-release')), 'the nodes are full roots');
    const before = await readManifest(root);

    await editProfile(profile);
    await rejects(() => planDeploy(options), /the profile changed since\. Nothing was changed; rebuild it:/);
    const run = await cli(tmp, ['deploy', ...flags], env);
    assert.is(run.code, 2, run.stderr);
    const command = /\n {2}(build-images build .*)\nthen deploy again\.\n$/.exec(run.stderr)?.[1];
    assert.ok(command, `the refusal names the command:\n${run.stderr}`);
    assert.ok(command.includes(`--base ${base} --format tree --k3s-binary ${k3s}`), command);
    assertSameTree(await readManifest(root), before, 'the export root');

    const rebuilt = await cli(tmp, command.split(' ').slice(1), env);
    assert.is(rebuilt.code, 0, rebuilt.stderr);
    const again = await cli(tmp, ['deploy', ...flags], env);
    assert.is(again.code, 0, again.stderr);
    assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 4\n/);
  },
);

Current('the base changed since the build: rebuilt when the deploy names it', { timeout: 180_000 }, async () => {
  const { root, options } = await setup('base-changed');
  const base = path.join(tmp, 'base-changed', 'armbian');
  await makeArmbianBase(base, path.join(tmp, 'base-changed', 'work'));
  const k3s = path.join(tmp, 'base-changed', 'k3s');
  await writeFile(k3s, '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
  const given = { ...options, build: { base, formats: ['tree' as const], k3sBinary: k3s } };
  await deploy(given);
  await writeFile(path.join(base, 'etc/added-to-the-base'), 'new\n');
  const result = await deploy(given);
  assert.equal(result.rebuilt, [`the base ${base} changed since`]);
  assert.ok(existsSync(path.join(root, SERVER, 'etc/added-to-the-base')), 'the target has the base as it is now');
});
