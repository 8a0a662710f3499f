/**
 * Deploy end to end, to a local directory and to root@127.0.0.1 through a real
 * sshd: node state survives redeploys of changed builds, `plan` shows what
 * would change and writes nothing, rollback puts the previous generation back,
 * secrets that differ from the target's are refused, and a deploy killed with
 * SIGKILL at several points leaves every file old or new and is finished by
 * the next run.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { deploy, planDeploy, rollback } from '../../src/deploy/index.js';
import { readManifest, type Manifest } from '../../src/entries/manifest.js';
import { isRoot } from '../support/rootfs.js';
import { startSshd, type Sshd } from '../support/sshd.js';
import { rejects } from '../support/assert.js';
import { assertOldOrNew, assertSameTree, built, cli, fixture, killAt, live, NODES, STATE, type Fixture } from './support.js';

const NODE = NODES[0]!;

/** What a node writes into its own root at run time. */
async function writeState(root: string): Promise<void> {
  await mkdir(path.join(root, NODE, 'etc/rancher/node'), { recursive: true });
  await writeFile(path.join(root, NODE, 'etc/rancher/node/password'), 'k3s node password\n');
  await writeFile(path.join(root, NODE, 'var/lib/mysql/grastate.dat'), 'safe_to_bootstrap: 0\n');
}

async function assertState(root: string, what: string): Promise<void> {
  assert.is(
    await readFile(path.join(root, NODE, 'etc/rancher/node/password'), 'utf8'),
    'k3s node password\n',
    `${what}: /etc/rancher/node/password`,
  );
  assert.is(
    await readFile(path.join(root, NODE, 'var/lib/mysql/grastate.dat'), 'utf8'),
    'safe_to_bootstrap: 0\n',
    `${what}: a file the node wrote under /var/lib/mysql`,
  );
  assert.is(
    await readFile(path.join(root, NODE, 'var/lib/mysql/ibdata1'), 'utf8'),
    "the image's empty datadir\n",
    `${what}: the seeded datadir is never replaced by a newer image's`,
  );
}

async function assertDeployed(root: string, f: Fixture, what: string): Promise<Record<string, Manifest>> {
  const trees: Record<string, Manifest> = {};
  for (const node of NODES) {
    trees[node] = await built(f.out, node);
    assertSameTree(await live(root, node), trees[node]!, `${what}, ${node}`);
  }
  return trees;
}

/**
 * uvu swallows an error thrown in a `before` hook and exits 0: setup errors
 * (no root, no sshd or rsync) are kept and thrown by every test instead, so
 * each one fails with the message.
 */
function setup(run: () => Promise<void>): { before: () => Promise<void>; ready: () => void } {
  let problem: unknown;
  return {
    before: async () => {
      try {
        if (!isRoot) throw new Error('the deploy tests need root (owners, and ssh to root@127.0.0.1)');
        await run();
      } catch (error) {
        problem = error;
      }
    },
    ready: () => {
      if (problem) throw problem;
    },
  };
}

const Local = suite('deploy: a local export root');
let f: Fixture;
const local = setup(async () => {
  f = await fixture();
});
Local.before(local.before);
Local.before.each(local.ready);
Local.after(async () => f?.cleanup());

Local(
  'first deploy seeds state; two redeploys of changed builds keep it; plan shows the changes and writes nothing; rollback goes back',
  async () => {
    const root = path.join(f.tmp, 'exports');
    await f.build('opz3', 'a');
    const first = await deploy(f.target(root, 'local'));
    assert.equal(first.deployed, NODES);
    assert.ok(
      first.nodes.every((n) => n.reboot),
      'a first deploy needs a reboot',
    );
    const treesA = await assertDeployed(root, f, 'after the first deploy');
    assert.ok(first.nodes[0]!.seeded.includes('var/lib/mysql'), 'the datadir is seeded from the image');
    assert.ok(existsSync(path.join(f.tmp, 'server-local/exports.d/opz3.exports')));
    assert.ok(existsSync(path.join(f.tmp, 'server-local/dnsmasq.d/opz3.conf')));
    assert.ok(existsSync(path.join(f.tmp, 'server-local/tftp/pxelinux.cfg/01-02-00-c0-00-02-3c')));
    await writeState(root);

    await f.build('opz3-b', 'b');
    const snapshot = async () => (await execa('sh', ['-c', 'cd "$1" && find . -printf "%p %s %m %T@\\n" | sort', 'sh', f.tmp])).stdout;
    const before = await snapshot();
    const plan = await cli(f.tmp, ['plan', ...f.flags(root, 'local')], f.env);
    assert.is(plan.code, 0, plan.stderr);
    const after = await snapshot();
    const beforeLines = new Set(before.split('\n'));
    assert.equal(
      after.split('\n').filter((l) => !beforeLines.has(l)),
      [],
      'plan writes nothing',
    );
    for (const line of [
      `${NODE}: 1 added, 2 changed, 1 removed; needs a reboot`,
      '    + /usr/share/new-in-b',
      '    ~ /etc/keepalived/keepalived.conf',
      '    ~ /usr/lib/big.bin',
      '    - /usr/share/only-in-a',
      '    = /var/lib/mysql (node state: kept)',
      '    = /etc/rancher/node (node state: kept)',
      'opz3-4-top: 1 added, 1 changed, 1 removed; needs a reboot',
      `dnsmasq ${f.tmp}/server-local/dnsmasq.d/opz3.conf: unchanged`,
    ])
      assert.ok(plan.stdout.includes(`${line}`), `plan shows ${JSON.stringify(line)}:\n${plan.stdout}`);
    assert.not.ok(plan.stdout.includes('/etc/rancher/node/password'), 'state is never listed as changed');

    await deploy(f.target(root, 'local'));
    const treesB = await assertDeployed(root, f, 'after the second deploy');
    await assertState(root, 'after the second deploy');
    const unchanged = await deploy(f.target(root, 'local'));
    assert.equal(unchanged.deployed, [], 'deploying the same build again changes nothing');

    await f.build('opz3-c', 'a');
    await deploy(f.target(root, 'local'));
    await assertDeployed(root, f, 'after the third deploy');
    await assertState(root, 'after the third deploy');

    const back = await rollback(f.target(root, 'local'));
    assert.equal(
      back.nodes.map((n) => n.node),
      NODES,
    );
    for (const node of NODES) assertSameTree(await live(root, node), treesB[node]!, `rolled back to B, ${node}`);
    await assertState(root, 'after a rollback');
    // A rollback is a generation like any other: rolling back again returns to C.
    await rollback(f.target(root, 'local'));
    await assertDeployed(root, f, 'after rolling the rollback back');
    assert.ok(treesA[NODE]!['usr/share/only-in-a'], 'the fixture really removes and adds files');
  },
);

Local('secrets that differ from the ones the target holds are refused, saying what would break; nothing is written', async () => {
  const root = path.join(f.tmp, 'exports');
  const before = await readManifest(root);
  const run = await cli(f.tmp, ['deploy', ...f.flags(root, 'local')], { ...f.env, NETROOT_K3S_TOKEN: 'AnotherTokenAnotherToken1234' });
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, /the k3s token: nodes with the new token refuse those still running with the old one, so the cluster splits/);
  assert.match(run.stderr, /--rotate-secrets/);
  assert.not.match(run.stderr, /AnotherToken/, 'the secret is never printed');
  assertSameTree(await readManifest(root), before, 'the target');
  // The build refuses them too: its output was made with the cluster's token.
  const rebuilt = await cli(f.tmp, ['build', '-p', path.join(f.profiles, 'opz3.yaml'), '--out', f.out], {
    ...f.env,
    NETROOT_K3S_TOKEN: 'AnotherTokenAnotherToken1234',
  });
  assert.is(rebuilt.code, 2, rebuilt.stderr);
  assert.match(rebuilt.stderr, /the previous build in .* already holds/);
});

Local('deploy with no build yet runs one first', async () => {
  const root = path.join(f.tmp, 'exports-unbuilt');
  const out = path.join(f.tmp, 'out-unbuilt');
  const result = await deploy({ ...f.target(root, 'unbuilt'), out, build: f.buildOptions });
  assert.is(result.built, true);
  assert.equal(result.deployed, NODES);
  for (const node of NODES)
    assertSameTree(await live(root, node), await readManifest(path.join(out, 'opz3/rootfs', node), STATE), `built and deployed, ${node}`);
});

Local('rollback with no earlier generation is refused for all nodes, and changes nothing', async () => {
  const root = path.join(f.tmp, 'fresh-exports');
  await f.build('opz3', 'a');
  await deploy(f.target(root, 'fresh'));
  const run = await cli(f.tmp, ['rollback', ...f.flags(root, 'fresh')], f.env);
  assert.is(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /cannot roll back .*nothing was changed:\n {2}opz3-1-onder: generation 1 is the first one netroot deployed there/,
  );
});

Local('a deploy running elsewhere holds the export root: refused, naming it', async () => {
  const root = path.join(f.tmp, 'fresh-exports');
  await mkdir(path.join(root, '.netroot/lock'), { recursive: true });
  await writeFile(path.join(root, '.netroot/lock/owner'), 'build-host-2 4242\n');
  await rejects(
    () => deploy(f.target(root, 'fresh')),
    /^another deploy or rollback \(build-host-2 4242\) is running on .*; if none is, remove .*\/\.netroot\/lock$/,
  );
  await rm(path.join(root, '.netroot/lock'), { recursive: true });
  assert.equal((await deploy(f.target(root, 'fresh'))).deployed, [], 'nothing had changed');
  assert.not.ok(existsSync(path.join(root, '.netroot/lock')), 'released');
});

const Ssh = suite('deploy: root@127.0.0.1 through a real sshd');
let g: Fixture;
let sshd: Sshd | undefined;
const remote = setup(async () => {
  g = await fixture();
  sshd = await startSshd(path.join(g.tmp, 'sshd'));
});
Ssh.before(remote.before);
Ssh.before.each(remote.ready);
Ssh.after(async () => {
  await sshd?.stop();
  await g?.cleanup();
});

Ssh('deploy, redeploy of a changed build keeping state, plan and rollback over ssh', async () => {
  const root = path.join(g.tmp, 'remote-exports');
  const to = `root@127.0.0.1:${root}`;
  await g.build('opz3', 'a');
  const first = await deploy(g.target(to, 'ssh', { ssh: sshd!.ssh }));
  assert.is(first.target, `root@127.0.0.1:${root}`);
  const treesA = await assertDeployed(root, g, 'over ssh');
  await writeState(root);
  await g.build('opz3-b', 'b');
  const plan = await planDeploy(g.target(to, 'ssh', { ssh: sshd!.ssh }));
  assert.equal(
    plan.nodes[0]!.changed,
    ['etc/keepalived/keepalived.conf', 'usr/lib/big.bin', 'var/lib/dpkg/status'].filter((p) => plan.nodes[0]!.changed.includes(p)),
  );
  assert.ok(plan.nodes[0]!.kept.includes('etc/rancher/node'));
  await deploy(g.target(to, 'ssh', { ssh: sshd!.ssh }));
  await assertDeployed(root, g, 'redeployed over ssh');
  await assertState(root, 'redeployed over ssh');
  const cliRun = await cli(g.tmp, ['plan', ...g.flags(to, 'ssh'), '--ssh', sshd!.ssh.join(' ')], g.env);
  assert.is(cliRun.code, 0, cliRun.stderr);
  assert.ok(cliRun.stdout.includes(`${NODE}: 0 added, 0 changed, 0 removed; unchanged, no reboot`), cliRun.stdout);
  await rollback(g.target(to, 'ssh', { ssh: sshd!.ssh }));
  for (const node of NODES) assertSameTree(await live(root, node), treesA[node]!, `rolled back over ssh, ${node}`);
  await assertState(root, 'rolled back over ssh');
});

const Kill = suite('deploy: SIGKILL at any moment, then deploy again');
let h: Fixture;
let pristine: string;
let treesA: Record<string, Manifest>;
let treesB: Record<string, Manifest>;
const killing = setup(async () => {
  h = await fixture();
  pristine = path.join(h.tmp, 'pristine');
  await h.build('opz3', 'a');
  await deploy(h.target(pristine, 'kill'));
  await writeState(pristine);
  treesA = {};
  for (const node of NODES) treesA[node] = await built(h.out, node);
  await h.build('opz3-b', 'b');
  treesB = {};
  for (const node of NODES) treesB[node] = await built(h.out, node);
});
Kill.before(killing.before);
Kill.before.each(killing.ready);
Kill.after(async () => h?.cleanup());

// Where the kill lands: a node's step line, then a delay (its rsync copies an 8 MB file).
const POINTS: [string, number][][] = [
  [[`deploying ${NODES[0]}`, 0]],
  [[`deploying ${NODES[0]}`, 30]],
  [[`deploying ${NODES[1]}`, 15]],
  [[`deploying ${NODES[2]}`, 60]],
  // Killed, and killed again while the second run finishes the first one's work.
  [
    [`deploying ${NODES[1]}`, 10],
    [`deploying ${NODES[1]}`, 40],
  ],
];

for (const [i, kills] of POINTS.entries()) {
  Kill(
    `kill point ${i + 1} (${kills.map(([m, d]) => `${d} ms after "${m}"`).join(', then ')}): every file old or new, state kept; the next deploy finishes and rollback still works`,
    async () => {
      const root = path.join(h.tmp, `exports-${i}`);
      await rm(root, { recursive: true, force: true });
      await execa('cp', ['-a', '--', pristine, root]);
      for (const [marker, delay] of kills) {
        const { signal, stderr } = await killAt(h.tmp, ['deploy', ...h.flags(root, `kill-${i}`)], h.env, marker, delay);
        assert.is(signal, 'SIGKILL', `the deploy was killed, not finished:\n${stderr}`);
        for (const node of NODES) assertOldOrNew(await live(root, node), treesA[node]!, treesB[node]!, `killed, ${node}`);
        await assertState(root, 'killed');
      }
      const finished = await deploy(h.target(root, `kill-${i}`));
      assert.ok(finished.deployed.length > 0, 'the rerun had work left');
      for (const node of NODES) assertSameTree(await live(root, node), treesB[node]!, `finished, ${node}`);
      await assertState(root, 'finished');
      await rollback(h.target(root, `kill-${i}`));
      for (const node of NODES) assertSameTree(await live(root, node), treesA[node]!, `rolled back after the kills, ${node}`);
    },
  );
}

Kill('a rollback killed halfway leaves every file old or new, and the next rollback finishes it', async () => {
  const root = path.join(h.tmp, 'exports-rollback');
  await rm(root, { recursive: true, force: true });
  await execa('cp', ['-a', '--', pristine, root]);
  await deploy(h.target(root, 'kill-rollback'));
  const { signal, stderr } = await killAt(h.tmp, ['rollback', ...h.flags(root, 'kill-rollback')], h.env, `rolling back ${NODES[1]}`, 10);
  assert.is(signal, 'SIGKILL', `the rollback was killed, not finished:\n${stderr}`);
  for (const node of NODES) assertOldOrNew(await live(root, node), treesB[node]!, treesA[node]!, `rollback killed, ${node}`);
  await assertState(root, 'rollback killed');
  await rollback(h.target(root, 'kill-rollback'));
  for (const node of NODES) assertSameTree(await live(root, node), treesA[node]!, `rollback finished, ${node}`);
  await assertState(root, 'rollback finished');
});
