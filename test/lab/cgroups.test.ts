/**
 * Every node's systemd-nspawn starts in a cgroup of its own (src/lab/cgroups.ts): the hierarchies
 * it must be placed in on hybrid, unified and legacy hosts, and a process really moved there.
 */
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { labHierarchies, NodeCgroup, trackingHierarchies } from '../../src/lab/cgroups.js';
import { isRoot } from '../../src/privileges.js';
import { requires } from '../support/requires.js';
import { test } from '../support/test.js';

const HYBRID_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

test('a hybrid host: the node cgroups go in the unified and the named systemd hierarchy, not the controllers', () => {
  const own = ['9:name=systemd:/', '4:memory:/process_api/x', '0::/'].join('\n');
  assert.equal(trackingHierarchies(HYBRID_MOUNTS, own), [
    { name: 'name=systemd', cgroup: '/', dir: '/sys/fs/cgroup/systemd' },
    { name: 'cgroup2', cgroup: '/', dir: '/sys/fs/cgroup/unified' },
  ]);
});

test('a unified host: one hierarchy, the lab under its session', () => {
  const mounts = '30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate';
  assert.equal(trackingHierarchies(mounts, '0::/user.slice/user-0.slice/session-3.scope'), [
    { name: 'cgroup2', cgroup: '/user.slice/user-0.slice/session-3.scope', dir: '/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope' },
  ]);
});

test("a mount of a part of the hierarchy (a container's view) is read relative to its root", () => {
  const mounts = '30 23 0:27 /ci/job /sys/fs/cgroup rw - cgroup2 cgroup2 rw';
  assert.equal(trackingHierarchies(mounts, '0::/ci/job/lab'), [{ name: 'cgroup2', cgroup: '/ci/job/lab', dir: '/sys/fs/cgroup/lab' }]);
  assert.equal(trackingHierarchies(mounts, '0::/elsewhere'), [], 'a cgroup outside the mount is not there');
});

test("a process is in a node's cgroup only if it is under it in every tracking hierarchy", () => {
  const node = new NodeCgroup(trackingHierarchies(HYBRID_MOUNTS, '9:name=systemd:/\n0::/'), 'nrl7-n0');
  assert.ok(node.holds('9:name=systemd:/nrl7-n0/payload/init.scope\n0::/nrl7-n0/payload/init.scope'));
  // What every node's systemd said before: the same /payload for all of them.
  assert.not.ok(node.holds('9:name=systemd:/payload/init.scope\n0::/payload/init.scope'));
  assert.not.ok(node.holds('9:name=systemd:/nrl7-n0/payload/init.scope\n0::/payload/init.scope'));
  assert.not.ok(node.holds('9:name=systemd:/nrl7-n00/payload\n0::/nrl7-n00/payload'), 'another node whose name starts alike');
});

requires(isRoot(), 'moving a process between cgroups needs root')(
  'a wrapped command runs in the node cgroup, which is removed after it',
  async () => {
    const node = new NodeCgroup(await labHierarchies(), `nrl${process.pid}-test`);
    await node.create();
    try {
      const [command, args] = node.wrap('cat', ['/proc/self/cgroup']);
      const result = await execa(command, args, { timeout: 10_000 });
      assert.ok(node.holds(result.stdout), `cat ran in ${node.dirs.join(', ')}: ${result.stdout}`);
      const outside = await execa('cat', ['/proc/self/cgroup'], { timeout: 10_000 });
      assert.not.ok(node.holds(outside.stdout), 'and a command not wrapped does not');
    } finally {
      assert.ok(await node.remove(5_000), 'the empty cgroup is removed');
    }
    for (const dir of node.dirs) assert.not.ok((await execa('test', ['-d', dir], { reject: false })).exitCode === 0, `${dir} is gone`);
  },
);
