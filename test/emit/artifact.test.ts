import * as fs from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import tarStream from 'tar-stream';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { compressors } from '../../src/emit/compressors.js';
import { epochFromEnv, sourceDateEpoch } from '../../src/emit/epoch.js';
import { sha256sums, writeNodeArtifacts, type NodeArtifact } from '../../src/emit/artifact.js';
import { prepareSharedBase, type PackOptions } from '../../src/emit/shared-base.js';
import { writeArtifacts } from '../support/artifacts.js';
import { EntryTableBuilder } from '../../src/base/entry-table.js';
import { openBase, type BaseIndex } from '../../src/base/open.js';
import { OverlayConflictError } from '../../src/entries/errors.js';
import { EXIT_INTERNAL, InternalError } from '../../src/errors.js';
import { writeNodeTree } from '../../src/emit/export-tree.js';
import { Rollback } from '../../src/emit/staging.js';
import { cleanup, exists, extract, file, isRoot, makeBase, overlay, snapshot, tarOf, tempDir, rootCanCheck } from '../support/rootfs.js';
import { requires } from '../support/requires.js';
import { findProgram } from '../../src/tools.js';

const test = suite('emit/artifact');
test.after(cleanup);

const EPOCH = 1_700_000_000;
const nodes = (...names: string[]) => names.map((name) => ({ name, files: overlay(name) }));

interface Header {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  linkname: string | null;
}

/** Reads an archive back with tar-stream (an independent reader) for owners, modes and names. */
async function headers(archive: string): Promise<Header[]> {
  const out: Header[] = [];
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (h, stream, next) => {
      out.push({
        name: h.name,
        type: h.type!,
        mode: h.mode!,
        uid: h.uid!,
        gid: h.gid!,
        uname: h.uname!,
        gname: h.gname!,
        mtime: h.mtime!.getTime() / 1000,
        linkname: h.linkname ?? null,
      });
      stream.on('end', () => next());
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(gunzipSync(fs.readFileSync(archive)));
  await done;
  return out;
}

async function fixture(label: string): Promise<{ t: string; sentinel: string; dir: BaseIndex; tarball: BaseIndex }> {
  const t = await tempDir(label);
  const sentinel = `${t}/sentinel`;
  fs.mkdirSync(sentinel);
  await makeBase(`${t}/base`, sentinel);
  const dir = await openBase(`${t}/base`);
  const tarball = await openBase(await tarOf(`${t}/base`, `${t}/base.tar.gz`), { cacheDir: `${t}/cache` });
  return { t, sentinel, dir, tarball };
}

/** Every entry of a tree dated `seconds`, symlinks included: a base whose mtimes are known. */
async function dateTree(root: string, seconds: number): Promise<void> {
  await execa('find', [root, '-exec', 'touch', '-h', '-d', `@${seconds}`, '{}', '+']);
}

test("SOURCE_DATE_EPOCH comes from the environment and must be a number; unset, it is the base's newest mtime", () => {
  assert.is(epochFromEnv({}), undefined);
  assert.is(epochFromEnv({ SOURCE_DATE_EPOCH: '1700000000' }), EPOCH);
  assert.throws(() => epochFromEnv({ SOURCE_DATE_EPOCH: 'yesterday' }), /SOURCE_DATE_EPOCH/);
  const table = (mtimes: number[]) => {
    const builder = new EntryTableBuilder();
    mtimes.forEach((mtime, i) => builder.add({ path: `f${i}`, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime }));
    return builder.finish('/base');
  };
  const entries = table([5, 1_600_000_123, 7]);
  assert.is(sourceDateEpoch({ entries }, {}), 1_600_000_123);
  assert.is(sourceDateEpoch({ entries }, { SOURCE_DATE_EPOCH: '1700000000' }), EPOCH);
  assert.is(sourceDateEpoch({ entries: table([]) }, {}), 0);
});

test("base files keep their own mtimes; files and directories netroot writes get SOURCE_DATE_EPOCH, by default the base's newest mtime", async () => {
  const { t } = await fixture('mtimes');
  await dateTree(`${t}/base`, 1_500_000_000);
  await execa('touch', ['-d', '@1600000000', `${t}/base/etc/passwd`]); // the newest
  await execa('touch', ['-h', '-d', '@1400000000', `${t}/base/usr/bin/python3`]); // a symlink's own date
  const dir = await openBase(`${t}/base`);
  const tarball = await openBase(await tarOf(`${t}/base`, `${t}/dated.tar.gz`), { cacheDir: `${t}/cache` });
  const written = [
    './etc/hostname',
    './etc/netroot/secret',
    './etc/netroot/',
    './etc/rancher/k3s/config.yaml',
    './etc/resolv.conf',
    './etc/systemd/system/multi-user.target.wants/k3s.service',
  ];
  for (const [label, base, options, epoch] of [
    ['directory, no SOURCE_DATE_EPOCH', dir, {}, 1_600_000_000],
    ['tarball, no SOURCE_DATE_EPOCH', tarball, {}, 1_600_000_000],
    ['directory, SOURCE_DATE_EPOCH older than the base', dir, { sourceDateEpoch: 1_000_000_000 }, 1_000_000_000],
    ['tarball, SOURCE_DATE_EPOCH newer than the base', tarball, { sourceDateEpoch: EPOCH, privileged: isRoot }, EPOCH],
  ] as const) {
    // No SOURCE_DATE_EPOCH in the environment: what the default is must not depend on this shell.
    const chosen = 'sourceDateEpoch' in options ? options : { sourceDateEpoch: sourceDateEpoch(base, {}) };
    await writeArtifacts(base, nodes('n1'), `${t}/out-${label}`, { ...chosen, formats: ['gz'] });
    const at = new Map((await headers(`${t}/out-${label}/n1.tar.gz`)).map((h) => [h.name, h.mtime]));
    assert.is(at.get('./etc/passwd'), 1_600_000_000, `${label}: a base file`);
    assert.is(at.get('./usr/bin/ping'), 1_500_000_000, `${label}: a base file`);
    assert.is(at.get('./usr/bin/python3'), 1_400_000_000, `${label}: a base symlink`);
    assert.is(at.get('./usr/bin/perl5.36'), 1_500_000_000, `${label}: a base hard link whose holder the overlay replaced`);
    assert.is(at.get('./tmp/'), 1_500_000_000, `${label}: a base directory`);
    for (const name of written) assert.is(at.get(name), epoch, `${label}: ${name}, written by netroot`);
    // GNU tar agrees.
    const listing = (await execa('tar', ['--full-time', '--utc', '-tvf', `${t}/out-${label}/n1.tar.gz`, './etc/passwd', './etc/hostname']))
      .stdout;
    assert.match(listing, /2020-09-13 12:26:40 \.\/etc\/passwd$/m);
    assert.match(listing, new RegExp(`${new Date(epoch * 1000).toISOString().slice(0, 19).replace('T', ' ')} \\./etc/hostname$`, 'm'));
  }
});

test("the archive is the base without the node's paths, then the node's own entries, each sorted, each path once", async () => {
  const { t, tarball } = await fixture('headers');
  const result = await writeArtifacts(tarball, nodes('n1'), `${t}/out`, { sourceDateEpoch: EPOCH });
  const list = await headers(`${t}/out/n1.tar.gz`);
  const names = list.map((h) => h.name);
  // The tail: what overlay('n1') writes, the directories it needs that the base lacks (etc/rancher/k3s,
  // etc/netroot, etc/systemd/…), and usr/bin/perl5.36, the other path of perl's hard link pair, which holds
  // the base content now that perl is replaced.
  const tail = [
    './etc/hostname',
    './etc/hosts',
    './etc/netroot/',
    './etc/netroot/secret',
    './etc/rancher/',
    './etc/rancher/k3s/',
    './etc/rancher/k3s/config.yaml',
    './etc/resolv.conf',
    './etc/systemd/',
    './etc/systemd/system/',
    './etc/systemd/system/k3s.service',
    './etc/systemd/system/multi-user.target.wants/',
    './etc/systemd/system/multi-user.target.wants/k3s.service',
    './usr/bin/perl',
    './usr/bin/perl5.36',
  ];
  const prefix = names.slice(0, names.length - tail.length);
  assert.equal(names.slice(prefix.length), tail);
  assert.equal(prefix, [...prefix].sort());
  assert.ok(!prefix.some((n) => tail.includes(n)));
  assert.is(new Set(names).size, names.length);
  assert.is(names[0], './');
  // Extraction order never matters: a parent directory and a hard link's target come before the entry. n2
  // keeps perl, so its archive holds the base's hard link pair.
  await writeArtifacts(tarball, [{ name: 'n2', files: overlay('n2').filter((f) => f.path !== 'usr/bin/perl') }], `${t}/out2`, {
    sourceDateEpoch: EPOCH,
  });
  let links = 0;
  for (const archive of [`${t}/out/n1.tar.gz`, `${t}/out2/n2.tar.gz`]) {
    const entries = await headers(archive);
    const order = entries.map((h) => h.name);
    const before = (name: string, i: number) => order.indexOf(name) >= 0 && order.indexOf(name) < i;
    for (const [i, h] of entries.entries()) {
      const parent = h.name.replace(/[^/]+\/?$/, '');
      if (h.name !== './') assert.ok(before(parent, i), `${h.name} after ${parent}`);
      if (h.type !== 'link') continue;
      assert.ok(before(h.linkname!, i), `${h.name} after ${h.linkname}`);
      links++;
    }
  }
  assert.is(links, 1, 'n2 has the hard link usr/bin/perl5.36 -> usr/bin/perl');

  // A group of three whose holder the overlay replaces, and a removal: the other two go to the tail, the
  // new holder first, and the removed path is nowhere.
  fs.writeFileSync(`${t}/base/usr/lib/x1`, 'shared\n');
  fs.linkSync(`${t}/base/usr/lib/x1`, `${t}/base/usr/lib/x2`);
  fs.linkSync(`${t}/base/usr/lib/x1`, `${t}/base/usr/lib/x3`);
  const grouped = await openBase(`${t}/base`);
  await writeArtifacts(grouped, [{ name: 'n3', files: [file('usr/lib/x1', 'mine\n')], removes: ['etc/sha*'] }], `${t}/out3`, {
    sourceDateEpoch: EPOCH,
  });
  const n3 = await headers(`${t}/out3/n3.tar.gz`);
  const n3names = n3.map((h) => h.name);
  assert.equal(n3names.slice(-3), ['./usr/lib/x1', './usr/lib/x2', './usr/lib/x3']);
  assert.equal(
    n3.slice(-3).map((h) => [h.type, h.linkname]),
    [
      ['file', null],
      ['file', null],
      ['link', './usr/lib/x2'],
    ],
  );
  assert.not.ok(n3names.includes('./etc/shadow'));
  await extract(`${t}/out3/n3.tar.gz`, `${t}/x3`);
  assert.is(fs.readFileSync(`${t}/x3/usr/lib/x3`, 'utf8'), 'shared\n');
  assert.is(fs.statSync(`${t}/x3/usr/lib/x3`).ino, fs.statSync(`${t}/x3/usr/lib/x2`).ino);
  assert.is(result.nodes[0]!.entries, list.length);
  for (const h of list) {
    assert.is(h.uname, '');
    assert.is(h.gname, '');
  }
  const at = (name: string) => list.find((h) => h.name === name)!;
  assert.equal([at('./etc/netroot/secret').mode, at('./etc/netroot/secret').uid, at('./etc/netroot/secret').gid], [0o600, 0, 0]);
  assert.equal([at('./etc/rancher/').type, at('./etc/rancher/').mode], ['directory', 0o755]);
  assert.is(at('./etc/resolv.conf').type, 'file');
  assert.is(at('./usr/bin/python3').linkname, 'python3.11');
  // n1 replaced usr/bin/perl, the holder of a hard link pair: perl5.36 now holds the base content.
  assert.is(at('./usr/bin/perl5.36').type, 'file');
  if (rootCanCheck()) assert.equal([at('./usr/bin/su').mode, at('./home/user/.profile').uid], [0o4755, 1000]);
  // And GNU tar agrees about the secret.
  const listing = (await execa('tar', ['--numeric-owner', '-tvf', `${t}/out/n1.tar.gz`])).stdout;
  assert.match(listing, /^-rw------- 0\/0 .* \.\/etc\/netroot\/secret$/m);
  assert.match(listing, /^lrwxrwxrwx 0\/0 .* \.\/lib -> usr\/lib$/m);
});

test('extracting the artifact with GNU tar gives the same tree as writeNodeTree, capabilities and hard links included', async () => {
  const { t, sentinel, tarball } = await fixture('same-tree');
  await writeArtifacts(tarball, nodes('n1', 'n2'), `${t}/out`, { sourceDateEpoch: EPOCH });
  for (const node of ['n1', 'n2']) {
    await writeNodeTree(tarball, overlay(node), `${t}/tree-${node}`, { sourceDateEpoch: EPOCH, privileged: isRoot });
    await extract(`${t}/out/${node}.tar.gz`, `${t}/x-${node}`);
    const fromTar = await snapshot(`${t}/x-${node}`);
    assert.equal(fromTar, await snapshot(`${t}/tree-${node}`), node);
    assert.match((await execa('getcap', [`${t}/x-${node}/usr/bin/ping`])).stdout, /cap_net_raw=ep/);
    assert.is(fromTar['etc/netroot/secret']!.owner, '0:0');
    assert.is(fromTar['etc/netroot/secret']!.mode, '600');
    assert.is(fromTar['etc/tagged']!.xattrs, 'user.tag=0x00ff80;');
    assert.is(fromTar['usr/bin/perl5.36']!.size, 700);
    if (rootCanCheck()) assert.is(fromTar['dev/null']!.type, 'char');
  }
  assert.equal(fs.readdirSync(sentinel), []);
});

/** The raw value of a pax record `LEN KEY=VALUE\n` for one member, found in the uncompressed tar bytes. */
function paxRecord(tar: Buffer, member: string, key: string): Buffer | undefined {
  // A member's pax header comes in the 512-byte blocks just before its own header block.
  const named = tar.indexOf(Buffer.from(`${member}\0`));
  if (named < 0) return undefined;
  const needle = Buffer.from(` ${key}=`);
  const at = tar.lastIndexOf(needle, named);
  if (at < 0 || named - at > 4 * 512) return undefined;
  let start = at;
  while (start > 0 && tar[start - 1]! >= 0x30 && tar[start - 1]! <= 0x39) start--;
  const length = Number(tar.toString('latin1', start, at));
  return tar.subarray(at + needle.length, start + length - 1);
}

requires(isRoot, 'setcap needs root')(
  "a directory base's file capability is in the artifact as pax SCHILY.xattr.security.capability, byte for byte",
  async () => {
    const { t, dir } = await fixture('capability');
    const capability = (
      await execa('getfattr', ['--only-values', '-n', 'security.capability', '--absolute-names', `${t}/base/usr/bin/ping`], {
        encoding: 'buffer',
      })
    ).stdout;
    assert.ok(Buffer.from(capability).length >= 20, 'the base carries a capability');
    await writeArtifacts(dir, [{ name: 'n1', files: [] }], `${t}/out`, { sourceDateEpoch: EPOCH, formats: ['gz'] });
    const tar = gunzipSync(fs.readFileSync(`${t}/out/n1.tar.gz`));
    const record = paxRecord(tar, './usr/bin/ping', 'SCHILY.xattr.security.capability');
    assert.ok(record, 'ping has a SCHILY.xattr.security.capability record');
    assert.ok(record!.equals(Buffer.from(capability)), `${record!.toString('hex')} != ${Buffer.from(capability).toString('hex')}`);
    // GNU tar reads it back as an xattr of that member.
    assert.match(
      (await execa('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', `${t}/out/n1.tar.gz`, './usr/bin/ping'])).stdout,
      /x: +20 security\.capability/,
    );
  },
);

test('a node without an overlay is the base: GNU tar extraction equals the base directory', async () => {
  const { t, dir } = await fixture('plain');
  await writeArtifacts(dir, [{ name: 'bare', files: [] }], `${t}/out`, { sourceDateEpoch: EPOCH });
  await extract(`${t}/out/bare.tar.gz`, `${t}/x`);
  assert.equal(await snapshot(`${t}/x`), await snapshot(dir.root));
  const listing = (await execa('tar', ['--numeric-owner', '-tvf', `${t}/out/bare.tar.gz`])).stdout;
  assert.match(listing, /^hrwxr-xr-x 0\/0 .* \.\/usr\/bin\/perl5\.36 link to \.\/usr\/bin\/perl$/m);
  assert.is(fs.statSync(`${t}/x/usr/bin/perl`).ino, fs.statSync(`${t}/x/usr/bin/perl5.36`).ino);
  assert.match(listing, /^-rwxr-xr-x 0\/0 .* \.\/usr\/bin\/ping$/m);
});

test('two builds at different times, from two copies of a base made at different times, in different directories, are byte-identical', async () => {
  const a = await fixture('repro-a');
  await new Promise((r) => setTimeout(r, 1100));
  const b = await fixture('repro-b');
  // Two symlinks of the base point into its temp directory; give both bases the same targets.
  for (const f of [a, b]) {
    for (const p of ['etc/hosts', 'etc/host-link']) {
      fs.unlinkSync(`${f.t}/base/${p}`);
      fs.symlinkSync(`/srv/${p}`, `${f.t}/base/${p}`);
    }
    // The same base holds the same dates (they are part of it, like its bytes).
    await dateTree(`${f.t}/base`, 1_650_000_000);
  }
  for (const options of [{ sourceDateEpoch: EPOCH }, {}] as PackOptions[]) {
    const label = options.sourceDateEpoch ? 'SOURCE_DATE_EPOCH' : 'default epoch';
    const baseA = await openBase(`${a.t}/base`);
    const baseB = await openBase(`${b.t}/base`);
    const at = (base: BaseIndex): PackOptions => ({ sourceDateEpoch: options.sourceDateEpoch ?? sourceDateEpoch(base, {}) });
    const ra = await writeArtifacts(baseA, nodes('n1', 'n2'), `${a.t}/out-${label}`, at(baseA));
    await new Promise((r) => setTimeout(r, 1100));
    const rb = await writeArtifacts(baseB, nodes('n1', 'n2'), `${b.t}/elsewhere/out-${label}`, at(baseB));
    assert.is(ra.sha256sums, rb.sha256sums, label);
    for (const name of fs.readdirSync(`${a.t}/out-${label}`))
      assert.ok(
        fs.readFileSync(`${a.t}/out-${label}/${name}`).equals(fs.readFileSync(`${b.t}/elsewhere/out-${label}/${name}`)),
        `${label}: ${name}`,
      );
    // A directory base and a tarball of it give the same artifact too.
    const tarball = await openBase(await tarOf(`${a.t}/base`, `${a.t}/again-${label}.tar.xz`), { cacheDir: `${a.t}/cache-${label}` });
    const rc = await writeArtifacts(tarball, nodes('n1', 'n2'), `${a.t}/out3-${label}`, at(tarball));
    assert.is(rc.nodes[0]!.files[0]!.sha256, ra.nodes[0]!.files[0]!.sha256, label);
  }
});

test('SHA256SUMS verifies with sha256sum -c, and zstd and gzip hold the same tar', async () => {
  const { t, tarball } = await fixture('sums');
  const result = await writeArtifacts(tarball, nodes('n1', 'n2'), `${t}/out`, { sourceDateEpoch: EPOCH, formats: ['gz', 'zst'] });
  const check = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: `${t}/out` });
  assert.match(check.stdout, /n1\.tar\.gz: OK/);
  assert.match(check.stdout, /n2\.tar\.zst: OK/);
  assert.match(check.stdout, /n1\.manifest\.json: OK/);
  assert.is(check.stdout.trim().split('\n').length, 6);
  const gz = gunzipSync(fs.readFileSync(`${t}/out/n1.tar.gz`));
  const zst = (await execa('zstd', ['-dc', `${t}/out/n1.tar.zst`], { encoding: 'buffer' })).stdout;
  assert.ok(Buffer.from(zst).equals(gz));
  const manifest = JSON.parse(fs.readFileSync(`${t}/out/n1.manifest.json`, 'utf8'));
  assert.is(manifest.artifacts['n1.tar.gz'].sha256, result.nodes[0]!.files[0]!.sha256);
  assert.ok(
    manifest.overlay.some(
      (f: { path: string; mode: string; owner: string }) => f.path === 'etc/netroot/secret' && f.mode === '0600' && f.owner === '0:0',
    ),
  );
  assert.ok(manifest.replaced.includes('etc/resolv.conf'));
  assert.not.match(JSON.stringify(manifest), /token-n1/);
  assert.equal(
    fs.readdirSync(`${t}/out`).filter((n) => n.startsWith('.')),
    [],
  );
});

test('the shared base is compressed once: chunking changes how much a node rebuilds, never the tar inside', async () => {
  const { t, tarball } = await fixture('chunks');
  // Enough files that a 2 KiB chunk size cuts the base into many chunks.
  const big = await (async () => {
    for (let i = 0; i < 200; i++) fs.writeFileSync(`${t}/base/usr/lib/mod-${String(i).padStart(3, '0')}`, `module ${i}\n`.repeat(40));
    return openBase(`${t}/base`);
  })();
  const small = await writeArtifacts(big, nodes('n1'), `${t}/small`, { sourceDateEpoch: EPOCH, chunkBytes: 2048, formats: ['gz'] });
  const whole = await writeArtifacts(big, nodes('n1'), `${t}/whole`, { sourceDateEpoch: EPOCH, chunkBytes: 1 << 30, formats: ['gz'] });
  const n = small.nodes[0]!;
  assert.ok(n.chunks > 50, `${n.chunks} chunks`);
  assert.ok(n.rebuiltChunks < n.chunks / 4, `${n.rebuiltChunks} of ${n.chunks} rebuilt`);
  assert.is(whole.nodes[0]!.chunks, 1);
  assert.ok(gunzipSync(fs.readFileSync(`${t}/small/n1.tar.gz`)).equals(gunzipSync(fs.readFileSync(`${t}/whole/n1.tar.gz`))));
  await extract(`${t}/small/n1.tar.gz`, `${t}/x`);
  await writeNodeTree(big, overlay('n1'), `${t}/tree`, { sourceDateEpoch: EPOCH, privileged: isRoot });
  assert.equal(await snapshot(`${t}/x`), await snapshot(`${t}/tree`));
  void tarball;
});

/** A base of many small files, cut into 2 KiB chunks: most chunks untouched by any overlay, some touched. */
async function chunkedBase(label: string): Promise<{ t: string; base: BaseIndex }> {
  const { t } = await fixture(label);
  for (let i = 0; i < 200; i++) fs.writeFileSync(`${t}/base/usr/lib/mod-${String(i).padStart(3, '0')}`, `module ${i}\n`.repeat(40));
  return { t, base: await openBase(`${t}/base`) };
}

test('nodes written together, in more than one batch, are byte for byte the nodes written one at a time', async () => {
  const { t, base } = await chunkedBase('together');
  const shared = await prepareSharedBase(base, `${t}/chunks`, { sourceDateEpoch: EPOCH, chunkBytes: 2048, formats: ['gz', 'zst'] });
  const list = nodes(...Array.from({ length: 11 }, (_, i) => `n${i + 1}`));
  fs.mkdirSync(`${t}/together`);
  fs.mkdirSync(`${t}/alone`);
  const heard: string[] = [];
  const together = await writeNodeArtifacts(shared, list, `${t}/together`, (a) => heard.push(a.node));
  const alone: NodeArtifact[] = [];
  for (const node of list) alone.push(...(await writeNodeArtifacts(shared, [node], `${t}/alone`)));
  assert.equal(
    together.map((a) => a.node),
    list.map((n) => n.name),
  );
  assert.equal(
    heard,
    list.map((n) => n.name),
  );
  assert.ok(together[0]!.rebuiltChunks < together[0]!.chunks / 4, 'most chunks are copied');
  assert.is(sha256sums(together.flatMap((a) => a.files)), sha256sums(alone.flatMap((a) => a.files)));
  for (const name of fs.readdirSync(`${t}/alone`)) {
    assert.ok(fs.readFileSync(`${t}/together/${name}`).equals(fs.readFileSync(`${t}/alone/${name}`)), name);
    if (name.includes('.tar.')) assert.is(fs.statSync(`${t}/together/${name}`).mode & 0o777, 0o600, name);
  }
  assert.is(fs.readdirSync(`${t}/together`).length, 11 * 3);
});

test('a failure while nodes are written together leaves none of their archives, and no temporary file', async () => {
  const { t, base } = await chunkedBase('together-fails');
  const shared = await prepareSharedBase(base, `${t}/chunks`, { sourceDateEpoch: EPOCH, chunkBytes: 2048, formats: ['gz', 'zst'] });
  // The gz archives are complete by the time the zst pass meets the missing chunk: they must go too.
  fs.rmSync(shared.chunks[shared.chunks.length - 2]!.files.zst!);
  fs.mkdirSync(`${t}/out`);
  const error = await writeNodeArtifacts(shared, nodes('n1', 'n2', 'n3'), `${t}/out`).catch((e: Error) => e);
  assert.instance(error, Error);
  assert.match(String(error), /ENOENT/);
  assert.equal(fs.readdirSync(`${t}/out`), []);
});

/** n1..n3 with other contents at the same paths: what a template change does. */
const changed = (...names: string[]) =>
  nodes(...names).map((n) => ({
    ...n,
    files: n.files.map((f) => (f.content ? { ...f, content: Buffer.concat([f.content, Buffer.from('# v2\n')]) } : f)),
  }));

/** Version 1 of n1..n3 in `prev`, version 2 written anew in `fresh`; both formats. */
async function twoVersions(label: string) {
  const { t, base } = await chunkedBase(label);
  const shared = await prepareSharedBase(base, `${t}/chunks`, { sourceDateEpoch: EPOCH, chunkBytes: 2048, formats: ['gz', 'zst'] });
  for (const dir of ['prev', 'fresh', 'next']) fs.mkdirSync(`${t}/${dir}`);
  const v1 = await writeNodeArtifacts(shared, nodes('n1', 'n2', 'n3'), `${t}/prev`);
  await writeNodeArtifacts(shared, changed('n1', 'n2', 'n3'), `${t}/fresh`);
  const original = new Map(fs.readdirSync(`${t}/prev`).map((name) => [name, fs.readFileSync(`${t}/prev/${name}`)]));
  const revising = changed('n1', 'n2', 'n3').map((n, i) => ({ ...n, previous: { dir: `${t}/prev`, files: v1[i]!.files } }));
  return { t, shared, revising, original };
}

test('a template change revises each archive in place: its prefix kept, the bytes those of a fresh build', async () => {
  const { t, shared, revising, original } = await twoVersions('revise');
  const inodes = revising.map((n) => fs.statSync(`${t}/prev/${n.name}.tar.gz`).ino);
  const rollback = new Rollback();
  const result = await writeNodeArtifacts(shared, revising, `${t}/next`, undefined, rollback);
  assert.equal(
    result.map((a) => [a.node, a.revised, a.rebuiltChunks]),
    [
      ['n1', true, 0],
      ['n2', true, 0],
      ['n3', true, 0],
    ],
  );
  for (const name of fs.readdirSync(`${t}/fresh`))
    assert.ok(fs.readFileSync(`${t}/next/${name}`).equals(fs.readFileSync(`${t}/fresh/${name}`)), name);
  // The same files, moved: nothing but the tail was written.
  assert.equal(
    revising.map((n) => fs.statSync(`${t}/next/${n.name}.tar.gz`).ino),
    inodes,
  );
  assert.equal(
    fs.readdirSync(`${t}/prev`).filter((n) => n.includes('.tar.')),
    [],
  );
  assert.is(fs.statSync(`${t}/next/n1.tar.zst`).mode & 0o777, 0o600);
  // A build that fails later puts every archive back where it was, as it was.
  await rollback.run();
  for (const [name, bytes] of original) assert.ok(fs.readFileSync(`${t}/prev/${name}`).equals(bytes), name);
  assert.equal(
    fs.readdirSync(`${t}/next`).filter((n) => n.includes('.tar.')),
    [],
  );
});

test('a previous archive whose prefix changed, that is linked elsewhere or is not there is left alone, and its node written anew', async () => {
  const { t, shared, revising, original } = await twoVersions('revise-refused');
  // n1: a byte of its prefix flipped (same size); n2's zst archive has another link; n3's gz archive is gone.
  const n1 = fs.readFileSync(`${t}/prev/n1.tar.gz`);
  n1[100] = n1[100]! ^ 1;
  fs.writeFileSync(`${t}/prev/n1.tar.gz`, n1);
  fs.linkSync(`${t}/prev/n2.tar.zst`, `${t}/n2-kept.tar.zst`);
  fs.rmSync(`${t}/prev/n3.tar.gz`);
  const result = await writeNodeArtifacts(shared, revising, `${t}/next`, undefined, new Rollback());
  assert.equal(
    result.map((a) => a.revised),
    [false, false, false],
  );
  for (const name of fs.readdirSync(`${t}/fresh`))
    assert.ok(fs.readFileSync(`${t}/next/${name}`).equals(fs.readFileSync(`${t}/fresh/${name}`)), name);
  assert.ok(fs.readFileSync(`${t}/prev/n1.tar.gz`).equals(n1));
  assert.ok(fs.readFileSync(`${t}/n2-kept.tar.zst`).equals(original.get('n2.tar.zst')!));
  assert.ok(fs.readFileSync(`${t}/prev/n3.tar.zst`).equals(original.get('n3.tar.zst')!));
});

test('without a rollback, previous archives are never touched', async () => {
  const { t, shared, revising, original } = await twoVersions('revise-no-rollback');
  const result = await writeNodeArtifacts(shared, revising, `${t}/next`);
  assert.ok(result.every((a) => !a.revised));
  for (const [name, bytes] of original) assert.ok(fs.readFileSync(`${t}/prev/${name}`).equals(bytes), name);
});

test('a failure while a batch is written puts the archives it was revising back, byte for byte', async () => {
  const { t, shared, revising, original } = await twoVersions('revise-fails');
  // n1 and n2 are revised; n3, a new node of the batch, meets a missing chunk after they were cut and continued.
  const batch = [revising[0]!, revising[1]!, { name: 'n4', files: overlay('n4') }];
  const changedAt = (name: string) => fs.statSync(`${t}/prev/${name}`).ctimeMs;
  const before = ['n1.tar.gz', 'n2.tar.gz'].map(changedAt);
  fs.rmSync(shared.chunks[shared.chunks.length - 2]!.files.zst!);
  const error = await writeNodeArtifacts(shared, batch, `${t}/next`, undefined, new Rollback()).catch((e: Error) => e);
  assert.match(String(error), /ENOENT/);
  assert.equal(fs.readdirSync(`${t}/next`), []);
  // They were moved and cut (their inode changed: ctime), and came back whole.
  assert.ok(
    ['n1.tar.gz', 'n2.tar.gz'].every((name, i) => changedAt(name) !== before[i]),
    'the gz archives were revised before the failure',
  );
  for (const [name, bytes] of original) assert.ok(fs.readFileSync(`${t}/prev/${name}`).equals(bytes), name);
});

requires(findProgram('zstd') !== undefined, 'zstd is not installed (Debian package zstd)')(
  "how archives are compressed, as a key: formats, levels, chunk size and the compressors' versions",
  async () => {
    const t = await tempDir('compressors');
    const gz = await compressors(['gz']);
    assert.is.not(gz, await compressors(['gz', 'zst']));
    assert.is.not(gz, await compressors(['gz'], { gzipLevel: 9 }));
    assert.is.not(gz, await compressors(['gz'], { chunkBytes: 1 << 20 }));
    assert.match(gz, new RegExp(process.versions.zlib.replace(/\./g, '\\.')));
    // Another zstd (first on PATH), another key: its bytes may differ.
    const real = await compressors(['zst']);
    assert.match(real, /Zstandard/);
    fs.mkdirSync(`${t}/bin`);
    fs.writeFileSync(`${t}/bin/zstd`, '#!/bin/sh\necho "*** Zstandard CLI (64-bit) v9.9.9, a stand-in ***"\n', { mode: 0o755 });
    const PATH = process.env.PATH;
    process.env.PATH = `${t}/bin:${PATH}`;
    try {
      const other = await compressors(['zst']);
      assert.match(other, /v9\.9\.9/);
      assert.is.not(other, real);
    } finally {
      process.env.PATH = PATH;
    }
  },
);

test('an overlay under a base symlink fails clearly, and names the real path', async () => {
  const { t, sentinel, dir } = await fixture('through-link');
  const error = await writeArtifacts(
    dir,
    [{ name: 'n1', files: [file('lib/modules-load.d/k3s.conf', 'br_netfilter\n')] }],
    `${t}/out`,
  ).catch((e: Error) => e);
  assert.instance(error, OverlayConflictError);
  assert.is((error as OverlayConflictError).exitCode, 2);
  assert.match(
    (error as Error).message,
    /its parent "lib" is a symbolic link \(-> usr\/lib\) in the base.*resolves to "usr\/lib\/modules-load.d\/k3s.conf"/,
  );
  assert.not.ok(exists(`${t}/out/n1.tar.gz`));
  const hosts = await writeArtifacts(dir, [{ name: 'n1', files: [file('etc/hosts/x', 'x')] }], `${t}/out2`).catch((e: Error) => e);
  assert.match(String(hosts), /its parent "etc\/hosts" is a symbolic link/);
  assert.equal(fs.readdirSync(sentinel), []);
});

test('an overlay file where the base has a directory, a bad node name and a duplicate node fail clearly', async () => {
  const { t, dir } = await fixture('conflicts');
  const onDir = await writeArtifacts(dir, [{ name: 'n1', files: [file('etc', 'x')] }], `${t}/out`).catch((e: Error) => e);
  assert.match(String(onDir), /overlay "etc": the base has a directory there/);
  const badName = await writeArtifacts(dir, [{ name: '../n1', files: [] }], `${t}/out`).catch((e: Error) => e);
  // The profile's rules name nodes: a name that reaches here unchecked is netroot's bug, not the user's input.
  assert.instance(badName, InternalError);
  assert.is((badName as InternalError).exitCode, EXIT_INTERNAL);
  const twice = await writeArtifacts(
    dir,
    [
      { name: 'n1', files: [] },
      { name: 'n1', files: [] },
    ],
    `${t}/out`,
  ).catch((e: Error) => e);
  assert.match(String(twice), /listed twice/);
  const unsafe = await writeArtifacts(dir, [{ name: 'n1', files: [file('../escape', 'x')] }], `${t}/out`).catch((e: Error) => e);
  assert.match(String(unsafe), /not a plain relative path/);
});
