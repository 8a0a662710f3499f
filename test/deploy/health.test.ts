/**
 * The probe that `status` and `rollout` run on each node: shellcheck accepts
 * it, and run here (a machine with none of the cluster's units) it answers
 * every line the reading needs, with a boot time in the past and units that
 * are not active; a node that does not answer is a reading that says why.
 */
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { PROBE, readNode, type NodeAccess } from '../../src/deploy/health.js';
import type { ClusterNode } from '../../src/profile/resolve.js';
import { hasProgram } from '../support/peers.js';
import { requires } from '../support/requires.js';
import { test } from '../support/test.js';

const node = { name: 'n1', ip: '127.0.0.1' } as ClusterNode;

requires(hasProgram('shellcheck'), 'shellcheck is not installed (apt-get install shellcheck)')('shellcheck accepts the probe', async () => {
  const r = await execa('shellcheck', ['--shell=sh', '--severity=style', '-'], { input: PROBE, reject: false, timeout: 30_000 });
  assert.is(r.exitCode, 0, r.stdout);
});

test('run here: a boot time in the past, every unit named, the VIP found on an interface or not', async () => {
  const local: NodeAccess = {
    run: async (_node, script, args, timeoutMs) => {
      const r = await execa('sh', ['-c', script, 'sh', ...args], { reject: false, timeout: timeoutMs });
      return { ok: r.exitCode === 0, stdout: r.stdout, stderr: r.stderr };
    },
    reboot: () => Promise.reject(new Error('not here')),
  };
  const held = await readNode(local, node, '127.0.0.1');
  assert.ok(held.answered, held.error);
  assert.ok(held.bootedAt! > 1_600_000_000 && held.bootedAt! <= Date.now() / 1000, `booted at ${held.bootedAt}`);
  assert.equal(Object.keys(held.units).sort(), ['k3s', 'k3s-agent', 'keepalived', 'mariadb']);
  assert.ok(held.holdsVip, '127.0.0.1 is on lo');
  const elsewhere = await readNode(local, node, '192.0.2.254');
  assert.not.ok(elsewhere.holdsVip, 'a documentation address is on no interface here');
});

test('a node that does not answer: a reading that says so and why', async () => {
  const refused: NodeAccess = {
    run: async () => ({ ok: false, stdout: '', stderr: 'ssh: connect to host 192.0.2.9 port 22: Connection refused\n' }),
    reboot: () => Promise.resolve(),
  };
  assert.equal(await readNode(refused, node, '192.0.2.1'), {
    node: 'n1',
    answered: false,
    error: 'ssh: connect to host 192.0.2.9 port 22: Connection refused',
    units: {},
    holdsVip: false,
  });
  const throwing: NodeAccess = { run: () => Promise.reject(new Error('timed out')), reboot: () => Promise.resolve() };
  assert.is((await readNode(throwing, node, '192.0.2.1')).error, 'timed out');
});
