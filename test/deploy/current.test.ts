/**
 * Deploy puts the profile's build in place, never an older one: edit the
 * profile and deploy, and the target gets the edited value (the build is
 * rebuilt first, saying why) or a clear refusal with the command that
 * rebuilds it, when the base it was built from is not named.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { build } from '../../src/build.js';
import { deploy, planDeploy, type DeployOptions } from '../../src/deploy/index.js';
import { readManifest } from '../../src/entries/manifest.js';
import { makeArmbianBase } from '../support/armbian-base.js';
import { rejects } from '../support/assert.js';
import { edit, opz3With } from '../profile/helpers.js';
import { assertSameTree, cli, NODES } from './support.js';
import { places, type Places } from './places.js';

const SERVER = NODES[0]!;
const KEEPALIVED = `${SERVER}/etc/keepalived/keepalived.conf`;
const EDIT = ['advertInterval: 1', 'advertInterval: 4'] as const;

let w: Places;
const Current = suite('deploy uses only the build of the profile given');
Current.before(async () => {
  w = await places('netroot-current-');
});
Current.after(async () => w?.cleanup());

/** Profile LABEL (the cluster as it is), and deploy options onto an export root of its own. */
async function setup(label: string): Promise<{ profile: string; root: string; options: DeployOptions; flags: string[] }> {
  await w.write(label, opz3With());
  const { root, options, flags } = w.place(label);
  return { profile: w.profile(label), root, options: options(label), flags: flags(label) };
}

/** A small base and a k3s stand-in under LABEL. */
async function baseFor(label: string): Promise<{ base: string; k3s: string }> {
  const base = path.join(w.tmp, label, 'armbian');
  await makeArmbianBase(base, path.join(w.tmp, label, 'work'));
  const k3s = path.join(w.tmp, label, 'k3s');
  await writeFile(k3s, '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
  return { base, k3s };
}

const editProfile = async (file: string): Promise<void> => writeFile(file, edit(await readFile(file, 'utf8'), EDIT));

Current('a build without a base: deploy rebuilds it from the edited profile, says why, and the target gets the new value', async () => {
  const { profile, root, options, flags } = await setup('overlays');
  await deploy(options);
  assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 1\n/);
  assert.equal((await deploy(options)).rebuilt, undefined, 'a current build is not rebuilt');

  await editProfile(profile);
  const plan = await cli(w.tmp, ['plan', ...flags], w.env);
  assert.is(plan.code, 2, plan.stderr);
  assert.match(plan.stderr, /is not the build of .*\.yaml: the profile changed since\. Nothing was changed; deploy rebuilds it first/);
  const run = await cli(w.tmp, ['deploy', ...flags], w.env);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, /rebuilt \S*\/opz3 first: the profile changed since/);
  assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 4\n/);
});

Current(
  'a build from a base the deploy is not told of: refused with exit 2 and the command that rebuilds it; that command, then deploy, brings the new value',
  { timeout: 180_000 },
  async () => {
    const { profile, root, options, flags } = await setup('base');
    const { base, k3s } = await baseFor('base');
    await build({ ...options, base, formats: ['tree'], k3sBinary: k3s });
    await deploy(options);
    assert.ok(existsSync(path.join(root, SERVER, 'etc/os-release')), 'the nodes are full roots');
    const before = await readManifest(root);

    await editProfile(profile);
    await rejects(() => planDeploy(options), /the profile changed since\. Nothing was changed; rebuild it:/);
    const run = await cli(w.tmp, ['deploy', ...flags], w.env);
    assert.is(run.code, 2, run.stderr);
    const command = /\n {2}(build-images build .*)\nthen deploy again\.\n$/.exec(run.stderr)?.[1];
    assert.ok(command, `the refusal names the command:\n${run.stderr}`);
    assert.ok(command.includes(`--base ${base} --format tree --k3s-binary ${k3s}`), command);
    assertSameTree(await readManifest(root), before, 'the export root');

    const rebuilt = await cli(w.tmp, command.split(' ').slice(1), w.env);
    assert.is(rebuilt.code, 0, rebuilt.stderr);
    const again = await cli(w.tmp, ['deploy', ...flags], w.env);
    assert.is(again.code, 0, again.stderr);
    assert.match(await readFile(path.join(root, KEEPALIVED), 'utf8'), /advert_int 4\n/);
  },
);

Current('the base changed since the build: rebuilt when the deploy names it', { timeout: 180_000 }, async () => {
  const { root, options } = await setup('base-changed');
  const { base, k3s } = await baseFor('base-changed');
  const given = { ...options, build: { base, formats: ['tree' as const], k3sBinary: k3s } };
  await deploy(given);
  await writeFile(path.join(base, 'etc/added-to-the-base'), 'new\n');
  const result = await deploy(given);
  assert.equal(result.rebuilt, [`the base ${base} changed since`]);
  assert.ok(existsSync(path.join(root, SERVER, 'etc/added-to-the-base')), 'the target has the base as it is now');
});
