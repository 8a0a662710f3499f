/**
 * `status` and `rollout` against a real export root (deploys of builds made
 * without a base) and simulated nodes: a NodeAccess that answers the probe
 * from a small model of each node (when it booted, its units, Galera, the
 * VIP) and reboots it by moving its boot time. The export root's history
 * decides what is pending; rollout reboots those nodes, servers first, and
 * stops at the first that does not come back healthy, leaving the rest.
 */
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { deploy } from '../../src/deploy/index.js';
import type { NodeAccess } from '../../src/deploy/health.js';
import { rollout, status, type RolloutOptions } from '../../src/deploy/rollout.js';
import { RolloutStoppedError } from '../../src/errors.js';
import { formatStatus } from '../../src/deploy/report.js';
import { opz3With } from '../profile/helpers.js';
import { NODES } from './support.js';
import { places, type Places } from './places.js';

const SERVERS = NODES.slice(0, 3);
const AGENT = NODES[3]!;

interface SimNode {
  bootedAt: number;
  up: boolean;
  mariadb: string;
  vip: boolean;
}

/** Nodes that answer the probe from their model; a reboot boots them again now (after `onReboot`, if any). */
function simulated(onReboot?: (node: string, nodes: Map<string, SimNode>) => void): {
  access: NodeAccess;
  nodes: Map<string, SimNode>;
  reboots: string[];
} {
  const nodes = new Map(NODES.map((n) => [n, { bootedAt: 1, up: true, mariadb: 'active', vip: n === SERVERS[0] }]));
  const reboots: string[] = [];
  const access: NodeAccess = {
    async run(node) {
      const s = nodes.get(node.name)!;
      if (!s.up) return { ok: false, stdout: '', stderr: 'No route to host' };
      const server = SERVERS.includes(node.name);
      const lines = [
        `booted ${s.bootedAt}`,
        'system running',
        `unit mariadb ${server ? s.mariadb : 'inactive'}`,
        `unit keepalived ${server ? 'active' : 'inactive'}`,
        `unit k3s ${server ? 'active' : 'inactive'}`,
        `unit k3s-agent ${server ? 'inactive' : 'active'}`,
        ...(server && s.mariadb === 'active'
          ? ['Synced', 'Primary'].map((v, i) => `galera ${['wsrep_local_state_comment', 'wsrep_cluster_status'][i]}\t${v}`)
          : []),
        ...(server && s.mariadb === 'active' ? ['galera wsrep_cluster_size\t3', 'galera wsrep_last_committed\t77'] : []),
        `vip ${s.vip ? 'held' : 'no'}`,
      ];
      return { ok: true, stdout: lines.join('\n'), stderr: '' };
    },
    async reboot(node) {
      reboots.push(node.name);
      const s = nodes.get(node.name)!;
      s.bootedAt = Math.ceil(Date.now() / 1000);
      onReboot?.(node.name, nodes);
    },
  };
  return { access, nodes, reboots };
}

let w: Places;
const Rollout = suite('status and rollout');

Rollout.before(async () => {
  w = await places('netroot-rollout-');
  await w.write('opz3', opz3With());
  // A server-only change: the agent is not deployed again, so only the servers have a reboot pending.
  await w.write('servers', opz3With(['advertInterval: 1', 'advertInterval: 3']));
  await w.build('opz3');
  await w.build('servers');
});
Rollout.after(() => w?.cleanup());

/**
 * The cluster deployed, the nodes booted after it, then the server-only change deployed: the servers
 * have a reboot pending, the agent (not deployed again) none. Commits are stamped in whole seconds: a second apart.
 */
async function deployedTwice(label: string, sim: { nodes: Map<string, SimNode> }): Promise<(access: NodeAccess) => RolloutOptions> {
  const place = w.place(label);
  const second = (): Promise<void> => new Promise((r) => setTimeout(r, 1100));
  await deploy(place.options('opz3'));
  await second();
  for (const n of sim.nodes.values()) n.bootedAt = Math.floor(Date.now() / 1000);
  await second();
  await deploy(place.options('servers'));
  return (access) => ({ profile: w.profile('servers'), cwd: w.tmp, to: place.root, access, pollMs: 20 });
}

Rollout('status: generations deployed and booted, what is pending, Galera, the VIP and k3s, per node', async () => {
  const sim = simulated();
  const options = await deployedTwice('status', sim);
  sim.nodes.get(AGENT)!.up = false;
  const s = await status(options(sim.access));
  assert.equal(s.vipHolders, [SERVERS[0]]);
  const by = Object.fromEntries(s.nodes.map((n) => [n.node, n]));
  for (const server of SERVERS) {
    assert.equal([by[server]!.deployed, by[server]!.booted, by[server]!.rebootPending], [2, 1, true], server);
    assert.equal([by[server]!.galera?.state, by[server]!.galera?.position, by[server]!.k3s], ['Synced', 77, 'active'], server);
  }
  assert.equal(
    [by[AGENT]!.deployed, by[AGENT]!.booted, by[AGENT]!.answered, by[AGENT]!.error],
    [1, undefined, false, 'No route to host'],
    'the agent does not answer: a row that says so',
  );
  // The table: a header, then one row a node in profile order, the silent one saying so.
  const table = formatStatus(s).split('\n');
  assert.match(table[0]!, new RegExp(`VIP 192\\.0\\.2\\.50 held by ${SERVERS[0]}$`));
  assert.match(table[1]!, /^NODE +ROLE +DEPLOYED +BOOTED +REBOOT +MARIADB\/GALERA +POSITION +KEEPALIVED +VIP +K3S$/);
  assert.match(table[2]!, new RegExp(`^${SERVERS[0]} +server +2 +1 +pending +Synced, Primary 3 +77 +MASTER +held +active$`));
  assert.match(table[3]!, new RegExp(`^${SERVERS[1]} +server +2 +1 +pending +Synced, Primary 3 +77 +BACKUP +- +active$`));
  assert.match(table[5]!, new RegExp(`^${AGENT} +agent +1 +\\? +\\? +does not answer: No route to host$`));
});

Rollout('rollout: --dry-run gives the order; then the servers are rebooted one at a time, and nothing is pending after', async () => {
  const sim = simulated();
  const options = await deployedTwice('all', sim);
  const dry = await rollout({ ...options(sim.access), dryRun: true });
  assert.equal([dry.order, sim.reboots], [SERVERS, []], 'a dry run reboots nothing');
  const result = await rollout(options(sim.access));
  assert.equal(sim.reboots, SERVERS);
  assert.equal(
    result.rebooted.map((r) => r.node),
    SERVERS,
  );
  assert.ok(
    result.status.nodes.every((n) => !n.rebootPending && n.booted === n.deployed),
    JSON.stringify(result.status.nodes.map((n) => [n.node, n.deployed, n.booted, n.rebootPending])),
  );
  const again = await rollout(options(sim.access));
  assert.equal([again.order, sim.reboots.length], [[], 3], 'a second rollout has nothing to do');
});

Rollout("rollout: a server's MariaDB dies after its reboot: stops there, says why, leaves the rest alone", async () => {
  const sim = simulated((node, nodes) => {
    if (node === SERVERS[1]) nodes.get(node)!.mariadb = 'failed';
  });
  const options = await deployedTwice('stop', sim);
  try {
    await rollout(options(sim.access));
    assert.unreachable('rollout should have stopped');
  } catch (error) {
    if (!(error instanceof RolloutStoppedError)) throw error;
    assert.is(error.node, SERVERS[1]);
    assert.match(error.message, new RegExp(`rollout stopped at ${SERVERS[1]}: it did not come back healthy`));
    assert.match(error.message, /mariadb failed/);
    assert.match(error.message, new RegExp(`not rebooted: ${SERVERS[2]}`));
    assert.is(error.exitCode, 1);
  }
  assert.equal(sim.reboots, SERVERS.slice(0, 2), 'the third server is left alone');
  const s = await status(options(sim.access));
  assert.equal(
    s.nodes.map((n) => n.rebootPending),
    [false, false, true, false],
  );
});

Rollout('rollout: an unhealthy cluster before the first reboot: nothing is rebooted', async () => {
  const sim = simulated();
  const options = await deployedTwice('unhealthy', sim);
  sim.nodes.get(SERVERS[2]!)!.mariadb = 'activating';
  try {
    await rollout(options(sim.access));
    assert.unreachable('rollout should have refused');
  } catch (error) {
    if (!(error instanceof RolloutStoppedError)) throw error;
    assert.match(error.message, new RegExp(`rollout stopped at ${SERVERS[0]}: the cluster is not healthy, so it was not rebooted`));
    assert.match(error.message, new RegExp(`${SERVERS[2]}: MariaDB does not answer \\(mariadb activating\\)`));
  }
  assert.equal(sim.reboots, []);
});

Rollout('rollout: a node that does not answer: what needs a reboot is not known, so nothing is rebooted', async () => {
  const sim = simulated();
  const options = await deployedTwice('silent', sim);
  sim.nodes.get(AGENT)!.up = false;
  for (const dryRun of [true, false]) {
    try {
      await rollout({ ...options(sim.access), dryRun });
      assert.unreachable('rollout should have refused');
    } catch (error) {
      if (!(error instanceof RolloutStoppedError)) throw error;
      assert.match(error.message, new RegExp(`cannot tell which nodes need a reboot: ${AGENT} does not answer \\(No route to host\\)`));
    }
  }
  assert.equal(sim.reboots, []);
});
