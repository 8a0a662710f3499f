import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { decideBaseReading, decideRebuild, readPreviousOutput, type PreviousOutput, type Wanted } from '../../src/emit/rebuild.js';
import { prefixKey, type BuildState } from '../../src/emit/state.js';
import type { NodePlan } from '../../src/plan/plan.js';

const test = suite('emit/rebuild');

const TREE = { overlay: [['etc/hostname', 'file', '420', '0:0', 'abc'].join('\0')], removed: [] };

/** The previous build: nodes a and b, both formats, from base `base-1` as root, everything still on disk. */
function previous(change: (p: PreviousOutput) => void = () => {}): PreviousOutput {
  const state: BuildState = {
    version: 1,
    generator: 'netroot test',
    baseIdentity: 'base-1',
    arch: 'arm64',
    formats: ['tree', 'tar'],
    sourceDateEpoch: 0,
    nodes: {
      a: { key: 'key-a', artifacts: [{ name: 'a.tar.gz', sha256: '0', bytes: 1 }], tree: TREE },
      b: { key: 'key-b', artifacts: [{ name: 'b.tar.gz', sha256: '0', bytes: 1 }], tree: TREE },
    },
    bootFiles: ['tftp/Image'],
    bootSources: 'boards-1',
    privileged: true,
  };
  const p = { state, trees: new Set(['a', 'b']), artifacts: new Set(['a.tar.gz', 'b.tar.gz']), bootFiles: new Set(['tftp/Image']) };
  change(p);
  return p;
}

function wanted(change: Partial<Wanted> = {}): Wanted {
  return {
    formats: ['tree', 'tar'],
    baseIdentity: 'base-1',
    bootSources: 'boards-1',
    bootFiles: ['tftp/Image'],
    nodeKeys: new Map([
      ['a', 'key-a'],
      ['b', 'key-b'],
    ]),
    privileged: true,
    ...change,
  };
}

const node = (d: ReturnType<typeof decideRebuild>, name: string) => d.nodes.get(name);

test('nothing changed: every tree moved, every archive linked, the base is not read', () => {
  const d = decideRebuild(previous(), wanted());
  assert.equal(node(d, 'a'), { tree: 'move', artifacts: 'link', reused: true });
  assert.equal(node(d, 'b'), { tree: 'move', artifacts: 'link', reused: true });
  assert.ok(d.reuseEverything);
});

test('no previous build: every node rebuilt and packed', () => {
  const d = decideRebuild(undefined, wanted());
  assert.equal(node(d, 'a'), { tree: 'rebuild', artifacts: 'pack', reused: false });
  assert.not.ok(d.reuseEverything);
});

test("one node's files changed on the same base: its tree is revised and repacked, the other moved", () => {
  const d = decideRebuild(
    previous(),
    wanted({
      nodeKeys: new Map([
        ['a', 'key-a2'],
        ['b', 'key-b'],
      ]),
    }),
  );
  assert.equal(node(d, 'a'), { tree: 'revise', artifacts: 'pack', reused: false });
  assert.equal(node(d, 'b'), { tree: 'move', artifacts: 'link', reused: true });
  assert.not.ok(d.reuseEverything);
});

/** The previous build with a's archive and manifest recorded, its prefix made under `key`. */
const withPrefix = (key: string) =>
  previous((p) => {
    p.state.nodes.a!.artifacts = [
      { name: 'a.tar.gz', sha256: '0', bytes: 9, prefix: { bytes: 5, sha256: '1', key } },
      { name: 'a.manifest.json', sha256: '2', bytes: 3 },
    ];
    (p.artifacts as Set<string>).add('a.manifest.json');
  });
const changedA = (prefixA: string) =>
  wanted({
    nodeKeys: new Map([
      ['a', 'key-a2'],
      ['b', 'key-b'],
    ]),
    prefixKeys: new Map([
      ['a', prefixA],
      ['b', 'prefix-b'],
    ]),
  });

test('a node whose files changed but not which paths it writes: its archive is revised, not packed again', () => {
  const d = decideRebuild(withPrefix('prefix-a'), changedA('prefix-a'));
  assert.equal(node(d, 'a'), { tree: 'revise', artifacts: 'revise', reused: false });
  assert.equal(node(d, 'b'), { tree: 'move', artifacts: 'link', reused: true });
});

test('another prefix, an archive recorded without one, or one that is gone: packed again', () => {
  assert.is(node(decideRebuild(withPrefix('prefix-a'), changedA('prefix-a2')), 'a')?.artifacts, 'pack');
  assert.is(node(decideRebuild(previous(), changedA('prefix-a')), 'a')?.artifacts, 'pack');
  const gone = withPrefix('prefix-a');
  (gone.artifacts as Set<string>).delete('a.tar.gz');
  assert.is(node(decideRebuild(gone, changedA('prefix-a')), 'a')?.artifacts, 'pack');
  // Without prefix keys (a caller that does not know them), never revised.
  assert.is(node(decideRebuild(withPrefix('prefix-a'), wanted({ nodeKeys: changedA('x').nodeKeys })), 'a')?.artifacts, 'pack');
});

test('another base: every tree rebuilt, none revised', () => {
  const d = decideRebuild(
    previous(),
    wanted({
      baseIdentity: 'base-2',
      nodeKeys: new Map([
        ['a', 'key-a2'],
        ['b', 'key-b2'],
      ]),
    }),
  );
  assert.equal(node(d, 'a'), { tree: 'rebuild', artifacts: 'pack', reused: false });
  assert.equal(node(d, 'b'), { tree: 'rebuild', artifacts: 'pack', reused: false });
});

test('a tree made without root is never revised by a root build', () => {
  const d = decideRebuild(
    previous((p) => (p.state.privileged = false)),
    wanted({
      nodeKeys: new Map([
        ['a', 'key-a2'],
        ['b', 'key-b2'],
      ]),
    }),
  );
  assert.is(node(d, 'a')?.tree, 'rebuild');
});

test('a previous tree that is gone is rebuilt, and the node is not reused even with the same key', () => {
  const d = decideRebuild(
    previous((p) => (p.trees as Set<string>).delete('a')),
    wanted(),
  );
  assert.equal(node(d, 'a'), { tree: 'rebuild', artifacts: 'pack', reused: false });
  assert.not.ok(d.reuseEverything);
});

test('a tree with no record of its overlay cannot be moved or revised', () => {
  const d = decideRebuild(
    previous((p) => delete p.state.nodes.a!.tree),
    wanted(),
  );
  assert.equal(node(d, 'a'), { tree: 'rebuild', artifacts: 'pack', reused: false });
});

test('a missing archive repacks the node and its tree is revised, not moved', () => {
  const d = decideRebuild(
    previous((p) => (p.artifacts as Set<string>).delete('a.tar.gz')),
    wanted(),
  );
  assert.equal(node(d, 'a'), { tree: 'revise', artifacts: 'pack', reused: false });
});

test('a previous build without archives cannot lend them', () => {
  const d = decideRebuild(
    previous((p) => (p.state.nodes.a!.artifacts = [])),
    wanted(),
  );
  assert.is(node(d, 'a')?.artifacts, 'pack');
});

test('only the formats asked for are decided', () => {
  const d = decideRebuild(previous(), wanted({ formats: ['tar'] }));
  assert.equal(node(d, 'a'), { artifacts: 'link', reused: true });
  const trees = decideRebuild(previous(), wanted({ formats: ['tree'] }));
  assert.equal(node(trees, 'a'), { tree: 'move', reused: true });
});

test('every node reused, yet the base is read when a boot file or its source changed', () => {
  assert.not.ok(
    decideRebuild(
      previous((p) => (p.bootFiles as Set<string>).clear()),
      wanted(),
    ).reuseEverything,
  );
  assert.not.ok(decideRebuild(previous(), wanted({ bootFiles: ['tftp/Image', 'tftp/uInitrd'] })).reuseEverything);
  assert.not.ok(decideRebuild(previous(), wanted({ bootSources: 'boards-2' })).reuseEverything);
  assert.not.ok(
    decideRebuild(
      previous((p) => (p.state.formats = ['tar'])),
      wanted(),
    ).reuseEverything,
  );
});

test('readPreviousOutput finds which trees, archives and boot files are still there', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'netroot-rebuild-'));
  try {
    assert.is(await readPreviousOutput(dir, ['a'], []), undefined);
    const state = previous().state;
    writeFileSync(path.join(dir, '.build-state.json'), JSON.stringify(state));
    mkdirSync(path.join(dir, 'rootfs/b'), { recursive: true });
    mkdirSync(path.join(dir, 'artifacts'));
    writeFileSync(path.join(dir, 'artifacts/a.tar.gz'), '');
    mkdirSync(path.join(dir, 'tftp'));
    writeFileSync(path.join(dir, 'tftp/Image'), '');
    const found = (await readPreviousOutput(dir, ['a', 'b'], ['tftp/Image', 'tftp/uInitrd']))!;
    assert.equal([...found.trees], ['b']);
    assert.equal([...found.artifacts], ['a.tar.gz']);
    assert.equal([...found.bootFiles], ['tftp/Image']);
    assert.is(found.state.baseIdentity, 'base-1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an archive's prefix key: the same for other contents, another for another path, removal or base", () => {
  const context = { baseIdentity: 'base-1', generator: 'netroot test', sourceDateEpoch: 0, compress: 'gz', privileged: true };
  const plan = (paths: string[], content: string, removes: string[] = []) =>
    ({
      node: { name: 'a' },
      files: paths.map((p) => ({ path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from(content), source: 'test' })),
      removes,
    }) as unknown as NodePlan;
  const ab = plan(['etc/a', 'etc/b'], '1');
  const key = prefixKey(ab, context);
  assert.is(prefixKey(plan(['etc/b', 'etc/a'], '2'), context), key, 'other contents, other order');
  assert.is.not(prefixKey(plan(['etc/a', 'etc/c'], '1'), context), key, 'another path');
  assert.is.not(prefixKey(plan(['etc/a', 'etc/b'], '1', ['etc/ssh/ssh_host_*']), context), key, 'a removal');
  assert.is.not(prefixKey(ab, { ...context, baseIdentity: 'base-2' }), key, 'another base');
  assert.is.not(prefixKey(ab, { ...context, compress: 'gz,zst' }), key, 'other compressors');
});

test('the base is read before planning unless the previous build recorded this base, every fact of it, and a date', () => {
  const FACTS = { mariadbVersion: '1:10.11.6-0+deb12u1', systemdResolved: false, chrony: false, timesyncd: true };
  const recorded = (change: Partial<BuildState> = {}): BuildState => ({
    ...previous().state,
    baseIdentity: 'tar:abc|k3s:123',
    ...FACTS,
    baseNewestMtime: 1_600_000_000,
    ...change,
  });
  const { mariadbVersion: _m, ...withoutMariadb } = recorded();
  const { timesyncd: _t, ...withoutTimesyncd } = recorded();
  const { baseNewestMtime: _n, ...undated } = recorded();
  const rows: [string, BuildState | undefined, { knownIdentity: string | undefined; explicitEpoch: number | undefined }, boolean][] = [
    ['no previous build', undefined, { knownIdentity: 'tar:abc', explicitEpoch: 7 }, true],
    ['the same base, every fact and its date recorded', recorded(), { knownIdentity: 'tar:abc', explicitEpoch: undefined }, false],
    ['another base', recorded(), { knownIdentity: 'tar:abd', explicitEpoch: 7 }, true],
    [
      'a base whose identity is a prefix of the recorded one, not the same',
      recorded(),
      { knownIdentity: 'tar:ab', explicitEpoch: 7 },
      true,
    ],
    ['a base not known without reading it (a debootstrap not built yet)', recorded(), { knownIdentity: undefined, explicitEpoch: 7 }, true],
    ['an older state without the MariaDB version', withoutMariadb as BuildState, { knownIdentity: 'tar:abc', explicitEpoch: 7 }, true],
    ['an older state without timesyncd', withoutTimesyncd as BuildState, { knownIdentity: 'tar:abc', explicitEpoch: 7 }, true],
    ['no recorded date, no SOURCE_DATE_EPOCH', undated as BuildState, { knownIdentity: 'tar:abc', explicitEpoch: undefined }, true],
    ['no recorded date, but SOURCE_DATE_EPOCH', undated as BuildState, { knownIdentity: 'tar:abc', explicitEpoch: 7 }, false],
  ];
  for (const [why, state, given, readFirst] of rows) {
    const decided = decideBaseReading(state, given);
    assert.is(decided.readFirst, readFirst, why);
    if (!readFirst) assert.equal(decided.recorded?.facts, FACTS, why);
  }
  assert.equal(decideBaseReading(recorded(), { knownIdentity: 'tar:abc', explicitEpoch: undefined }).recorded, {
    arch: 'arm64',
    facts: FACTS,
    newestMtime: 1_600_000_000,
  });
});
