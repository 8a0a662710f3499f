/**
 * `debootstrap:SUITE:ARCH[:PKG,…]` bases: the spec is parsed strictly, the
 * cache key ignores package order, apt sources follow the host's, foreign
 * architectures need qemu-user registered, and one real mmdebstrap build for
 * the host's architecture is made once and then reused.
 *
 * The real build downloads about 70 MB from the host's Debian mirror and took
 * about 60 s here (2 cores). Needs
 * mmdebstrap (root mode: run as root) and tar.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { NetrootError, UsageError } from '../../src/errors.js';
import {
  buildDebootstrapBase,
  checkEmulation,
  debootstrapCachePath,
  formatDebootstrapSpec,
  hostArchitecture,
  mmdebstrapArgs,
  parseDebootstrapSpec,
  parseIndexTargets,
  sourcesForSuite,
} from '../../src/base/debootstrap.js';
import { cachedFile } from '../../src/cache.js';
import { parseDpkgStatus } from '../../src/base/dpkg.js';
import { rejects } from '../support/assert.js';

let tmp: string;
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-debootstrap-'));
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('good specs parse; packages are sorted and deduplicated', () => {
  assert.equal(parseDebootstrapSpec('debootstrap:bookworm:arm64'), { suite: 'bookworm', arch: 'arm64', packages: [] });
  assert.equal(parseDebootstrapSpec('debootstrap:trixie:amd64:openssh-server,netbase,libstdc++6,netbase'), {
    suite: 'trixie',
    arch: 'amd64',
    packages: ['libstdc++6', 'netbase', 'openssh-server'],
  });
  assert.equal(parseDebootstrapSpec('debootstrap:stable-backports:armhf:nfs-common').suite, 'stable-backports');
});

test('bad specs are usage errors that show the expected form', () => {
  const cases: [string, RegExp][] = [
    ['debian:bookworm:arm64', /does not start with "debootstrap:"/],
    ['debootstrap:bookworm', /1 field after/],
    ['debootstrap:bookworm:arm64:netbase:extra', /4 fields/],
    ['debootstrap::arm64', /"" is not a Debian suite/],
    ['debootstrap:Bookworm:arm64', /not a Debian suite/],
    ['debootstrap:bookworm:aarch64', /Debian calls it arm64/],
    ['debootstrap:bookworm:sparc', /one of amd64, arm64/],
    ['debootstrap:bookworm:arm64:', /an empty entry/],
    ['debootstrap:bookworm:arm64:netbase,,curl', /an empty entry/],
    ['debootstrap:bookworm:arm64:Netbase', /"Netbase" is not a Debian package name/],
    ['debootstrap:bookworm:arm64:a', /"a" is not a Debian package name/],
    ['debootstrap:bookworm:arm64:netbase;rm -rf', /not a Debian package name/],
  ];
  for (const [spec, why] of cases) {
    try {
      parseDebootstrapSpec(spec);
      assert.unreachable(`${spec} was accepted`);
    } catch (error) {
      assert.instance(error, UsageError, spec);
      assert.is((error as UsageError).exitCode, 2);
      assert.match((error as Error).message, why);
      assert.match((error as Error).message, 'expected debootstrap:SUITE:ARCH[:PACKAGE,PACKAGE…]');
    }
  }
});

test('the cache key is the normalised spec: package order and repeats do not matter', () => {
  const a = parseDebootstrapSpec('debootstrap:bookworm:arm64:netbase,curl');
  const b = parseDebootstrapSpec('debootstrap:bookworm:arm64:curl,netbase,curl');
  assert.is(formatDebootstrapSpec(a), 'debootstrap:bookworm:arm64:curl,netbase');
  assert.is(debootstrapCachePath('/c', a), debootstrapCachePath('/c', b));
  assert.match(debootstrapCachePath('/c', a), /^\/c\/debootstrap\/[0-9a-f]{64}\.tar$/);
  assert.is.not(debootstrapCachePath('/c', a), debootstrapCachePath('/c', parseDebootstrapSpec('debootstrap:bookworm:amd64:netbase,curl')));
  assert.is(formatDebootstrapSpec(parseDebootstrapSpec('debootstrap:bookworm:arm64')), 'debootstrap:bookworm:arm64');
});

test('mmdebstrap is asked for minbase, the architecture, the packages and a tarball, with initramfs set to netboot first and made once', async () => {
  const args = mmdebstrapArgs(parseDebootstrapSpec('debootstrap:bookworm:arm64:netbase,curl'), '/c/x.tmp', ['deb URI bookworm main']);
  const hook = args.find((a) => a.startsWith('--setup-hook='));
  // update-initramfs is a no-op during the install and runs once at the end (test/build/debootstrap.test.ts
  // boots-checks the initrd that run makes).
  const once = args.filter((a) => a.startsWith('--essential-hook=') || a.startsWith('--customize-hook='));
  assert.equal(once.length, 2);
  assert.match(once[0]!, /^--essential-hook=.*dpkg-divert .*--add \/usr\/sbin\/update-initramfs/);
  assert.match(once[1]!, /^--customize-hook=.*dpkg-divert .*--remove \/usr\/sbin\/update-initramfs.*update-initramfs -c -k/);
  assert.equal(args.filter((a) => a !== hook && !once.includes(a)), ['--variant=minbase', '--architectures=arm64', '--format=tar', '--include=curl,netbase', '--', 'bookworm', '/c/x.tmp', 'deb URI bookworm main']);
  // mmdebstrap runs a setup hook as `sh -c HOOK exec CHROOT` before any package is installed.
  const root = await mkdtemp(path.join(os.tmpdir(), 'netroot-hook-'));
  try {
    await execa('sh', ['-c', hook!.slice('--setup-hook='.length), 'exec', root]);
    const conf = await readFile(path.join(root, 'etc/initramfs-tools/conf.d/netroot-netboot.conf'), 'utf8');
    assert.match(conf, /^MODULES=netboot$/m);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  assert.not.ok(mmdebstrapArgs(parseDebootstrapSpec('debootstrap:bookworm:arm64'), 'o', []).some((a) => a.startsWith('--include')));
});

test("apt sources follow the host's: its Debian repositories with the suite swapped, third-party ones left out", () => {
  // What `apt-get indextargets` prints for a host with a local mirror and one third-party repository.
  const targets = parseIndexTargets(
    [
      'http://mirror.example/debian/\tbookworm\tmain\tdeb',
      'http://mirror.example/debian/\tbookworm\tnon-free-firmware\tdeb',
      'http://mirror.example/debian/\tbookworm\tmain\tdeb',
      'http://mirror.example/debian/\tbookworm\tmain\tdeb-src',
      'http://mirror.example/debian/\tbookworm-updates\tmain\tdeb',
      'http://mirror.example/debian-security/\tbookworm-security\tmain\tdeb',
      'https://vendor.example/apt/\tnodistro\tmain\tdeb',
      '',
    ].join('\n'),
  );
  assert.equal(sourcesForSuite(targets, 'bookworm', 'trixie'), [
    'deb http://mirror.example/debian/ trixie main non-free-firmware',
    'deb http://mirror.example/debian/ trixie-updates main',
    'deb http://mirror.example/debian-security/ trixie-security main',
  ]);
  assert.equal(sourcesForSuite(targets, 'bookworm', 'sid'), ['deb http://mirror.example/debian/ sid main non-free-firmware']);
  assert.is(sourcesForSuite(targets, 'jammy', 'bookworm'), undefined);
});

test('a foreign architecture without qemu-user registered is refused with what to install', async () => {
  const binfmt = path.join(tmp, 'binfmt_misc');
  await mkdir(binfmt, { recursive: true });
  const foreign = hostArchitecture() === 'arm64' ? 'amd64' : 'arm64';
  const qemu = foreign === 'arm64' ? 'qemu-aarch64' : 'qemu-x86_64';
  const error = await rejects(() => checkEmulation(foreign, binfmt), /install the Debian packages qemu-user-static and binfmt-support/i);
  assert.instance(error, NetrootError);
  assert.match(error.message, `${qemu} is not registered`);
  await writeFile(path.join(binfmt, qemu), 'disabled\ninterpreter /usr/libexec/qemu-binfmt/x\n');
  await rejects(() => checkEmulation(foreign, binfmt), /is disabled.*update-binfmts --enable/);
  await writeFile(path.join(binfmt, qemu), 'enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n');
  await checkEmulation(foreign, binfmt);
  await checkEmulation(hostArchitecture(), path.join(tmp, 'nowhere'));
});

test('a real minbase build for the host architecture is made once and reused', async () => {
  const cacheDir = path.join(tmp, 'cache');
  const spec = `debootstrap:bookworm:${hostArchitecture()}:netbase`;
  const logs: string[] = [];
  const started = Date.now();
  const tarball = await buildDebootstrapBase(spec, { cacheDir, log: (l) => logs.push(l) });
  console.log(`  mmdebstrap ${spec}: ${Math.round((Date.now() - started) / 1000)} s`);
  assert.is(tarball, debootstrapCachePath(cacheDir, parseDebootstrapSpec(spec)));
  assert.equal(await readdir(path.dirname(tarball)), [path.basename(tarball)], 'no temporaries left');
  const status = await execa('tar', ['-xOf', tarball, './var/lib/dpkg/status'], { timeout: 60_000 });
  const installed = parseDpkgStatus(status.stdout);
  assert.ok(installed.has('netbase'));
  assert.is(installed.get('base-files')?.architecture, hostArchitecture());
  assert.not.ok(installed.has('systemd'), 'minbase');
  const first = await stat(tarball);
  const again = Date.now();
  assert.is(await buildDebootstrapBase('debootstrap:bookworm:' + hostArchitecture() + ':netbase,netbase', { cacheDir, log: (l) => logs.push(l) }), tarball);
  assert.ok(Date.now() - again < 5_000, 'the second call does not rebuild');
  assert.is((await stat(tarball)).mtimeMs, first.mtimeMs);
  assert.ok(logs.some((l) => l.includes('built earlier')));
  assert.ok(logs.some((l) => l.startsWith('mmdebstrap: I: ')), 'mmdebstrap progress reaches the log');
});

test('a failed build leaves nothing in the cache and shows the end of mmdebstrap\'s output', async () => {
  const cacheDir = path.join(tmp, 'cache-fail');
  const spec = `debootstrap:bookworm:${hostArchitecture()}:netroot-no-such-package`;
  const error = await rejects(() => buildDebootstrapBase(spec, { cacheDir }), /mmdebstrap could not build/);
  assert.instance(error, NetrootError);
  assert.match(error.message, /netroot-no-such-package/);
  assert.equal(await readdir(path.join(cacheDir, 'debootstrap')), []);
});

test('cache files: concurrent builds of one key both succeed, temporaries of dead runs are swept', async () => {
  const dir = path.join(tmp, 'cache-unit');
  await mkdir(dir, { recursive: true });
  const stale = path.join(dir, '.x.tar.tmp-999999999-abcd');
  const live = path.join(dir, `.y.tar.tmp-${process.pid}-beef`);
  await writeFile(stale, 'half');
  await writeFile(live, 'in progress');
  const final = path.join(dir, 'x.tar');
  const build = (content: string) => async (temporary: string) => {
    await writeFile(temporary, content);
    await new Promise((resolve) => setTimeout(resolve, 50));
  };
  const [a, b] = await Promise.all([cachedFile(final, build('same')), cachedFile(final, build('same'))]);
  assert.ok(a.built && b.built);
  assert.equal((await readdir(dir)).sort(), ['.y.tar.tmp-' + process.pid + '-beef', 'x.tar']);
  assert.is((await cachedFile(final, build('other'))).built, false);
  await rejects(() => cachedFile(path.join(dir, 'z.tar'), async (t) => {
    await writeFile(t, 'partial');
    throw new Error('boom');
  }), /boom/);
  assert.not.ok((await readdir(dir)).some((n) => n.includes('z.tar')));
});

test('cache files: a build that another live process is making is waited for, and made here if that process dies without it', async () => {
  const dir = path.join(tmp, 'cache-wait');
  await mkdir(dir, { recursive: true });
  const final = path.join(dir, 'w.tar');
  const builder = execa('sleep', ['30'], { reject: false });
  const theirs = path.join(dir, `.w.tar.tmp-${builder.pid}-abcd`);
  await writeFile(theirs, 'in progress');
  let builtHere = 0;
  const build = async (temporary: string) => {
    builtHere++;
    await writeFile(temporary, 'mine');
  };
  const waited: number[] = [];
  setTimeout(() => void writeFile(final, 'theirs').then(() => rm(theirs)), 300);
  const result = await cachedFile(final, build, { pollMs: 50, onWait: (pid) => waited.push(pid) });
  assert.equal(waited, [builder.pid]);
  assert.is(result.built, false);
  assert.is(builtHere, 0);
  assert.is(await readFile(final, 'utf8'), 'theirs');

  // Killed before it renamed its file into place: this run builds it.
  const other = path.join(dir, 'v.tar');
  await writeFile(path.join(dir, `.v.tar.tmp-${builder.pid}-abcd`), 'half');
  setTimeout(() => builder.kill('SIGKILL'), 300);
  const again = await cachedFile(other, build, { pollMs: 50 });
  await builder;
  assert.is(again.built, true);
  assert.is(builtHere, 1);
  assert.is(await readFile(other, 'utf8'), 'mine');
});

