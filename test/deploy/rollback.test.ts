/**
 * `rollback` end to end, on a local export root and on root@127.0.0.1 through
 * a real sshd, with builds made without a base (each node's overlay alone:
 * fast): it undoes exactly the last deploy, on the nodes that deploy changed
 * and the boot server's files, and leaves the other nodes alone; a second
 * rollback redoes it; nothing to undo, or a damaged journal, is a clear exit 2
 * that changes nothing.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { deploy, rollback } from '../../src/deploy/index.js';
import { readManifest, type Manifest } from '../../src/entries/manifest.js';
import { isRoot } from '../support/rootfs.js';
import { startSshd, sshdMissing, type Sshd } from '../support/sshd.js';
import { opz3With } from '../profile/helpers.js';
import { assertSameTree, cli, NODES, STATE } from './support.js';
import { places, type Places } from './places.js';

const SERVERS = NODES.slice(0, 3);
const AGENT = NODES[3]!;

/** The profiles deployed: the cluster, a server-only change, an agent-only change (its DNS, and its MAC: boot server files). */
const SERVERS_EDIT = ['advertInterval: 1', 'advertInterval: 3'] as const;
const PROFILES = {
  opz3: opz3With(),
  servers: opz3With(SERVERS_EDIT),
  agent: opz3With(SERVERS_EDIT, [
    'mac: "02:00:c0:00:02:3f", ip: 192.0.2.63, roles: [agent] }',
    'mac: "02:00:c0:00:02:4f", ip: 192.0.2.63, roles: [agent], network: { dns: [192.0.2.2] } }',
  ]),
};
type Profile = keyof typeof PROFILES;

let w: Places;
let trees: Record<Profile, Record<string, Manifest>>;
let sshd: Sshd | undefined;

const Rollback = suite('rollback undoes exactly the last deploy');

Rollback.before(async () => {
  w = await places('netroot-rollback-');
  trees = {} as typeof trees;
  for (const [name, text] of Object.entries(PROFILES) as [Profile, string][]) {
    await w.write(name, text);
    trees[name] = await w.build(name);
  }
  if (isRoot && !(await sshdMissing())) sshd = await startSshd(path.join(w.tmp, 'sshd'));
});
Rollback.after(async () => {
  await sshd?.stop();
  await w?.cleanup();
});

const generation = async (root: string, node: string): Promise<string> =>
  (await readFile(path.join(root, '.netroot/nodes', node, 'current'), 'utf8')).trim();

async function assertNodes(root: string, expected: Record<string, Profile>, what: string): Promise<void> {
  for (const [node, profile] of Object.entries(expected))
    assertSameTree(await readManifest(path.join(root, node), STATE), trees[profile][node]!, `${what}: ${node} holds the ${profile} build`);
}

const everyNode = (profile: Profile, over: Record<string, Profile> = {}): Record<string, Profile> => ({
  ...Object.fromEntries(NODES.map((n) => [n, profile])),
  ...over,
});

for (const remote of [false, true]) {
  const where = remote ? 'over ssh' : 'on a local export root';
  const needs = remote ? () => (sshd ? undefined : 'the ssh cases need root, sshd, ssh and rsync') : () => undefined;

  Rollback(`${where}: a deploy that changed only the servers is undone on the servers alone; a second rollback redoes it`, async () => {
    const missing = needs();
    if (missing) throw new Error(missing);
    const { root, options, flags } = w.place(`servers-${remote}`, remote ? sshd!.ssh : undefined);
    await deploy(options('opz3'));
    const password = path.join(root, SERVERS[0]!, 'etc/rancher/node/password');
    await mkdir(path.dirname(password), { recursive: true });
    await writeFile(password, 'node state\n');
    const second = await deploy(options('servers'));
    assert.equal(second.deployed, SERVERS, 'the deploy changed the servers only');
    assert.is(await generation(root, AGENT), '1');

    const back = await rollback(options('servers'));
    assert.equal(
      back.nodes.map((n) => n.node),
      SERVERS,
    );
    assert.equal(back.untouched, [AGENT]);
    await assertNodes(root, everyNode('opz3'), 'rolled back');
    assert.is(await generation(root, AGENT), '1', 'the agent was not touched');
    assert.is(await readFile(password, 'utf8'), 'node state\n', 'node state kept');

    // The second through the command line: what it says.
    const redo = await cli(w.tmp, ['rollback', ...flags('servers')], w.env);
    assert.is(redo.code, 0, redo.stderr);
    assert.match(redo.stdout, new RegExp(`^undid the rollback of \\S+ on \\S+, which had changed ${SERVERS.join(', ')}\n`));
    assert.ok(redo.stdout.includes(`\n${AGENT}: not changed by that rollback, left as it is\n`), redo.stdout);
    assert.match(redo.stdout, /\na second rollback redoes what this one undid\n$/);
    await assertNodes(root, everyNode('servers'), 'the rollback rolled back');
    assert.is(await generation(root, AGENT), '1', 'the agent was still not touched');
  });

  Rollback(
    `${where}: a deploy that changed only the agent (and its boot files) is undone on the agent and the boot server alone`,
    async () => {
      const missing = needs();
      if (missing) throw new Error(missing);
      const { root, server, options } = w.place(`agent-${remote}`, remote ? sshd!.ssh : undefined);
      const pxe = (mac: string) => path.join(server, 'tftp/pxelinux.cfg', `01-${mac}`);
      await deploy(options('opz3'));
      await deploy(options('servers'));
      const dnsmasqBefore = await readFile(path.join(server, 'dnsmasq.d/opz3.conf'), 'utf8');
      const agentDeploy = await deploy(options('agent'));
      assert.equal(agentDeploy.deployed, [AGENT]);
      assert.ok(existsSync(pxe('02-00-c0-00-02-4f')) && !existsSync(pxe('02-00-c0-00-02-3f')), 'the deploy moved the PXE file');

      const back = await rollback(options('agent'));
      assert.equal(
        back.nodes.map((n) => n.node),
        [AGENT],
      );
      // The servers keep the deploy before (advertInterval 3); they are not rolled back with the agent.
      await assertNodes(root, everyNode('servers', { [AGENT]: 'opz3' }), 'rolled back');
      for (const s of SERVERS) assert.is(await generation(root, s), '2', `${s} was not touched`);
      assert.ok(existsSync(pxe('02-00-c0-00-02-3f')), "the agent's PXE file is back");
      assert.not.ok(existsSync(pxe('02-00-c0-00-02-4f')), 'the one the deploy added is gone');
      assert.is(await readFile(path.join(server, 'dnsmasq.d/opz3.conf'), 'utf8'), dnsmasqBefore, "dnsmasq's file is back");
    },
  );
}

Rollback('nothing to undo: exit 2, says so, changes nothing', async () => {
  const { root, flags } = w.place('nothing');
  await mkdir(root, { recursive: true });
  const run = await cli(w.tmp, ['rollback', ...flags('opz3')], w.env);
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, /^build-images: nothing to undo on .*: no deploy is recorded there; nothing was changed\n$/);
  assert.equal(await readManifest(root), {}, 'nothing was written');
});

Rollback('a damaged journal: exit 2 naming the file and what to do, not an internal error; nothing changed', async () => {
  const { root, options, flags } = w.place('damaged');
  await deploy(options('opz3'));
  await deploy(options('servers'));
  const journal = path.join(root, '.netroot/clusters/opz3.op.json');
  await writeFile(journal, '{"kind": "deploy", "op": ');
  const before = await readManifest(root);
  const run = await cli(w.tmp, ['rollback', ...flags('servers'), '--json'], w.env);
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, new RegExp(`^build-images: ${journal}.* cannot be read: it should be the journal of a deploy or rollback`));
  assert.match(run.stderr, /Move it aside, then run deploy again/);
  assert.not.match(run.stderr, /internal error|\n {4}at /);
  assert.is((JSON.parse(run.stdout) as { error: { exitCode: number } }).error.exitCode, 2);
  assertSameTree(await readManifest(root), before, 'the export root');
});
