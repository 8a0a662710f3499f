/**
 * `debootstrap:SUITE:ARCH[:PKG,…]` bases: the spec is parsed strictly, the
 * cache key ignores package order, apt sources follow the host's, foreign
 * architectures need qemu-user registered. The real mmdebstrap builds are in
 * debootstrap.slow.test.ts.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { NetrootError, UsageError } from '../../src/errors.js';
import {
  checkEmulation,
  debootstrapCachePath,
  formatDebootstrapSpec,
  hostArchitecture,
  mmdebstrapArgs,
  parseDebootstrapSpec,
  parseIndexTargets,
  sourcesForSuite,
} from '../../src/base/debootstrap.js';
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
  // update-initramfs is a no-op during the install and runs once at the end (test/build/debootstrap.slow.test.ts
  // boots-checks the initrd that run makes).
  const once = args.filter((a) => a.startsWith('--essential-hook=') || a.startsWith('--customize-hook='));
  assert.equal(once.length, 2);
  assert.match(once[0]!, /^--essential-hook=.*dpkg-divert .*--add \/usr\/sbin\/update-initramfs/);
  assert.match(once[1]!, /^--customize-hook=.*dpkg-divert .*--remove \/usr\/sbin\/update-initramfs.*update-initramfs -c -k/);
  assert.equal(
    args.filter((a) => a !== hook && !once.includes(a)),
    [
      '--variant=minbase',
      '--architectures=arm64',
      '--format=tar',
      '--include=curl,netbase',
      '--',
      'bookworm',
      '/c/x.tmp',
      'deb URI bookworm main',
    ],
  );
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
