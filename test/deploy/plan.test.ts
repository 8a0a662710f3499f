/**
 * The pure deploy plan: what is added, changed, removed, kept and seeded;
 * a deploy cut short is finished under its own generation and its orphans
 * removed; a rollback needs the kept files; boot server files an earlier
 * deploy wrote are the only ones ever removed.
 */
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import type { Manifest, ManifestEntry } from '../../src/entries/manifest.js';
import {
  decideRollback,
  diffBootFiles,
  diffNode,
  parseOperation,
  planRollback,
  STATE_PATHS,
  statePaths,
  type NodeTarget,
  type Operation,
  type RollbackInput,
} from '../../src/deploy/plan.js';

const file = (h: string, m = 0o644): ManifestEntry => ({ t: 'f', m, u: 0, g: 0, s: h.length, h });
const dir: ManifestEntry = { t: 'd', m: 0o755, u: 0, g: 0 };
const STATE = statePaths();
const target = (over: Partial<NodeTarget> = {}): NodeTarget => ({ generation: 0, stateRoots: [], ...over });

const A: Manifest = { etc: dir, 'etc/hostname': file('a'), 'etc/old': file('o'), 'etc/same': file('s') };
const B: Manifest = { etc: dir, 'etc/hostname': file('b'), 'etc/new': file('n'), 'etc/same': file('s') };

const Plan = suite('deploy plan');

Plan('state paths: the built-in ones plus persist, without what lies below another', () => {
  assert.equal(statePaths(['/srv/data/', '/var/lib/mysql/extra', '/var/log']), [...STATE_PATHS, 'srv/data'].sort());
});

Plan('a first deploy adds everything and seeds the state the image has; a tree copied by hand is compared by content', () => {
  const first = diffNode('n', B, ['var/lib/mysql', 'var/log'], target({ existing: {} }), STATE, false);
  assert.equal(first.added.sort(), Object.keys(B).sort());
  assert.equal([first.changed, first.removed, first.kept], [[], [], []]);
  assert.equal(first.seeded, ['var/lib/mysql', 'var/log']);
  assert.is(first.generation, 1);
  // Copied by another tool: etc and etc/same are as built, etc/hostname differs in content, etc/new is missing.
  const copied = { etc: dir, 'etc/hostname': file('x'), 'etc/same': file('s') };
  const byHand = diffNode('n', B, [], target({ existing: copied, stateRoots: ['var/lib/mysql'] }), STATE, false);
  assert.equal([byHand.added, byHand.changed], [['etc/new'], ['etc/hostname']]);
  assert.match(byHand.reboot!, /2 paths in its root changed/);
  const same = diffNode('n', B, [], target({ existing: { ...B }, stateRoots: ['var/lib/mysql'] }), STATE, false);
  assert.equal([same.added, same.changed, same.reboot], [[], [], undefined], 'a copy equal to the build needs nothing, not even a reboot');
  const mode = diffNode('n', B, [], target({ existing: { ...B, 'etc/same': file('s', 0o600) } }), STATE, false);
  assert.equal(mode.changed, ['etc/same'], 'a mode that differs is a change');
  assert.equal(byHand.kept, ['var/lib/mysql']);
  assert.equal(byHand.seeded, [], 'state the target has is never seeded again');
});

Plan('a redeploy: added, changed (content or mode), removed; state kept; unchanged means no reboot', () => {
  const next = diffNode(
    'n',
    { ...B, 'etc/same': file('s', 0o600) },
    ['var/lib/mysql'],
    target({ generation: 3, current: A, stateRoots: ['var/lib/mysql'] }),
    STATE,
    false,
  );
  assert.equal([next.added, next.changed, next.removed], [['etc/new'], ['etc/hostname', 'etc/same'], ['etc/old']]);
  assert.equal([next.kept, next.seeded, next.generation], [['var/lib/mysql'], [], 4]);
  assert.match(next.reboot!, /4 paths in its root changed/);
  const same = diffNode('n', A, [], target({ generation: 3, current: A }), STATE, false);
  assert.is(same.reboot, undefined);
  assert.match(diffNode('n', A, [], target({ generation: 3, current: A }), STATE, true).reboot!, /PXE or boot files/);
});

Plan('files under state paths are never added, changed or removed', () => {
  const withState: Manifest = { ...A, 'var/lib/mysql/ibdata1': file('x'), 'etc/rancher/node/password': file('p') };
  const next = diffNode('n', B, [], target({ generation: 1, current: withState }), STATE, false);
  assert.not.ok(
    [...next.added, ...next.changed, ...next.removed].some((p) => p.startsWith('var/lib/mysql') || p.startsWith('etc/rancher/node')),
  );
});

Plan('a deploy cut short is finished under its generation, and what only it wrote is removed', () => {
  const pending = { generation: 4, manifest: { ...B, 'etc/abandoned': file('z') } };
  const next = diffNode('n', B, [], target({ generation: 3, current: A, pending }), STATE, false);
  assert.is(next.generation, 4);
  assert.equal(next.orphans, ['etc/abandoned']);
});

Plan('rollback: files back from undo, new ones removed, mode-only changes set in place; refused without the kept files', () => {
  const current: Manifest = { ...B, 'etc/same': file('s', 0o600) };
  const r = planRollback('n', target({ generation: 2, current, previous: A }), ['etc/hostname', 'etc/old'], STATE);
  assert.ok(!('problem' in r));
  if ('problem' in r) throw new Error(String(r.problem));
  assert.equal(r.restore.sort(), ['etc/hostname', 'etc/old']);
  assert.equal(
    r.attrs.map((a) => [a.path, a.m]),
    [['etc/same', 0o644]],
  );
  assert.equal(r.removed, ['etc/new']);
  assert.is(r.generation, 3);
  const missing = planRollback('n', target({ generation: 2, current, previous: A }), ['etc/hostname'], STATE);
  assert.equal(missing, { node: 'n', problem: "the previous generation's /etc/old were not kept" });
  assert.match(
    (planRollback('n', target({ generation: 1, current: A }), [], STATE) as { problem: string }).problem,
    /first one netroot deployed/,
  );
  assert.match((planRollback('n', target(), [], STATE) as { problem: string }).problem, /never deployed/);
});

Plan('boot server files: added, changed, unchanged; only files an earlier deploy wrote are removed', () => {
  const changes = diffBootFiles(
    [
      { what: 'tftp', path: '/srv/tftp/pxelinux.cfg/01-a', sha256: '1' },
      { what: 'exports', path: '/etc/exports.d/c.exports', sha256: '2' },
      { what: 'dnsmasq', path: '/etc/dnsmasq.d/c.conf', sha256: '3' },
    ],
    { '/etc/exports.d/c.exports': '2', '/etc/dnsmasq.d/c.conf': 'old', '/srv/tftp/pxelinux.cfg/01-gone': 'x' },
    [{ what: 'tftp', path: '/srv/tftp/pxelinux.cfg/01-gone', sha256: 'x' }],
  );
  assert.equal(
    changes.map((c) => [c.path, c.status]),
    [
      ['/srv/tftp/pxelinux.cfg/01-a', 'added'],
      ['/etc/exports.d/c.exports', 'unchanged'],
      ['/etc/dnsmasq.d/c.conf', 'changed'],
      ['/srv/tftp/pxelinux.cfg/01-gone', 'removed'],
    ],
  );
});

// What a node's target looks like after a deploy took it from generation g - 1 (manifest A) to g (manifest B).
const deployedTo = (g: number): NodeTarget & { undo: string[] } => ({
  ...target({ generation: g, current: B, ...(g > 1 ? { previous: A } : {}) }),
  undo: ['etc/hostname', 'etc/old'],
});
const untouchedAt = (g: number): NodeTarget & { undo: string[] } => ({ ...target({ generation: g, current: A }), undo: [] });
const op = (kind: Operation['kind'], n: number, nodes: Record<string, [number, number]>): Operation => ({
  kind,
  op: n,
  at: `t${n}`,
  nodes: Object.fromEntries(Object.entries(nodes).map(([node, [from, to]]) => [node, { from, to }])),
});

interface RollbackCase {
  name: string;
  input: Omit<RollbackInput, 'state' | 'now'>;
  /** 'nothing' or 'refuse' with the message's start, or the undo: which operation, and per node the generation it goes to. */
  expect: { nothing: RegExp } | { refuse: RegExp } | { undoing: number; op: number; nodes: Record<string, number>; resumed?: boolean };
}

const ROLLBACKS: RollbackCase[] = [
  {
    name: 'the last deploy changed only the servers: only they go back',
    input: { last: op('deploy', 2, { s1: [1, 2], s2: [1, 2] }), nodes: { s1: deployedTo(2), s2: deployedTo(2), agent: untouchedAt(1) } },
    expect: { undoing: 2, op: 3, nodes: { s1: 3, s2: 3 } },
  },
  {
    name: 'the last deploy changed only the agent: only it goes back, though the servers were deployed more often',
    input: { last: op('deploy', 3, { agent: [1, 2] }), nodes: { s1: deployedTo(2), agent: deployedTo(2) } },
    expect: { undoing: 3, op: 4, nodes: { agent: 3 } },
  },
  {
    name: 'the last operation was a rollback: rolling back again redoes the deploy it undid',
    input: { last: op('rollback', 3, { s1: [2, 3] }), nodes: { s1: deployedTo(3) } },
    expect: { undoing: 3, op: 4, nodes: { s1: 4 } },
  },
  {
    name: 'a deploy that changed only boot server files: no node goes back, the files do',
    input: { last: op('deploy', 2, {}), nodes: {} },
    expect: { undoing: 2, op: 3, nodes: {} },
  },
  { name: 'nothing recorded: nothing to undo', input: { nodes: {} }, expect: { nothing: /no deploy is recorded/ } },
  {
    name: 'the first deploy cannot be undone: netroot never removes a root',
    input: { last: op('deploy', 1, { s1: [0, 1] }), nodes: { s1: deployedTo(1) } },
    expect: { refuse: /^s1: generation 1 is the first one netroot deployed there/ },
  },
  {
    name: 'a node changed since the last deploy (by hand, or another tool): refused, all nodes or none',
    input: { last: op('deploy', 2, { s1: [1, 2], s2: [1, 2] }), nodes: { s1: deployedTo(2), s2: deployedTo(3) } },
    expect: { refuse: /^s2: the last deploy left it at generation 2, but it is at 3 now/ },
  },
  {
    name: 'a deploy cut short: refused until it is finished',
    input: { last: op('deploy', 2, { s1: [1, 2] }), unfinished: op('deploy', 3, { s1: [2, 3] }), nodes: { s1: deployedTo(2) } },
    expect: { refuse: /^a deploy was cut short here; run deploy again/ },
  },
  {
    name: 'a rollback cut short: the nodes it finished are left, the one it was writing is finished, the others done',
    input: {
      last: op('deploy', 2, { s1: [1, 2], s2: [1, 2], s3: [1, 2] }),
      unfinished: op('rollback', 3, { s1: [2, 3], s2: [2, 3], s3: [2, 3] }),
      nodes: {
        s1: { ...deployedTo(3), current: A },
        s2: { ...deployedTo(2), pending: { generation: 3, manifest: A } },
        s3: deployedTo(2),
      },
    },
    expect: { undoing: 2, op: 3, nodes: { s2: 3, s3: 3 }, resumed: true },
  },
];

for (const c of ROLLBACKS)
  Plan(`rollback decision: ${c.name}`, () => {
    const d = decideRollback({ ...c.input, state: STATE, now: 'now' });
    if ('nothing' in c.expect) {
      assert.is(d.action, 'nothing');
      assert.match((d as { reason: string }).reason, c.expect.nothing);
    } else if ('refuse' in c.expect) {
      assert.is(d.action, 'refuse', JSON.stringify(d));
      assert.match((d as { problems: string[] }).problems.join('\n'), c.expect.refuse);
    } else {
      if (d.action !== 'undo') throw new Error(`expected an undo, got ${JSON.stringify(d)}`);
      assert.is(d.undoing.op, c.expect.undoing, 'the operation undone');
      assert.is(d.operation.op, c.expect.op, "the rollback's own number");
      assert.is(d.operation.kind, 'rollback');
      assert.equal(
        Object.fromEntries(d.nodes.map((n) => [n.node, n.generation])),
        c.expect.nodes,
        'nodes rolled back, to which generation',
      );
      assert.is(d.resumed, c.expect.resumed ?? false);
      if (!d.resumed)
        assert.equal(Object.keys(d.operation.nodes), Object.keys(c.expect.nodes), 'the rollback records the nodes it changes');
    }
  });

Plan('operations read back from the target: anything but a well-formed one is rejected', () => {
  assert.equal(parseOperation(op('deploy', 2, { s1: [1, 2] })), op('deploy', 2, { s1: [1, 2] }));
  for (const bad of [
    null,
    [],
    'x',
    { ...op('deploy', 2, {}), kind: 'build' },
    { ...op('deploy', 0, {}) },
    { kind: 'deploy', op: 1, at: 'x', nodes: { s1: { from: 1 } } },
  ])
    assert.is(parseOperation(bad), undefined, JSON.stringify(bad));
});
