/**
 * A deploy onto node trees that another tool copied (cp -a, an earlier
 * rsync): netroot never deployed there and has no record of them, so it
 * reads what the trees hold and compares contents. Files as built are
 * neither changed nor rewritten; only what differs is listed, and a node
 * whose copy equals the build needs no reboot. On a local export root and
 * over ssh.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { deploy, planDeploy } from '../../src/deploy/index.js';
import { isRoot } from '../support/rootfs.js';
import { startSshd, sshdMissing, type Sshd } from '../support/sshd.js';
import { opz3With } from '../profile/helpers.js';
import { NODES } from './support.js';
import { places, type Places } from './places.js';

let w: Places;
let sshd: Sshd | undefined;

const Copied = suite('deploy onto trees another tool copied');

Copied.before(async () => {
  w = await places('netroot-copied-');
  await w.write('opz3', opz3With());
  await w.build('opz3');
  if (isRoot && !(await sshdMissing())) sshd = await startSshd(path.join(w.tmp, 'sshd'));
});
Copied.after(async () => {
  await sshd?.stop();
  await w?.cleanup();
});

for (const remote of [false, true]) {
  const where = remote ? 'over ssh' : 'on a local export root';
  const needs = remote ? () => (sshd ? undefined : 'the ssh case needs root, sshd, ssh and rsync') : () => undefined;
  Copied(`${where}: only what differs is a change; an equal copy is unchanged`, async () => {
    const missing = needs();
    if (missing) throw new Error(missing);
    const { root, options } = w.place(`copied-${remote}`, remote ? sshd!.ssh : undefined);
    const built = path.join(w.tmp, 'out-opz3/opz3/nodes');
    // GNU cp -a, as a person would copy them: owners, modes, links and times kept.
    await mkdir(root, { recursive: true });
    for (const node of NODES) execFileSync('cp', ['-a', '--', path.join(built, node), path.join(root, node)], { timeout: 60_000 });
    // What another tool (or a person) left different: one file's content on the first node, one file missing on the second.
    const [edited, gone] = [NODES[0]!, NODES[1]!];
    await writeFile(path.join(root, edited, 'etc/hostname'), 'someone-else\n');
    await rm(path.join(root, gone, 'etc/hosts'));

    const plan = await planDeploy(options('opz3'));
    const by = Object.fromEntries(plan.nodes.map((n) => [n.node, n]));
    assert.equal([by[edited]!.added, by[edited]!.changed], [[], ['etc/hostname']], `${edited}: the edited file alone`);
    assert.equal([by[gone]!.added, by[gone]!.changed], [['etc/hosts'], []], `${gone}: the missing file alone`);
    for (const node of NODES.slice(2)) {
      assert.equal([by[node]!.added, by[node]!.changed, by[node]!.removed], [[], [], []], `${node}: a copy equal to the build`);
      // The boot server's files are new to this test's boot server: they alone are a reason to reboot.
      assert.is(by[node]!.reboot, 'its PXE or boot files changed', `${node}: nothing in its root to reboot for`);
    }
    assert.ok(by[edited]!.reboot, 'a node whose files changed needs a reboot');

    const result = await deploy(options('opz3'));
    assert.equal(
      result.nodes.map((n) => n.changed.length + n.added.length),
      [1, 1, 0, 0],
    );
    assert.is((await readFile(path.join(root, edited, 'etc/hostname'), 'utf8')).trim(), edited);
    assert.ok((await readFile(path.join(root, gone, 'etc/hosts'), 'utf8')).length > 0);
    // Recorded now: the next plan reads the record, not the trees, and has nothing to do.
    const again = await planDeploy(options('opz3'));
    assert.equal(
      again.nodes.map((n) => n.changed.length + n.added.length + n.removed.length),
      [0, 0, 0, 0],
    );
  });
}
