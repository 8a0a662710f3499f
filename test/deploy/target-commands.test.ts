/**
 * Every command a deploy runs on the target host (src/deploy/target-commands.ts),
 * run against a temporary directory through the local transport: the same
 * sh scripts, given the same arguments and input, as over ssh.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { binWithout } from '../support/bin-without.js';
import { openTarget, type Target } from '../../src/deploy/target.js';
import {
  commitGeneration,
  digestsIn,
  dropJournal,
  fileDigests,
  ganeshaRuns,
  hasProgram,
  keepFiles,
  listFiles,
  listJsonFiles,
  listKept,
  listNames,
  listTree,
  makeDirsRemoveFiles,
  moveSeededState,
  moveToUndo,
  readCommitLogs,
  readManifestTexts,
  readNodeFacts,
  readTargetFile,
  reexport,
  releaseLock,
  removeEmptiedDirs,
  removeOrphans,
  restoreFromUndo,
  restoreKept,
  setAttributes,
  startGeneration,
  takeLock,
  writeTargetFile,
} from '../../src/deploy/target-commands.js';

const Commands = suite<{ dir: string; target: Target }>('commands on the target', { dir: '', target: undefined! });

Commands.before.each(async (context) => {
  context.dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-commands-'));
  context.target = openTarget({ kind: 'local', dir: context.dir });
});
Commands.after.each(async ({ dir }) => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');
const mode = (p: string): number => statSync(p).mode & 0o7777;

/** Files under `dir`, as relative paths (directories with a slash), sorted. */
function tree(dir: string, rel = ''): string[] {
  if (!existsSync(path.join(dir, rel))) return [];
  return readdirSync(path.join(dir, rel))
    .sort()
    .flatMap((name) => {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(dir, p));
      return st.isDirectory() ? [`${p}/`, ...tree(dir, p)] : [p];
    });
}

async function put(file: string, content = ''): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

Commands(
  'writeTargetFile: makes the parents, writes by rename with the mode given; readTargetFile: the file, or undefined',
  async ({ dir, target }) => {
    const file = `${dir}/a b/c/record.json`;
    await writeTargetFile(target, file, 'one\n');
    assert.is(await readFile(file, 'utf8'), 'one\n');
    assert.is(mode(file), 0o600, 'private unless said otherwise');
    await writeTargetFile(target, file, 'two\n', '644');
    assert.is(mode(file), 0o644);
    assert.equal(tree(`${dir}/a b`), ['c/', 'c/record.json'], 'no temporary file left beside it');
    assert.is(await readTargetFile(target, file), 'two\n');
    assert.is(await readTargetFile(target, `${dir}/missing`), undefined);
    assert.is(await readTargetFile(target, `${dir}/a b`), undefined, 'a directory is not a file');
  },
);

Commands('fileDigests: the regular files among the paths; digestsIn: relative to a directory', async ({ dir, target }) => {
  await put(`${dir}/one`, 'one');
  await put(`${dir}/sub/two words`, 'two');
  await symlink(`${dir}/one`, `${dir}/link`);
  const found = await fileDigests(target, [`${dir}/one`, `${dir}/sub/two words`, `${dir}/sub`, `${dir}/missing`]);
  assert.equal(found, { [`${dir}/one`]: sha('one'), [`${dir}/sub/two words`]: sha('two') });
  assert.equal(await fileDigests(target, []), {});
  assert.equal(await digestsIn(target, dir, ['one', 'sub/two words']), { one: sha('one'), 'sub/two words': sha('two') });
  assert.equal(await digestsIn(target, dir, []), {});
});

Commands('listTree: type, mode, owner, size and link target of every entry; a missing tree is empty', async ({ dir, target }) => {
  const live = `${dir}/live`;
  await put(`${live}/etc/hostname`, 'node1\n');
  await chmod(`${live}/etc/hostname`, 0o640);
  await symlink('../etc/hostname', `${live}/etc/link`);
  execFileSync('mkfifo', [`${live}/fifo`]);
  const uid = process.getuid!();
  const gid = process.getgid!();
  const entries = (await listTree(target, live)).sort((a, b) => (a.path < b.path ? -1 : 1));
  assert.equal(
    entries.map(({ type, path: p, link }) => [type, p, link]),
    [
      ['d', 'etc', ''],
      ['f', 'etc/hostname', ''],
      ['l', 'etc/link', '../etc/hostname'],
      ['p', 'fifo', ''],
    ],
  );
  const file = entries.find((e) => e.path === 'etc/hostname')!;
  assert.equal([file.mode, file.uid, file.gid, file.size], [0o640, uid, gid, 6]);
  assert.equal(await listTree(target, `${dir}/missing`), []);
});

Commands('listFiles: files and links below a directory, not directories; listNames: the names in one', async ({ dir, target }) => {
  await put(`${dir}/undo/etc/a`);
  await put(`${dir}/undo/b`);
  await mkdir(`${dir}/undo/empty`);
  await symlink('nowhere', `${dir}/undo/dangling`);
  assert.equal((await listFiles(target, `${dir}/undo`)).sort(), ['b', 'dangling', 'etc/a']);
  assert.equal(await listFiles(target, `${dir}/missing`), []);
  assert.equal(await listNames(target, `${dir}/undo`), ['b', 'dangling', 'empty', 'etc']);
  assert.equal(await listNames(target, `${dir}/missing`), []);
});

Commands(
  'readNodeFacts: the live and pending generations, whether the tree exists, which state paths it holds',
  async ({ dir, target }) => {
    const live = `${dir}/node1`;
    const meta = `${dir}/.netroot/nodes/node1`;
    assert.equal(await readNodeFacts(target, live, meta, ['var/lib/a']), { generation: 0, pending: 0, live: false, stateRoots: [] });
    await put(`${meta}/current`, '2\n');
    await put(`${meta}/gen/3/manifest.json`, '{}');
    await put(`${live}/var/lib/a/x`);
    await mkdir(`${live}/var/lib`, { recursive: true });
    await symlink('nowhere', `${live}/var/lib/b`);
    assert.equal(await readNodeFacts(target, live, meta, ['var/lib/a', 'var/lib/b', 'var/lib/c']), {
      generation: 2,
      pending: 3,
      live: true,
      stateRoots: ['var/lib/a', 'var/lib/b'],
    });
  },
);

Commands('readManifestTexts: each generation asked for that has a manifest', async ({ dir, target }) => {
  const meta = `${dir}/meta`;
  await put(`${meta}/gen/1/manifest.json`, '{"a":1}');
  await put(`${meta}/gen/2/manifest.json`, '{"b":\n2}');
  const texts = await readManifestTexts(target, meta, [2, 1, 5]);
  assert.equal(
    [...texts.entries()],
    [
      [2, '{"b":\n2}'],
      [1, '{"a":1}'],
    ],
  );
  assert.equal([...(await readManifestTexts(target, meta, [])).entries()], []);
});

Commands('startGeneration: its directories, a fresh tmp, the live tree (755) when missing, its manifest', async ({ dir, target }) => {
  const at = { meta: `${dir}/meta`, gen: `${dir}/meta/gen/4`, tmp: `${dir}/tmp`, live: `${dir}/live` };
  await put(`${at.tmp}/rsync/.stale`);
  await startGeneration(target, at, '{"m":1}');
  assert.equal(tree(at.meta), ['gen/', 'gen/4/', 'gen/4/manifest.json', 'gen/4/undo/']);
  assert.equal(tree(at.tmp), ['rsync/', 'seed/'], 'stale rsync temporaries are gone');
  assert.is(mode(at.live), 0o755);
  assert.is(mode(at.gen), 0o700, 'the records are private');
  assert.is(await readFile(`${at.gen}/manifest.json`, 'utf8'), '{"m":1}');
  await chmod(at.live, 0o750);
  await startGeneration(target, at, '{"m":2}');
  assert.is(mode(at.live), 0o750, 'an existing live tree is left as it is');
  assert.is(await readFile(`${at.gen}/manifest.json`, 'utf8'), '{"m":2}');
});

Commands('removeOrphans: files and links go, directories only when empty', async ({ dir, target }) => {
  const live = `${dir}/live`;
  await put(`${live}/a/file`);
  await put(`${live}/keep/node-wrote-this`);
  await mkdir(`${live}/empty`);
  await symlink('keep', `${live}/dirlink`);
  await removeOrphans(target, live, ['empty', 'dirlink', 'keep', 'a/file', 'a', 'missing']);
  assert.equal(tree(live), ['keep/', 'keep/node-wrote-this']);
});

Commands('moveSeededState: moved in by rename where the live tree has none; never over what the node holds', async ({ dir, target }) => {
  const seed = `${dir}/seed`;
  const live = `${dir}/live`;
  await put(`${seed}/var/lib/new/x`, 'seeded');
  await put(`${seed}/var/lib/old/x`, 'seeded');
  await put(`${live}/var/lib/old/x`, 'the node');
  await moveSeededState(target, seed, live, ['var/lib/new', 'var/lib/old']);
  assert.is(await readFile(`${live}/var/lib/new/x`, 'utf8'), 'seeded');
  assert.is(await readFile(`${live}/var/lib/old/x`, 'utf8'), 'the node');
  assert.not.ok(existsSync(`${seed}/var/lib/new`), 'moved, not copied');
});

Commands(
  'moveToUndo: into undo/ with its parents, or dropped where undo/ keeps the old copy; directories stay',
  async ({ dir, target }) => {
    const live = `${dir}/live`;
    const undo = `${dir}/undo`;
    await put(`${live}/etc/a`, 'a');
    await put(`${live}/b`, 'new b');
    await put(`${undo}/b`, 'old b');
    await mkdir(`${live}/dir`);
    await symlink('nowhere', `${live}/link`);
    await moveToUndo(target, live, undo, ['etc/a', 'b', 'dir', 'link', 'missing']);
    assert.equal(tree(live), ['dir/', 'etc/']);
    assert.equal(tree(undo), ['b', 'etc/', 'etc/a', 'link']);
    assert.is(await readFile(`${undo}/b`, 'utf8'), 'old b', 'the kept old copy is not replaced');
    assert.is(await readlink(`${undo}/link`), 'nowhere');
    await removeEmptiedDirs(target, live, ['etc', 'dir']);
    assert.equal(tree(live), []);
    await put(`${live}/etc/node-wrote-this`);
    await removeEmptiedDirs(target, live, ['etc']);
    assert.equal(tree(live), ['etc/', 'etc/node-wrote-this'], 'a directory that is not empty stays');
  },
);

Commands('commitGeneration: history, current, and only the generations a rollback needs', async ({ dir, target }) => {
  const meta = `${dir}/meta`;
  const tmp = `${dir}/tmp`;
  for (const g of [1, 2, 3, 4]) await put(`${meta}/gen/${g}/undo/f`);
  await put(`${tmp}/seed/x`);
  const history = Array.from({ length: 60 }, (_, i) => `${i} 100 same`).join('\n');
  await put(`${meta}/history`, `${history}\n`);
  const before = Math.floor(Date.now() / 1000);
  await commitGeneration(target, meta, tmp, 3, true);
  assert.is(await readFile(`${meta}/current`, 'utf8'), '3\n');
  assert.equal(tree(`${meta}/gen`), ['2/', '3/', '3/undo/', '3/undo/f'], 'older and newer generations go; the previous keeps no undo/');
  assert.not.ok(existsSync(tmp));
  const lines = (await readFile(`${meta}/history`, 'utf8')).trimEnd().split('\n');
  assert.is(lines.length, 50, 'the last 50 commits');
  assert.is(lines[0], '11 100 same');
  const [g, at, reboot] = lines.at(-1)!.split(' ');
  assert.equal([g, reboot], ['3', 'reboot']);
  assert.ok(Number(at) >= before && Number(at) <= before + 60, `commit time ${at}`);
  await commitGeneration(target, meta, tmp, 4, false);
  assert.is((await readFile(`${meta}/history`, 'utf8')).trimEnd().split('\n').at(-1)!.split(' ')[2], 'same');
  assert.equal(readdirSync(meta).sort(), ['current', 'gen', 'history'], 'no temporary file left');
});

Commands('restoreFromUndo: the kept files back into the live tree by rsync there, what they replace kept', async ({ dir, target }) => {
  const at = { from: `${dir}/from`, live: `${dir}/live`, undo: `${dir}/undo`, rsyncTmp: `${dir}/rsync` };
  await put(`${at.from}/etc/a`, 'old a');
  await put(`${at.live}/etc/a`, 'new a');
  await mkdir(at.rsyncTmp);
  const code = await restoreFromUndo(target, at, ['-a'], ['etc/a']);
  assert.is(code, 0);
  assert.is(await readFile(`${at.live}/etc/a`, 'utf8'), 'old a');
  assert.is(await readFile(`${at.undo}/etc/a`, 'utf8'), 'new a');
});

Commands('setAttributes: mode and owner of each entry; a directory made if missing; a link keeps its mode', async ({ dir, target }) => {
  const live = `${dir}/live`;
  await put(`${live}/etc/a`);
  await symlink('a', `${live}/etc/link`);
  const uid = process.getuid!();
  const gid = process.getgid!();
  await setAttributes(target, live, [
    { t: 'd', m: 0o750, u: uid, g: gid, path: 'etc' },
    { t: 'f', m: 0o600, u: uid, g: gid, path: 'etc/a' },
    { t: 'l', m: 0o777, u: uid, g: gid, path: 'etc/link' },
    { t: 'd', m: 0o711, u: uid, g: gid, path: 'made' },
  ]);
  assert.equal([mode(`${live}/etc`), mode(`${live}/etc/a`), mode(`${live}/made`)], [0o750, 0o600, 0o711]);
  assert.is(mode(`${live}/etc/a`), 0o600, 'chmod on the link did not reach its target');
});

Commands('readCommitLogs: each node’s live generation and history in one read; 0 for a node never deployed', async ({ dir, target }) => {
  const nodes = `${dir}/nodes`;
  await put(`${nodes}/a/current`, '2\n');
  await put(`${nodes}/a/history`, '1 100 reboot\n2 200 same\n');
  const logs = await readCommitLogs(target, nodes, ['a', 'b']);
  assert.equal(Object.fromEntries(logs), { a: { current: '2', history: '1 100 reboot\n2 200 same\n' }, b: { current: '0', history: '' } });
});

Commands('takeLock: one holder at a time, the other told who; releaseLock: only by its holder', async ({ dir, target }) => {
  const meta = `${dir}/.netroot`;
  assert.equal(await takeLock(target, meta, 'host 1'), { taken: true });
  assert.equal(await takeLock(target, meta, 'host 2'), { taken: false, holder: 'host 1' });
  assert.equal(readdirSync(meta), ['lock'], 'the loser leaves nothing behind');
  await releaseLock(target, meta, 'host 2');
  assert.ok(existsSync(`${meta}/lock`), 'not released by another');
  await releaseLock(target, meta, 'host 1');
  assert.not.ok(existsSync(`${meta}/lock`));
  assert.equal(await takeLock(target, meta, 'host 2'), { taken: true });
});

Commands('listJsonFiles: the regular *.json files of a directory', async ({ dir, target }) => {
  await put(`${dir}/clusters/a.json`);
  await put(`${dir}/clusters/a.op.json`);
  await put(`${dir}/clusters/notes.txt`);
  await mkdir(`${dir}/clusters/dir.json`);
  assert.equal(await listJsonFiles(target, `${dir}/clusters`), ['a.json', 'a.op.json']);
  assert.equal(await listJsonFiles(target, `${dir}/missing`), []);
});

Commands(
  'keepFiles, listKept, restoreKept: the boot server files as they were, and those that were absent, put back',
  async ({ dir, target }) => {
    const op = `${dir}/ops/3`;
    const record = `${dir}/record.json`;
    const conf = `${dir}/etc/dnsmasq.d/c.conf`;
    const created = `${dir}/tftp/pxelinux.cfg/01-aa`;
    await put(conf, 'old');
    await put(record, '{"r":1}');
    await keepFiles(target, op, record, [conf, created], true);
    await put(conf, 'new');
    await put(created, 'made by the operation');
    await put(record, '{"r":2}');
    // Run again (the operation cut short): what is kept stays the first copy.
    await keepFiles(target, op, record, [conf, created], false);
    assert.equal(await listKept(target, op), { restore: [conf], remove: [created] });
    assert.is(await readFile(`${op}/record.json`, 'utf8'), '{"r":1}');
    await restoreKept(target, op);
    assert.is(await readFile(conf, 'utf8'), 'old');
    assert.not.ok(existsSync(created));
    assert.equal(tree(`${dir}/etc`), ['dnsmasq.d/', 'dnsmasq.d/c.conf'], 'no temporary file left');
    await keepFiles(target, op, `${dir}/no-record.json`, [], true);
    assert.equal(readdirSync(op).sort(), ['absent', 'files', 'no-record'], 'fresh: started over; no record to keep is said');
    assert.equal(await listKept(target, `${dir}/ops/missing`), { restore: [], remove: [] });
    await restoreKept(target, `${dir}/ops/missing`);
  },
);

Commands('dropJournal: the journal and every kept operation but one', async ({ dir, target }) => {
  await put(`${dir}/c.op.json`);
  for (const n of ['1', '2', '3']) await put(`${dir}/c.ops/${n}/absent`);
  await dropJournal(target, `${dir}/c.op.json`, `${dir}/c.ops`, '2');
  assert.equal(tree(dir), ['c.ops/', 'c.ops/2/', 'c.ops/2/absent']);
  await dropJournal(target, `${dir}/c.op.json`, `${dir}/missing`, '');
});

Commands('makeDirsRemoveFiles: the directories made, then the files removed', async ({ dir, target }) => {
  await put(`${dir}/old/file`);
  await makeDirsRemoveFiles(target, [`${dir}/a/b`, `${dir}/c d`], [`${dir}/old/file`, `${dir}/missing`]);
  assert.equal(tree(dir), ['a/', 'a/b/', 'c d/', 'old/']);
});

/** A target whose commands run here with PATH = `bin` (through an "ssh" that runs the remote command locally). */
async function targetWithPath(dir: string, bin: string): Promise<Target> {
  // One script per target: each reads its own PATH when it runs.
  const ssh = path.join(
    dir,
    `fake-ssh-${bin
      .split(':')
      .map((part) => path.basename(part))
      .join('+')}`,
  );
  await writeFile(ssh, `#!/bin/sh\nfor a; do last=$a; done\nexec env PATH=${bin} /bin/sh -c "$last"\n`);
  await chmod(ssh, 0o755);
  return openTarget({ kind: 'ssh', host: 'root@nfs1', dir: '/srv' }, [ssh]);
}

Commands(
  'ganeshaRuns: what systemctl says of nfs-ganesha; hasProgram; reexport: exportfs -ra, or false where there is none',
  async ({ dir }) => {
    const fake = path.join(dir, 'fake');
    const without = await binWithout(dir, ['systemctl', 'exportfs']);
    await mkdir(fake);
    const log = path.join(dir, 'log');
    await writeFile(path.join(fake, 'systemctl'), `#!/bin/sh\necho "$@" >> ${log}\nexit $(cat ${dir}/status)\n`);
    await writeFile(path.join(fake, 'exportfs'), `#!/bin/sh\necho "exportfs $@" >> ${log}\n`);
    await chmod(path.join(fake, 'systemctl'), 0o755);
    await chmod(path.join(fake, 'exportfs'), 0o755);
    const target = await targetWithPath(dir, `${fake}:${without}`);
    const bare = await targetWithPath(dir, without);
    try {
      await writeFile(path.join(dir, 'status'), '0');
      assert.is(await ganeshaRuns(target), true);
      await writeFile(path.join(dir, 'status'), '3');
      assert.is(await ganeshaRuns(target), false);
      assert.is(await ganeshaRuns(bare), false, 'no systemctl: not running');
      assert.is(await hasProgram(target, 'exportfs'), true);
      assert.is(await hasProgram(bare, 'exportfs'), false);
      assert.is(await reexport(target), true);
      assert.is(await reexport(bare), false);
      assert.equal(readFileSync(log, 'utf8').split('\n'), [
        'is-active --quiet nfs-ganesha',
        'is-active --quiet nfs-ganesha',
        'exportfs -ra',
        '',
      ]);
    } finally {
      await target.close();
      await bare.close();
    }
  },
);
