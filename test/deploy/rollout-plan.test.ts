/**
 * The pure half of `status` and `rollout`, as tables of cases against the
 * real functions: which generation a node booted and whether a reboot is
 * pending, from the export root's commits and the node's boot time; whether
 * the cluster is healthy; the order of reboots; and, at every turn of a
 * rollout, what it does next given the nodes' readings.
 */
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import {
  clusterProblems,
  decideRollout,
  generationsOf,
  parseHistory,
  rolloutBounds,
  rolloutOrder,
  type ClusterShape,
  type Commit,
  type NodeGenerations,
  type NodeReading,
  type RolloutState,
  type RolloutStep,
} from '../../src/deploy/rollout-plan.js';
import { parseProbe } from '../../src/deploy/health.js';

const shape: ClusterShape = { servers: ['s1', 's2', 's3'], agents: ['a1'] };

/** A healthy node as the probe reads it, booted at `bootedAt`. */
function healthy(node: string, bootedAt = 1000, over: Partial<NodeReading> = {}): NodeReading {
  const server = shape.servers.includes(node);
  return {
    node,
    answered: true,
    bootedAt,
    system: 'running',
    units: server
      ? { mariadb: 'active', keepalived: 'active', k3s: 'active', 'k3s-agent': 'inactive' }
      : { mariadb: 'inactive', keepalived: 'inactive', k3s: 'inactive', 'k3s-agent': 'active' },
    ...(server ? { galera: { state: 'Synced', status: 'Primary', size: 3, position: 42, uuid: 'u1' } } : {}),
    holdsVip: node === 's1',
    ...over,
  };
}
const cluster = (over: Record<string, Partial<NodeReading>> = {}, bootedAt: Record<string, number> = {}): NodeReading[] =>
  [...shape.servers, ...shape.agents].map((n) => healthy(n, bootedAt[n] ?? 1000, over[n]));
const down = (_node: string): Partial<NodeReading> => ({ answered: false, error: 'Connection refused', units: {}, holdsVip: false });

const Plan = suite('rollout and status decisions');

Plan('history: lines of generation, epoch and reboot|same; anything else skipped', () => {
  assert.equal(parseHistory('1 100 same\n2 200 reboot\ngarbage\n3 30'), [
    { generation: 1, at: 100, reboot: false },
    { generation: 2, at: 200, reboot: true },
  ]);
});

const c = (generation: number, at: number, reboot = true): Commit => ({ generation, at, reboot });
const GENERATIONS: { name: string; history: Commit[]; deployed: number; bootedAt: number | undefined; want: NodeGenerations }[] = [
  { name: 'never deployed', history: [], deployed: 0, bootedAt: 500, want: { deployed: 0, booted: 0, rebootPending: false } },
  {
    name: 'booted after the last commit: runs it',
    history: [c(1, 100), c(2, 200)],
    deployed: 2,
    bootedAt: 300,
    want: { deployed: 2, booted: 2, rebootPending: false },
  },
  {
    name: 'a commit that needs a reboot came after the boot: pending',
    history: [c(1, 100), c(2, 200)],
    deployed: 2,
    bootedAt: 150,
    want: { deployed: 2, booted: 1, rebootPending: true },
  },
  {
    name: 'booted before netroot first deployed, which changed nothing it runs (a copied tree): runs generation 1',
    history: [c(1, 100, false)],
    deployed: 1,
    bootedAt: 50,
    want: { deployed: 1, booted: 1, rebootPending: false },
  },
  {
    name: 'booted before netroot first deployed, which changed files: runs what was there (0), reboot pending',
    history: [c(1, 100)],
    deployed: 1,
    bootedAt: 50,
    want: { deployed: 1, booted: 0, rebootPending: true },
  },
  {
    name: 'a commit without a reboot after a pending one does not hide it',
    history: [c(1, 100), c(2, 200), c(3, 300, false)],
    deployed: 3,
    bootedAt: 150,
    want: { deployed: 3, booted: 1, rebootPending: true },
  },
  {
    name: 'a commit above the live generation (cut short) is not counted',
    history: [c(1, 100), c(2, 200)],
    deployed: 1,
    bootedAt: 150,
    want: { deployed: 1, booted: 1, rebootPending: false },
  },
  {
    name: 'a generation committed again (a deploy resumed) counts by its last commit',
    history: [c(1, 100), c(2, 120), c(2, 200)],
    deployed: 2,
    bootedAt: 150,
    want: { deployed: 2, booted: 1, rebootPending: true },
  },
  {
    name: 'history begins after the boot with a later generation: booted unknown, reboot pending',
    history: [c(7, 200)],
    deployed: 7,
    bootedAt: 150,
    want: { deployed: 7, rebootPending: true },
  },
  {
    name: 'deployed before history was kept: booted unknown, nothing said pending',
    history: [],
    deployed: 4,
    bootedAt: 150,
    want: { deployed: 4, rebootPending: false },
  },
  {
    name: 'the node does not answer: only what is deployed',
    history: [c(1, 100)],
    deployed: 1,
    bootedAt: undefined,
    want: { deployed: 1, rebootPending: false },
  },
];
for (const t of GENERATIONS) Plan(`generations: ${t.name}`, () => assert.equal(generationsOf(t.history, t.deployed, t.bootedAt), t.want));

const HEALTH: { name: string; readings: NodeReading[]; want: string[] }[] = [
  { name: 'all well', readings: cluster(), want: [] },
  { name: 'a server down', readings: cluster({ s2: down('s2') }), want: ['s2 does not answer (Connection refused)'] },
  {
    name: "a server's MariaDB not answering",
    readings: cluster({ s2: { galera: undefined, units: { mariadb: 'failed', keepalived: 'active', k3s: 'active' } } }) as NodeReading[],
    want: ['s2: MariaDB does not answer (mariadb failed)'],
  },
  {
    name: 'a joiner, and a component without all servers',
    readings: cluster({
      s2: { galera: { state: 'Joiner', status: 'Primary', size: 3 } },
      s3: { galera: { state: 'Synced', status: 'Primary', size: 2 } },
    }),
    want: [
      's2: Galera Joiner, Primary, 3 of 3 servers (wanted Synced, Primary, 3 of 3)',
      's3: Galera Synced, Primary, 2 of 3 servers (wanted Synced, Primary, 3 of 3)',
    ],
  },
  {
    name: 'two clusters of three (a stale one bootstrapped)',
    readings: cluster({ s3: { galera: { state: 'Synced', status: 'Primary', size: 3, uuid: 'u2' } } }),
    want: ['the servers are in 2 different Galera clusters (cluster state UUIDs u1, u2)'],
  },
  { name: 'no VIP holder', readings: cluster({ s1: { holdsVip: false } }), want: ['no server holds the VIP'] },
  { name: 'two VIP holders', readings: cluster({ s2: { holdsVip: true } }), want: ['2 servers hold the VIP at once (s1, s2)'] },
  { name: 'the VIP on an agent', readings: cluster({ a1: { holdsVip: true } }), want: ['the VIP is on a1, which is an agent'] },
  {
    name: 'k3s not active on the agent',
    readings: cluster({ a1: { units: { 'k3s-agent': 'activating' } } }),
    want: ['a1: k3s-agent is activating'],
  },
  { name: 'the agent down', readings: cluster({ a1: down('a1') }), want: ['a1 does not answer (Connection refused)'] },
];
for (const t of HEALTH)
  Plan(`health: ${t.name}`, () => assert.equal(clusterProblems(shape, t.readings, [...shape.servers, ...shape.agents]), t.want));

Plan('order: servers in profile order, then agents; only those with a reboot pending', () => {
  assert.equal(rolloutOrder(shape, ['a1', 's3', 's1']), ['s1', 's3', 'a1']);
  assert.equal(rolloutOrder(shape, []), []);
});

Plan('bounds grow with the servers and the keepalived intervals', () => {
  const b = rolloutBounds({ keepalived: { advertInterval: 1 } }, 3);
  assert.equal(b, { serverSeconds: 180 + 120 + 4 + 5, agentSeconds: 240 });
  assert.ok(rolloutBounds({ keepalived: { advertInterval: 3, checkInterval: 5 } }, 5).serverSeconds > b.serverSeconds);
});

const state = (over: Partial<RolloutState>): RolloutState => ({ shape, queue: [], readings: cluster(), now: 2000, ...over });
const waitingFor = (node: string) => ({ node, rebootedAt: 1500, deadline: 1800 });
const ROLLOUT: { name: string; state: RolloutState; want: RolloutStep }[] = [
  { name: 'nothing pending', state: state({}), want: { action: 'done' } },
  { name: 'healthy cluster: reboot the first', state: state({ queue: ['s1', 'a1'] }), want: { action: 'reboot', node: 's1' } },
  {
    name: 'unhealthy before the first reboot: stop, reboot nothing',
    state: state({ queue: ['s1', 'a1'], readings: cluster({ s3: down('s3') }) }),
    want: { action: 'stop', node: 's1', rebooted: false, problems: ['s3 does not answer (Connection refused)'] },
  },
  {
    name: 'the rebooted node has not gone down yet: wait',
    state: state({ queue: ['s2'], waiting: waitingFor('s1'), now: 1510 }),
    want: { action: 'wait', node: 's1', problems: ['s1 has not rebooted yet'] },
  },
  {
    name: 'the rebooted node is down: wait (its absence is said once)',
    state: state({ queue: ['s2'], waiting: waitingFor('s1'), now: 1520, readings: cluster({ s1: down('s1') }) }),
    want: {
      action: 'wait',
      node: 's1',
      problems: ['s1 is not back (Connection refused)', 'no server holds the VIP'],
    },
  },
  {
    name: 'back, but still joining Galera: wait',
    state: state({
      queue: ['s2'],
      waiting: waitingFor('s1'),
      now: 1600,
      readings: cluster(
        { s1: { galera: { state: 'Joined', status: 'Primary', size: 3, uuid: 'u1' }, holdsVip: false }, s2: { holdsVip: true } },
        { s1: 1530 },
      ),
    }),
    want: { action: 'wait', node: 's1', problems: ['s1: Galera Joined, Primary, 3 of 3 servers (wanted Synced, Primary, 3 of 3)'] },
  },
  {
    name: 'back and healthy: reboot the next',
    state: state({ queue: ['s2', 'a1'], waiting: waitingFor('s1'), now: 1600, readings: cluster({}, { s1: 1530 }) }),
    want: { action: 'reboot', node: 's2' },
  },
  {
    name: 'booted within the clocks slack of the reboot: counts as rebooted',
    state: state({ queue: [], waiting: waitingFor('a1'), now: 1600, readings: cluster({}, { a1: 1499 }) }),
    want: { action: 'done' },
  },
  {
    name: 'back and healthy, nothing left: done',
    state: state({ queue: [], waiting: waitingFor('a1'), now: 1600, readings: cluster({}, { a1: 1530 }) }),
    want: { action: 'done' },
  },
  {
    name: 'back, and its MariaDB failed (systemd gave up): stop at once, before the deadline',
    state: state({
      queue: ['s3', 'a1'],
      waiting: waitingFor('s2'),
      now: 1600,
      readings: cluster({ s2: { galera: undefined, units: { mariadb: 'failed', keepalived: 'active', k3s: 'activating' } } }, { s2: 1530 }),
    }),
    want: {
      action: 'stop',
      node: 's2',
      rebooted: true,
      problems: ['s2: mariadb failed', 's2: MariaDB does not answer (mariadb failed)', 's2: k3s is activating'],
    },
  },
  {
    name: "another server's MariaDB killed while the node was down: stop at the rebooted node, naming the other",
    state: state({
      queue: ['s3'],
      waiting: waitingFor('s2'),
      now: 1600,
      readings: cluster({ s1: { galera: undefined, units: { mariadb: 'failed', keepalived: 'active', k3s: 'active' } } }, { s2: 1530 }),
    }),
    want: { action: 'stop', node: 's2', rebooted: true, problems: ['s1: mariadb failed', 's1: MariaDB does not answer (mariadb failed)'] },
  },
  {
    name: 'back, boot finished, and its MariaDB inactive (nothing will start it): stop at once',
    state: state({
      queue: ['s3'],
      waiting: waitingFor('s2'),
      now: 1600,
      readings: cluster(
        { s2: { system: 'degraded', galera: undefined, units: { mariadb: 'inactive', keepalived: 'active', k3s: 'active' } } },
        { s2: 1530 },
      ),
    }),
    want: {
      action: 'stop',
      node: 's2',
      rebooted: true,
      problems: ['s2: mariadb inactive though its boot finished (degraded)', 's2: MariaDB does not answer (mariadb inactive)'],
    },
  },
  {
    name: 'back, still booting, MariaDB not started yet (inactive): wait',
    state: state({
      queue: ['s3'],
      waiting: waitingFor('s2'),
      now: 1600,
      readings: cluster(
        { s2: { system: 'starting', galera: undefined, units: { mariadb: 'inactive', keepalived: 'active', k3s: 'activating' } } },
        { s2: 1530 },
      ),
    }),
    want: { action: 'wait', node: 's2', problems: ['s2: MariaDB does not answer (mariadb inactive)', 's2: k3s is activating'] },
  },
  {
    name: 'not back by the deadline: stop, with what was last seen',
    state: state({ queue: ['s3', 'a1'], waiting: waitingFor('s2'), now: 1800, readings: cluster({ s2: down('s2') }) }),
    want: { action: 'stop', node: 's2', rebooted: true, problems: ['s2 is not back (Connection refused)'] },
  },
  {
    name: 'a unit restarting (not failed) before the deadline: wait',
    state: state({
      queue: ['s3'],
      waiting: waitingFor('s2'),
      now: 1700,
      readings: cluster({ s2: { galera: undefined, units: { mariadb: 'activating', keepalived: 'active', k3s: 'active' } } }, { s2: 1530 }),
    }),
    want: { action: 'wait', node: 's2', problems: ['s2: MariaDB does not answer (mariadb activating)'] },
  },
];
for (const t of ROLLOUT) Plan(`rollout: ${t.name}`, () => assert.equal(decideRollout(t.state), t.want));

Plan('the probe: its lines read back; a node without MariaDB has no Galera', () => {
  const server = parseProbe(
    's1',
    [
      'booted 1700000123',
      'system degraded',
      'unit mariadb active',
      'unit keepalived active',
      'unit k3s active',
      'unit k3s-agent inactive',
      'galera wsrep_cluster_size\t3',
      'galera wsrep_cluster_state_uuid\t0b6a1f1e-0000-11ee-0000-000000000000',
      'galera wsrep_cluster_status\tPrimary',
      'galera wsrep_last_committed\t1234',
      'galera wsrep_local_state_comment\tSynced',
      'vip held',
    ].join('\n'),
  );
  assert.equal(server, {
    node: 's1',
    answered: true,
    bootedAt: 1700000123,
    system: 'degraded',
    units: { mariadb: 'active', keepalived: 'active', k3s: 'active', 'k3s-agent': 'inactive' },
    galera: { state: 'Synced', status: 'Primary', size: 3, position: 1234, uuid: '0b6a1f1e-0000-11ee-0000-000000000000' },
    holdsVip: true,
  });
  const agent = parseProbe('a1', 'booted 5\nsystem running\nunit k3s-agent active\nvip no\n');
  assert.equal(agent, { node: 'a1', answered: true, bootedAt: 5, system: 'running', units: { 'k3s-agent': 'active' }, holdsVip: false });
});
