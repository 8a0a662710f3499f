/**
 * build-images --base … --format tree,tar end to end: per-node roots from a
 * directory, a tarball and a partitioned disk image; what a node needs is
 * there, what it must not share is gone, artifacts are reproducible, and bad
 * or hostile bases fail before anything is written.
 */
import { test } from '../support/test.js';
import { CLI_ARGS } from '../support/cli.js';
import { binWithout } from '../support/bin-without.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build, type BuildOptions } from '../../src/build.js';
import { silentReporter } from '../../src/progress.js';
import { makeArmbianBase, makeDiskImage } from '../support/armbian-base.js';
import { scratchBuildOptions } from '../support/build.js';
import { rejects } from '../support/assert.js';

let tmp: string;
let base: string;
const K3S = Buffer.from('#!/bin/sh\necho k3s stand-in for tests\n');
const EPOCH = '1700000000';
const NODES = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven', 'opz3-4-top'];

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-rootfs-'));
  base = path.join(tmp, 'armbian');
  await makeArmbianBase(base, path.join(tmp, 'work'));
  await writeFile(path.join(tmp, 'k3s'), K3S, { mode: 0o755 });
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function options(out: string, extra: Partial<BuildOptions> = {}): BuildOptions {
  return scratchBuildOptions(tmp, path.resolve('profiles/opz3.yaml'), base, out, { formats: ['tree', 'tar'], ...extra });
}

const sums = (out: string) => readFileSync(path.join(tmp, out, 'opz3/artifacts/SHA256SUMS'), 'utf8');
/** The archives' sums only: each node's manifest also names the base it came from (a directory, a tarball's sha256). */
const archiveSums = (out: string) =>
  sums(out)
    .split('\n')
    .filter((l) => l.includes('.tar.'))
    .join('\n');

/**
 * The build from the directory base that several tests read: made by whichever of them runs first, so each
 * stands alone (run one with --test-name-pattern and it still has its output).
 */
let fromDirectory: ReturnType<typeof build> | undefined;
const builtFromDirectory = (): ReturnType<typeof build> => (fromDirectory ??= build(options('out-dir')));

test('a directory base gives every node a full root, an artifact and checksums', async () => {
  const result = await builtFromDirectory();
  const dir = path.join(tmp, 'out-dir/opz3');
  assert.is(result.base?.arch, 'arm64');
  for (const node of NODES) {
    assert.ok(existsSync(path.join(dir, 'rootfs', node, 'etc/os-release')), `${node} has the base`);
    assert.ok(existsSync(path.join(dir, 'artifacts', `${node}.tar.gz`)), `${node}.tar.gz`);
    assert.match(sums('out-dir'), new RegExp(`^[0-9a-f]{64}  ${node}\\.tar\\.gz$`, 'm'));
  }
  const check = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(dir, 'artifacts'), reject: false });
  assert.is(check.exitCode, 0, check.stdout + check.stderr);
});

test('trees: secrets 0600 root-owned, base hard link, symlinks and capability preserved, k3s installed', async () => {
  await builtFromDirectory();
  const root = path.join(tmp, 'out-dir/opz3/rootfs/opz3-1-onder');
  for (const secret of ['etc/keepalived/keepalived.conf', 'etc/rancher/k3s/config.yaml', 'etc/ssh/ssh_host_ed25519_key']) {
    const st = statSync(path.join(root, secret));
    assert.is((st.mode & 0o777).toString(8), '600', secret);
    assert.equal([st.uid, st.gid], [0, 0], secret);
  }
  assert.is(statSync(path.join(root, 'usr/bin/perl')).ino, statSync(path.join(root, 'usr/bin/perl5.36.0')).ino, 'hard link');
  assert.is(readlinkSync(path.join(root, 'boot/Image')), 'Image-6.6.31-current-sunxi64');
  assert.is(readlinkSync(path.join(root, 'lib')), 'usr/lib');
  const cap = await execa('getcap', [path.join(root, 'usr/bin/ping')]);
  assert.match(cap.stdout, /cap_net_raw[=+]ep/);
  assert.is((statSync(path.join(root, 'usr/bin/su')).mode & 0o7777).toString(8), '4755', 'setuid kept');
  assert.equal(readFileSync(path.join(root, 'usr/local/bin/k3s')), K3S);
  assert.is((statSync(path.join(root, 'usr/local/bin/k3s')).mode & 0o777).toString(8), '755');
});

test('each node is its own machine: no image-wide SSH keys or machine-id, no SD-card root, no first-login wizard', async () => {
  await builtFromDirectory();
  const ids = new Set<string>();
  for (const node of NODES) {
    const root = path.join(tmp, 'out-dir/opz3/rootfs', node);
    assert.not.ok(existsSync(path.join(root, 'etc/ssh/ssh_host_rsa_key')), "the image's RSA key is gone");
    assert.not.match(readFileSync(path.join(root, 'etc/ssh/ssh_host_ed25519_key'), 'utf8'), 'IMAGE-WIDE');
    assert.not.ok(existsSync(path.join(root, 'root/.not_logged_in_yet')));
    assert.match(readFileSync(path.join(root, 'etc/fstab'), 'utf8'), /^\/dev\/nfs\s+\/\s+nfs/m);
    assert.not.match(readFileSync(path.join(root, 'etc/fstab'), 'utf8'), /UUID=/);
    assert.is(readlinkSync(path.join(root, 'etc/systemd/system/armbian-resize-filesystem.service')), '/dev/null');
    ids.add(readFileSync(path.join(root, 'etc/machine-id'), 'utf8'));
    assert.is(readFileSync(path.join(root, 'etc/hostname'), 'utf8'), `${node}\n`);
    // The base's absolute symlink was replaced, never written through.
    assert.ok(lstatSync(path.join(root, 'etc/resolv.conf')).isSymbolicLink());
  }
  assert.is(ids.size, NODES.length);
});

test('artifacts hold what the trees hold: owners, modes, links, capability, removals', async () => {
  await builtFromDirectory();
  const extract = path.join(tmp, 'extract');
  await mkdir(extract);
  await execa('tar', [
    '--xattrs',
    '--xattrs-include=*',
    '--numeric-owner',
    '-xpzf',
    path.join(tmp, 'out-dir/opz3/artifacts/opz3-1-onder.tar.gz'),
    '-C',
    extract,
  ]);
  const listing = (await execa('tar', ['--numeric-owner', '-tvzf', path.join(tmp, 'out-dir/opz3/artifacts/opz3-1-onder.tar.gz')])).stdout;
  assert.match(listing, /^-rw------- 0\/0 .* \.\/etc\/keepalived\/keepalived\.conf$/m);
  assert.match(listing, /^hrwxr-xr-x 0\/0 .* \.\/usr\/bin\/perl5\.36\.0 link to \.\/usr\/bin\/perl$/m);
  assert.not.match(listing, /ssh_host_rsa_key/);
  assert.match((await execa('getcap', [path.join(extract, 'usr/bin/ping')])).stdout, /cap_net_raw[=+]ep/);
  assert.equal(readFileSync(path.join(extract, 'usr/local/bin/k3s')), K3S);
  const tree = path.join(tmp, 'out-dir/opz3/rootfs/opz3-1-onder');
  const diff = await execa('diff', ['-r', '--no-dereference', tree, extract], { reject: false });
  assert.is(diff.exitCode, 0, `tree and artifact differ:\n${diff.stdout}`);
});

test("the board's kernel, initrd and device tree come from the base (symlinks followed inside it) into tftp/", async () => {
  await builtFromDirectory();
  const boot = path.join(tmp, 'out-dir/opz3/tftp/boot/orangepi-zero3');
  assert.is(readFileSync(path.join(boot, 'Image'), 'utf8'), 'ARM64 KERNEL IMAGE\n');
  assert.equal(readFileSync(path.join(boot, 'uInitrd')), readFileSync(path.join(base, 'boot/uInitrd-6.6.31-current-sunxi64')));
  assert.is(readFileSync(path.join(boot, 'sun50i-h618-orangepi-zero3.dtb'), 'utf8'), 'DTB\n');
  const pxe = readFileSync(path.join(tmp, 'out-dir/opz3/tftp/pxelinux.cfg/01-02-00-c0-00-02-3c'), 'utf8');
  for (const name of ['Image', 'uInitrd', 'sun50i-h618-orangepi-zero3.dtb'])
    assert.ok(existsSync(path.join(boot, name)) && pxe.includes(`boot/orangepi-zero3/${name}`));
});

test('reproducible: another directory, another time, a tarball of the base: identical SHA256SUMS', async () => {
  await builtFromDirectory();
  await new Promise((r) => setTimeout(r, 1100));
  await build(options('out-again', { formats: ['tar'] }));
  assert.is(sums('out-again'), sums('out-dir'));
  const tarball = path.join(tmp, 'armbian.tar.gz');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', base, '-czf', tarball, '.']);
  await build(options('out-tarball', { base: tarball, formats: ['tar'] }));
  assert.is(archiveSums('out-tarball'), archiveSums('out-dir'));
  assert.ok(archiveSums('out-dir').split('\n').length >= NODES.length);
});

test('a partitioned disk image (no mount) gives the same node roots as the directory it was made from', async () => {
  await builtFromDirectory();
  const image = path.join(tmp, 'armbian.img');
  await makeDiskImage(base, image);
  const result = await build(options('out-image', { base: image }));
  assert.is(result.base?.kind, 'image');
  const listing = async (out: string) =>
    (await execa('tar', ['--numeric-owner', '-tvzf', path.join(tmp, out, 'opz3/artifacts/opz3-2-midden.tar.gz')])).stdout
      .split('\n')
      // mkfs.ext4 adds lost+found, which dates the root directory then; everything else must be as in the directory, dates included.
      .filter((l) => !l.endsWith(' ./lost+found/') && !l.endsWith(' ./'))
      .join('\n');
  assert.is(await listing('out-image'), await listing('out-dir'));
  const root = path.join(tmp, 'out-image/opz3/rootfs/opz3-2-midden');
  assert.is(statSync(path.join(root, 'usr/bin/perl')).ino, statSync(path.join(root, 'usr/bin/perl5.36.0')).ino);
  assert.match((await execa('getcap', [path.join(root, 'usr/bin/ping')])).stdout, /cap_net_raw[=+]ep/);
});

test('incremental: an unchanged rebuild reuses every node and does not read the base at all', async () => {
  const tarball = path.join(tmp, 'armbian-incremental.tar.gz');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', base, '-czf', tarball, '.']);
  const first = await build(options('out-incr', { base: tarball }));
  assert.equal(first.rebuilt, NODES);
  const before = sums('out-incr');
  // Remove what the base was read into: an unchanged rebuild must not need it.
  for (const entry of await readdir(path.join(tmp, 'cache/bases'))) await rm(path.join(tmp, 'cache/bases', entry), { recursive: true });
  const second = await build(options('out-incr', { base: tarball }));
  assert.is(second.base?.reused, true);
  assert.equal(second.reused, NODES);
  assert.equal(second.rebuilt, []);
  // It reports what the first build reported: the boot files it kept count, and the base it did not read has the entries it had.
  assert.is(second.files, first.files);
  assert.ok(first.base!.entries! > 0, `the base was counted: ${first.base!.entries}`);
  assert.is(second.base?.entries, first.base!.entries);
  assert.equal(await readdir(path.join(tmp, 'cache/bases')), [], 'the base was not extracted again');
  assert.is(sums('out-incr'), before);
  assert.ok(existsSync(path.join(tmp, 'out-incr/opz3/tftp/boot/orangepi-zero3/Image')), 'boot files kept');
  assert.ok(existsSync(path.join(tmp, 'out-incr/opz3/rootfs/opz3-1-onder/usr/local/bin/k3s')), 'trees kept');
});

test("without SOURCE_DATE_EPOCH, what netroot writes is dated like the base's newest file, base files keep theirs, and an unchanged rebuild still reads nothing", async () => {
  const tarball = path.join(tmp, 'armbian-no-epoch.tar.gz');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', base, '-czf', tarball, '.']);
  const newest = Math.max(
    ...(await execa('find', [base, '-printf', '%T@\\n'])).stdout
      .trim()
      .split('\n')
      .map((t) => Math.floor(Number(t))),
  );
  const osRelease = Math.floor(statSync(path.join(base, 'etc/os-release')).mtimeMs / 1000);
  const first = await build(options('out-no-epoch', { base: tarball, formats: ['tar'], env: {} }));
  assert.equal(first.rebuilt, NODES);
  const listing = (await execa('tar', ['--full-time', '--utc', '-tvzf', path.join(tmp, 'out-no-epoch/opz3/artifacts/opz3-1-onder.tar.gz')]))
    .stdout;
  const dated = (name: string) => {
    const line = listing.split('\n').find((l) => l.endsWith(` ./${name}`));
    assert.ok(line, name);
    return Date.parse(`${/ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) /.exec(line!)![1]!.replace(' ', 'T')}Z`) / 1000;
  };
  assert.is(dated('etc/os-release'), osRelease, 'a base file keeps its mtime');
  assert.is(dated('etc/hostname'), newest, "an overlay file gets the base's newest mtime");
  assert.is(dated('usr/local/bin/k3s'), newest, 'so does the k3s binary');
  assert.ok(newest > 0 && osRelease <= newest);
  const before = sums('out-no-epoch');
  for (const entry of await readdir(path.join(tmp, 'cache/bases'))) await rm(path.join(tmp, 'cache/bases', entry), { recursive: true });
  const again = await build(options('out-no-epoch', { base: tarball, formats: ['tar'], env: {} }));
  assert.is(again.base?.reused, true, 'the default epoch came from the previous build, not the base');
  assert.equal(again.rebuilt, []);
  assert.is(sums('out-no-epoch'), before);
  // And a build elsewhere, reading the base afresh, gives the same bytes.
  await build(options('out-no-epoch-2', { base: tarball, formats: ['tar'], env: {} }));
  assert.is(sums('out-no-epoch-2'), before);
});

test('incremental, directory base: unchanged is not read; a rewrite that keeps size and mtime is noticed', async () => {
  const dirBase = path.join(tmp, 'armbian-dir-incremental');
  await execa('cp', ['-a', base, dirBase]);
  const first = await build(options('out-dir-incr', { base: dirBase, formats: ['tar'] }));
  assert.equal(first.rebuilt, NODES);
  const before = archiveSums('out-dir-incr');
  const unchanged = await build(options('out-dir-incr', { base: dirBase, formats: ['tar'] }));
  assert.is(unchanged.base?.reused, true);
  assert.equal(unchanged.rebuilt, []);
  // Other bytes, same size, mtime put back: what cp -p or a careless restore does.
  const file = path.join(dirBase, 'etc/os-release');
  await execa('cp', ['-p', file, path.join(tmp, 'os-release.ref')]);
  await writeFile(file, readFileSync(file, 'utf8').replace('Armbian', 'Armbia_'));
  await execa('touch', ['-r', path.join(tmp, 'os-release.ref'), file]);
  const changed = await build(options('out-dir-incr', { base: dirBase, formats: ['tar'] }));
  assert.is(changed.base?.reused, false);
  assert.equal(changed.rebuilt, NODES);
  for (const line of archiveSums('out-dir-incr').split('\n')) assert.not.ok(before.includes(line), `${line} has the new content`);
});

test('incremental: a change to one node re-packs that node only', async () => {
  const before = sums('out-incr');
  const tarball = path.join(tmp, 'armbian-incremental.tar.gz');
  const profile = path.join(tmp, 'opz3-changed.yaml');
  // extends keeps the cluster (and its name); one node gets another interface.
  await writeFile(profile, `extends: ${path.resolve('profiles/opz3.yaml')}\nnodes:\n  - { name: opz3-4-top, interface: eth1 }\n`);
  const result = await build(options('out-incr', { base: tarball, profile }));
  assert.equal(result.rebuilt, ['opz3-4-top']);
  assert.equal(result.reused, NODES.slice(0, 3));
  const line = (text: string, name: string) => text.split('\n').find((l) => l.endsWith(`  ${name}`));
  for (const node of NODES.slice(0, 3)) assert.is(line(sums('out-incr'), `${node}.tar.gz`), line(before, `${node}.tar.gz`), node);
  assert.is.not(line(sums('out-incr'), 'opz3-4-top.tar.gz'), line(before, 'opz3-4-top.tar.gz'));
  const check = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(tmp, 'out-incr/opz3/artifacts'), reject: false });
  assert.is(check.exitCode, 0, check.stdout);
  const config = readFileSync(path.join(tmp, 'out-incr/opz3/rootfs/opz3-4-top/etc/rancher/k3s/config.yaml'), 'utf8');
  assert.match(config, /flannel-iface: "eth1"/);
});

/** The command line of a tar build of opz3 on this test's base, with its own cache and output under tmp. */
const tarBuild = (cache: string, out: string): string[] => [
  ...CLI_ARGS,
  '--profile',
  path.resolve('profiles/opz3.yaml'),
  '--secrets',
  path.join(tmp, 'secrets.yaml'),
  '--cache-dir',
  path.join(tmp, cache),
  '--k3s-binary',
  path.join(tmp, 'k3s'),
  '--base',
  base,
  '--format',
  'tar',
  '--out',
  path.join(tmp, out),
];

test('incremental: the default compression is part of the key, so a build after zstd is installed is not reused', async () => {
  // A PATH with every program of this machine but zstd: "zstd not installed".
  const bin = await binWithout(tmp, ['zstd']);
  const cli = (PATH: string) =>
    execa(process.execPath, [...tarBuild('cache', 'out-zstd'), '--json'], {
      env: { PATH, SOURCE_DATE_EPOCH: EPOCH, HOME: tmp },
      extendEnv: false,
      cwd: path.resolve('.'),
    }).then((r) => JSON.parse(r.stdout) as { rebuilt: string[]; artifacts: { name: string }[] });
  const without = await cli(bin);
  assert.equal(without.rebuilt, NODES);
  assert.not.ok(without.artifacts.some((a) => a.name.endsWith('.zst')));
  const withZstd = await cli(process.env.PATH!);
  assert.equal(withZstd.rebuilt, NODES, 'rebuilt now that zstd is there');
  assert.ok(withZstd.artifacts.some((a) => a.name === 'opz3-1-onder.tar.zst'));
  assert.equal((await cli(process.env.PATH!)).rebuilt, [], 'and reused when nothing changed');
});

test('without the attr tools, a directory base stops the build and says what to install (capabilities are never dropped in silence)', async () => {
  const bin = await binWithout(tmp, ['getfattr', 'setfattr']);
  const run = await execa(process.execPath, tarBuild('cache-attr', 'out-attr'), {
    env: { PATH: bin, HOME: tmp },
    extendEnv: false,
    reject: false,
    cwd: path.resolve('.'),
  });
  assert.is(run.exitCode, 3, run.stdout); // a missing program: EXIT_MISSING_PROGRAM in src/errors.ts
  assert.match(run.stderr, /getfattr is not installed on this machine \(needed for .*\): install the Debian package attr/);
  assert.not.ok(existsSync(path.join(tmp, 'out-attr', 'opz3')), 'nothing written');
});

/** Every path with its type, mode, owner, link target and content digest: what a node's root is. */
async function describeTree(root: string): Promise<string> {
  const { stdout } = await execa('bash', [
    '-c',
    `cd "$1" && find . -printf '%p %y %m %U:%G %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum`,
    '_',
    root,
  ]);
  return stdout;
}

test('incremental trees: a tree revised from the previous build equals one built from scratch', async () => {
  const changed = path.join(tmp, 'opz3-no-longhorn.yaml');
  // Longhorn off drops files from every node (mount unit, manifest, iscsid links): they must come back as the base has them, or go.
  await writeFile(
    changed,
    `extends: ${path.resolve('profiles/opz3.yaml')}\nlonghorn: { enabled: false }\nnodes:\n  - { name: opz3-2-midden, interface: eth7 }\n`,
  );
  await build(options('out-revise', { formats: ['tree'] }));
  const revised = await build(options('out-revise', { formats: ['tree'], profile: changed }));
  assert.equal(revised.rebuilt, NODES);
  await build(options('out-fresh', { formats: ['tree'], profile: changed }));
  for (const node of NODES) {
    const a = await describeTree(path.join(tmp, 'out-revise/opz3/rootfs', node));
    const b = await describeTree(path.join(tmp, 'out-fresh/opz3/rootfs', node));
    assert.is(a, b, node);
    assert.not.ok(existsSync(path.join(tmp, 'out-revise/opz3/rootfs', node, 'etc/systemd/system/var-lib-longhorn.mount')));
  }
  // And back: the files return.
  await build(options('out-revise', { formats: ['tree'] }));
  await build(options('out-fresh2', { formats: ['tree'] }));
  for (const node of NODES) {
    assert.is(
      await describeTree(path.join(tmp, 'out-revise/opz3/rootfs', node)),
      await describeTree(path.join(tmp, 'out-fresh2/opz3/rootfs', node)),
      node,
    );
  }
});

test('incremental trees: a build that fails after revising trees in place leaves the previous output as it was', async () => {
  const changed = path.join(tmp, 'opz3-rollback.yaml');
  await writeFile(changed, `extends: ${path.resolve('profiles/opz3.yaml')}\nlonghorn: { enabled: false }\n`);
  await build(options('out-rollback'));
  const before = await Promise.all(NODES.map((n) => describeTree(path.join(tmp, 'out-rollback/opz3/rootfs', n))));
  const sumsBefore = sums('out-rollback');
  // Fails once every tree has been moved into the new output and revised, as packing starts.
  const failing = {
    ...silentReporter,
    step: (label: string) => {
      if (label.startsWith('packing')) throw new Error('disk full (simulated)');
      return silentReporter.step(label);
    },
  };
  await rejects(() => build(options('out-rollback', { profile: changed, reporter: failing })), /disk full/);
  const after = await Promise.all(NODES.map((n) => describeTree(path.join(tmp, 'out-rollback/opz3/rootfs', n))));
  assert.equal(after, before);
  assert.is(sums('out-rollback'), sumsBefore);
  assert.equal((await readdir(path.join(tmp, 'out-rollback'))).sort(), ['opz3'], 'no staging left');
  assert.not.ok((await readdir(path.join(tmp, 'out-rollback/opz3'), { withFileTypes: false })).some((n) => n.startsWith('.netroot-undo')));
  // And the next build, from the intact previous output, still revises correctly.
  const next = await build(options('out-rollback', { profile: changed }));
  assert.equal(next.rebuilt, NODES);
});

test('incremental archives: a template change revises every archive in place, equal to a build from scratch; a failure after puts them back', async () => {
  // keepalived.conf changes on the servers, and no node writes or removes another path.
  const changed = path.join(tmp, 'opz3-keepalived.yaml');
  await writeFile(changed, `extends: ${path.resolve('profiles/opz3.yaml')}\nkeepalived: { virtualRouterId: 51, advertInterval: 2 }\n`);
  await build(options('out-tail', { formats: ['tar'] }));
  const archive = (out: string, node: string) => path.join(tmp, out, 'opz3/artifacts', `${node}.tar.gz`);
  const inodes = NODES.map((n) => statSync(archive('out-tail', n)).ino);
  const before = NODES.map((n) => readFileSync(archive('out-tail', n)));
  const sumsBefore = sums('out-tail');
  const servers = NODES.slice(0, 3);

  // Fails once every archive has been revised and SHA256SUMS written.
  const failing = {
    ...silentReporter,
    step: (label: string, ...rest: [number?, string?]) => {
      const step = silentReporter.step(label, ...rest);
      if (label !== 'packing node artifacts') return step;
      return {
        ...step,
        finish: () => {
          throw new Error('disk full (simulated)');
        },
      };
    },
  };
  const changedAt = () => NODES.map((n) => statSync(archive('out-tail', n)).ctimeMs);
  const ctimes = changedAt();
  await rejects(() => build(options('out-tail', { formats: ['tar'], profile: changed, reporter: failing })), /disk full/);
  // The servers' archives were moved and revised before the failure (ctime; the worker's was hard-linked,
  // which changes its ctime too), and came back whole.
  assert.equal(
    changedAt().map((c, i) => c !== ctimes[i]),
    [true, true, true, true],
  );
  assert.is(sums('out-tail'), sumsBefore);
  NODES.forEach((n, i) => assert.ok(readFileSync(archive('out-tail', n)).equals(before[i]!), n));
  assert.equal((await readdir(path.join(tmp, 'out-tail'))).sort(), ['opz3'], 'no staging left');

  const finished: string[] = [];
  const listening = {
    ...silentReporter,
    step: (label: string, ...rest: [number?, string?]) => {
      const step = silentReporter.step(label, ...rest);
      return { ...step, finish: (note?: string) => (finished.push(`${label}: ${note ?? ''}`), step.finish(note)) };
    },
  };
  const revised = await build(options('out-tail', { formats: ['tar'], profile: changed, reporter: listening }));
  assert.equal(revised.rebuilt, servers);
  assert.ok(finished.includes('packing node artifacts: 4 artifacts, 3 revised in place'), finished.join('\n'));
  // The servers' archives are the same files, revised; the worker's is linked from the previous output.
  assert.equal(
    NODES.map((n) => statSync(archive('out-tail', n)).ino),
    inodes,
  );
  await build(options('out-tail-fresh', { formats: ['tar'], profile: changed }));
  assert.is(archiveSums('out-tail'), archiveSums('out-tail-fresh'));
  assert.is.not(
    archiveSums('out-tail'),
    sumsBefore
      .split('\n')
      .filter((l) => l.includes('.tar.'))
      .join('\n'),
  );
  const check = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(tmp, 'out-tail/opz3/artifacts'), reject: false });
  assert.is(check.exitCode, 0, check.stdout);
});

async function failsCleanly(extra: Partial<BuildOptions>, pattern: RegExp, out: string): Promise<void> {
  const error = await rejects(() => build(options(out, extra)), pattern);
  assert.is((error as { exitCode?: number }).exitCode, 2, error.message);
  assert.not.ok(existsSync(path.join(tmp, out)), `${out} was written`);
}

test("a base without the cluster's packages fails naming them", async () => {
  const lacking = path.join(tmp, 'lacking');
  await makeArmbianBase(lacking, path.join(tmp, 'work-lacking'), { without: ['keepalived', 'galera-4'] });
  await failsCleanly({ base: lacking }, /lacks packages the cluster's nodes need: galera-4, keepalived/, 'out-lacking');
});

test('an initrd that cannot mount an NFS root, in a base that cannot regenerate it, fails saying so', async () => {
  const nonfs = path.join(tmp, 'nonfs');
  await makeArmbianBase(nonfs, path.join(tmp, 'work-nonfs'), { initrdWithoutNfs: true });
  await failsCleanly(
    { base: nonfs },
    /initrd \/boot\/uInitrd in the base cannot mount an NFS root[\s\S]*has none \(no \/usr\/sbin\/update-initramfs\)[\s\S]*MODULES=netboot/,
    'out-nonfs',
  );
});

test('a missing kernel fails naming the path', async () => {
  const nokernel = path.join(tmp, 'nokernel');
  await makeArmbianBase(nokernel, path.join(tmp, 'work-nokernel'));
  await rm(path.join(nokernel, 'boot/Image-6.6.31-current-sunxi64'));
  await failsCleanly(
    { base: nokernel },
    /the board's kernel \/boot\/Image is not a file in the base .* \(it leads to \/boot\/Image-6\.6\.31-current-sunxi64\)/,
    'out-nokernel',
  );
});

test('hostile bases: a tar member with .. and a base whose etc is a symlink out of it touch nothing outside', async () => {
  const sentinel = path.join(tmp, 'sentinel');
  await mkdir(sentinel);
  // A tarball whose member climbs out of the extraction directory.
  const evil = path.join(tmp, 'evil');
  await mkdir(path.join(evil, 'x'), { recursive: true });
  await writeFile(path.join(evil, 'x', 'escape'), 'pwned\n');
  const evilTar = path.join(tmp, 'evil.tar');
  await execa('tar', ['-C', evil, '-cf', evilTar, '--transform', 's,^\\./x/escape,../../../sentinel/escape,', './x/escape']);
  await failsCleanly({ base: evilTar }, /\.\.|outside/, 'out-evil-tar');
  assert.equal(await readdir(sentinel), []);
  // A directory base whose etc points out of the base: the overlay must not follow it.
  const hostile = path.join(tmp, 'hostile');
  await makeArmbianBase(hostile, path.join(tmp, 'work-hostile'));
  await rm(path.join(hostile, 'etc'), { recursive: true });
  await symlink(sentinel, path.join(hostile, 'etc'));
  await rejects(() => build(options('out-hostile', { base: hostile })), /etc/);
  assert.not.ok(existsSync(path.join(tmp, 'out-hostile')));
  assert.equal(await readdir(sentinel), [], 'nothing was written through the base symlink');
});

test('--format without a base is a usage error', async () => {
  const { base: _unused, ...rest } = options('out-nobase');
  await failsCleanly(
    { ...rest, base: undefined as unknown as string } as Partial<BuildOptions>,
    /needs a base root filesystem/,
    'out-nobase',
  );
});
