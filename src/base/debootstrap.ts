/**
 * A base made from Debian packages instead of a vendor image:
 * `debootstrap:SUITE:ARCH[:PACKAGE,PACKAGE…]`, built by mmdebstrap
 * (`--variant=minbase`) into a tarball and cached under a key of the
 * normalised spec, so each distinct spec is built once per cache.
 *
 * Packages come from the mirrors this machine's apt already uses (read with
 * `apt-get indextargets`, apt's own parser of sources.list and
 * sources.list.d), with the suite swapped for the requested one. Left to
 * itself, mmdebstrap would use a mirror compiled into it, which a build host
 * behind a local mirror or proxy may not reach. When the host's sources name
 * no Debian suite, mmdebstrap's own default is used and the log says so.
 *
 * A foreign architecture (arm64 on an amd64 host) runs its maintainer scripts
 * through qemu-user, which the kernel only does when binfmt_misc has the
 * interpreter registered; that is checked first so the user gets a clear
 * instruction rather than an "Exec format error" deep in mmdebstrap's log.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { runTool, startTool } from '../tools.js';
import { NetrootError, UsageError } from '../errors.js';
import { cachedFile, sha256 } from '../cache.js';
import { whenStopped } from '../stop.js';

export interface DebootstrapSpec {
  suite: string;
  /** Debian architecture name (arm64, amd64, armhf, …). */
  arch: string;
  /** Extra packages, sorted and without duplicates. */
  packages: string[];
}

export interface BuildOptions {
  /** Tarballs go to `<cacheDir>/debootstrap/<sha256 of the normalised spec>.tar`. */
  cacheDir: string;
  log?: (line: string) => void;
  /** Whole mmdebstrap run; default 90 minutes (a foreign-architecture build under qemu is slow). */
  timeoutMs?: number;
  /** Apt source lines (`deb URI SUITE COMPONENTS`) to use instead of the ones derived from the host. */
  sources?: string[];
}

const FORM = 'debootstrap:SUITE:ARCH[:PACKAGE,PACKAGE…], e.g. debootstrap:bookworm:arm64:netbase,openssh-server';
const DEBIAN_ARCHES = ['amd64', 'arm64', 'armel', 'armhf', 'i386', 'mips64el', 'ppc64el', 'riscv64', 's390x', 'loong64'];
const ALIASES: Record<string, string> = {
  aarch64: 'arm64',
  x86_64: 'amd64',
  x64: 'amd64',
  arm: 'armhf',
  armv7: 'armhf',
  armv7l: 'armhf',
  i686: 'i386',
  ppc64le: 'ppc64el',
};
/** Debian policy 5.6.7: lower case letters, digits, + - . ; at least two characters, starting alphanumeric. */
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
const SUITE = /^[a-z][a-z0-9-]*$/;
const TIMEOUT = 90 * 60_000;

export function parseDebootstrapSpec(spec: string): DebootstrapSpec {
  const bad = (why: string): UsageError => new UsageError(`base ${JSON.stringify(spec)}: ${why}; expected ${FORM}`);
  const parts = spec.split(':');
  if (parts[0] !== 'debootstrap') throw bad('it does not start with "debootstrap:"');
  if (parts.length < 3 || parts.length > 4)
    throw bad(`it has ${parts.length - 1} field${parts.length === 2 ? '' : 's'} after "debootstrap:", not 2 or 3`);
  const [, suite = '', arch = '', list] = parts;
  if (!SUITE.test(suite)) throw bad(`${JSON.stringify(suite)} is not a Debian suite name (bookworm, trixie, stable, …)`);
  if (!DEBIAN_ARCHES.includes(arch)) {
    const hint = ALIASES[arch] ? ` (Debian calls it ${ALIASES[arch]})` : ` (one of ${DEBIAN_ARCHES.join(', ')})`;
    throw bad(`${JSON.stringify(arch)} is not a Debian architecture${hint}`);
  }
  const packages = list === undefined ? [] : list.split(',');
  for (const name of packages) {
    if (!PACKAGE.test(name))
      throw bad(`${JSON.stringify(name)} is not a Debian package name${name === '' ? ' (an empty entry in the list)' : ''}`);
  }
  return { suite, arch, packages: [...new Set(packages)].sort() };
}

/** The spec in one canonical spelling: what the cache key is made of. */
export function formatDebootstrapSpec(spec: DebootstrapSpec): string {
  const packages = [...new Set(spec.packages)].sort();
  return `debootstrap:${spec.suite}:${spec.arch}${packages.length ? `:${packages.join(',')}` : ''}`;
}

export function debootstrapCachePath(cacheDir: string, spec: DebootstrapSpec): string {
  return path.join(cacheDir, 'debootstrap', `${sha256(`${RECIPE} ${formatDebootstrapSpec(spec)}`)}.tar`);
}

export async function buildDebootstrapBase(spec: string | DebootstrapSpec, options: BuildOptions): Promise<string> {
  // An object spec goes through the parser too, so both forms meet the same rules.
  const parsed = parseDebootstrapSpec(typeof spec === 'string' ? spec : formatDebootstrapSpec(spec));
  const log = options.log ?? (() => undefined);
  const name = formatDebootstrapSpec(parsed);
  const final = debootstrapCachePath(options.cacheDir, parsed);
  const { built } = await cachedFile(
    final,
    async (temporary) => {
      await checkEmulation(parsed.arch);
      const sources = options.sources ?? (await hostSources(parsed.suite, log));
      const emulated = !runsNatively(hostArchitecture(), parsed.arch);
      log(
        `building ${name} with mmdebstrap, once: ${emulated ? `its programs run under qemu-user, so this takes about 30 minutes on 2 cores` : 'this takes minutes'}; ` +
          `the result is cached in ${path.dirname(final)}. mmdebstrap's progress follows`,
      );
      const started = Date.now();
      await runMmdebstrap(parsed, temporary, sources, options.timeoutMs ?? TIMEOUT, log);
      log(`built ${name} in ${Math.round((Date.now() - started) / 1000)} s`);
    },
    {
      onWait: (pid) =>
        log(`process ${pid} is building ${name} into ${path.dirname(final)} now: waiting for it instead of building it again`),
    },
  );
  if (!built) log(`using ${final}, built earlier for ${name}`);
  return final;
}

// ---------------------------------------------------------------------------
// Architecture and emulation

const NODE_TO_DEBIAN: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'armhf',
  ia32: 'i386',
  riscv64: 'riscv64',
  ppc64: 'ppc64el',
  s390x: 's390x',
  loong64: 'loong64',
};
/** binfmt_misc entry names registered by Debian's qemu-user-static / qemu-user-binfmt. */
const QEMU_NAME: Record<string, string> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  armel: 'arm',
  armhf: 'arm',
  i386: 'i386',
  mips64el: 'mips64el',
  ppc64el: 'ppc64le',
  riscv64: 'riscv64',
  s390x: 's390x',
  loong64: 'loongarch64',
};

export function hostArchitecture(): string {
  return NODE_TO_DEBIAN[process.arch] ?? process.arch;
}

/** CPUs that run the other architecture's binaries themselves (64-bit x86 runs i386; arm64 usually runs 32-bit arm). */
function runsNatively(host: string, arch: string): boolean {
  return host === arch || (host === 'amd64' && arch === 'i386') || (host === 'arm64' && (arch === 'armhf' || arch === 'armel'));
}

export async function checkEmulation(arch: string, binfmtDir = '/proc/sys/fs/binfmt_misc'): Promise<void> {
  const host = hostArchitecture();
  if (runsNatively(host, arch)) return;
  const entry = path.join(binfmtDir, `qemu-${QEMU_NAME[arch] ?? arch}`);
  const state = await readFile(entry, 'utf8').catch(() => undefined);
  if (state?.startsWith('enabled')) return;
  throw new NetrootError(
    `building a ${arch} base on this ${host} machine needs qemu-user emulation, but ${entry} is ${state === undefined ? 'not registered' : 'disabled'}. ` +
      'Install the Debian packages qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support); ' +
      `if they are installed, mount binfmt_misc and enable the interpreter (mount -t binfmt_misc binfmt_misc ${binfmtDir}; update-binfmts --enable qemu-${QEMU_NAME[arch] ?? arch}).`,
  );
}

// ---------------------------------------------------------------------------
// Apt sources

export interface IndexTarget {
  uri: string;
  release: string;
  component: string;
}

/** Parses `apt-get indextargets --format '$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(TARGET_OF)'`, binary (`deb`) entries only. */
export function parseIndexTargets(text: string): IndexTarget[] {
  const out: IndexTarget[] = [];
  for (const line of text.split('\n')) {
    const [uri, release, component, targetOf] = line.split('\t');
    if (uri && release && component && targetOf === 'deb') out.push({ uri, release, component });
  }
  return out;
}

/** URI → components, in the order apt lists them, for one release. */
function reposOf(targets: IndexTarget[], release: string): Map<string, string[]> {
  const repos = new Map<string, string[]>();
  for (const t of targets.filter((x) => x.release === release)) {
    const components = repos.get(t.uri) ?? [];
    if (!components.includes(t.component)) components.push(t.component);
    repos.set(t.uri, components);
  }
  return repos;
}

const NO_UPDATES = new Set(['unstable', 'sid', 'experimental', 'testing']);

/**
 * Source lines for `suite` made from the host's own Debian sources: the
 * repositories serving the host's codename, `-updates` and `-security`, with
 * the codename replaced. Third-party repositories (other release names) are
 * left out. Undefined when the host has no such sources.
 */
export function sourcesForSuite(targets: IndexTarget[], hostCodename: string, suite: string): string[] | undefined {
  const main = reposOf(targets, hostCodename);
  if (main.size === 0) return undefined;
  const lines: string[] = [];
  const add = (repos: Map<string, string[]>, release: string): void => {
    for (const [uri, components] of repos) lines.push(`deb ${uri} ${release} ${components.join(' ')}`);
  };
  add(main, suite);
  if (!NO_UPDATES.has(suite)) {
    add(reposOf(targets, `${hostCodename}-updates`), `${suite}-updates`);
    add(reposOf(targets, `${hostCodename}-security`), `${suite}-security`);
  }
  return lines;
}

async function hostCodename(): Promise<string | undefined> {
  const text = await readFile('/etc/os-release', 'utf8').catch(() => '');
  return /^VERSION_CODENAME=["']?([^"'\n]+)/m.exec(text)?.[1];
}

async function hostSources(suite: string, log: (line: string) => void): Promise<string[]> {
  const codename = await hostCodename();
  // Without apt (or its answer) mmdebstrap falls back to its own default mirror: not a reason to stop.
  const result = await runTool(
    'apt-get',
    ['indextargets', '--no-release-info', '--format', '$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(TARGET_OF)'],
    {
      accept: 'any',
      timeout: 60_000,
    },
  ).catch(() => undefined);
  const lines = codename && result?.status === 0 ? sourcesForSuite(parseIndexTargets(result.stdout), codename, suite) : undefined;
  if (!lines) {
    log("this machine's apt sources name no Debian suite to follow; mmdebstrap will use its built-in default mirror");
    return [];
  }
  log(`apt sources (from this machine's apt configuration): ${lines.join('; ')}`);
  return lines;
}

// ---------------------------------------------------------------------------
// mmdebstrap

/**
 * Before any package is installed: initramfs-tools builds every initramfs
 * with the network drivers and the NFS client (MODULES=netboot), so that the
 * kernel package's own initrd can mount an NFS root. MODULES=netboot takes
 * the Ethernet drivers but not the virtual NIC of an emulated board
 * (board: qemu-virt-arm64), which lives outside drivers/net/ethernet: those
 * modules are listed too, so the same base boots on a board and in the
 * emulator without a second initramfs generation (minutes under qemu-user).
 */
export const VIRTUAL_NIC_MODULES = ['virtio_net', 'virtio_mmio', 'net_failover', 'failover'];
const NETBOOT_HOOK =
  'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" && ' +
  'printf "# Written by netroot: nodes mount their root over NFS from the initrd.\\nMODULES=netboot\\n" > "$1/etc/initramfs-tools/conf.d/netroot-netboot.conf" && ' +
  `printf "# Written by netroot: the virtual NIC of an emulated board.\\n${VIRTUAL_NIC_MODULES.join('\\n')}\\n" > "$1/usr/share/initramfs-tools/modules.d/netroot-netboot"`;
/**
 * One initramfs per kernel, made once at the end. During the install the
 * kernel's postinst makes one and initramfs-tools' trigger (set off by every
 * package that ships a hook) makes it again: each takes minutes under
 * qemu-user. update-initramfs is diverted to a no-op once the essential
 * packages are in, and put back before the one real run.
 */
const DIVERTED = '/usr/sbin/update-initramfs.netroot-build';
const DEFER_INITRAMFS_HOOK =
  `chroot "$1" dpkg-divert --quiet --local --rename --divert ${DIVERTED} --add /usr/sbin/update-initramfs && ` +
  'printf "#!/bin/sh\\n# netroot: the initramfs is made once, at the end of the build\\nexit 0\\n" > "$1/usr/sbin/update-initramfs" && ' +
  'chmod 755 "$1/usr/sbin/update-initramfs"';
const INITRAMFS_ONCE_HOOK =
  'rm -f "$1/usr/sbin/update-initramfs" && ' +
  `chroot "$1" dpkg-divert --quiet --local --rename --divert ${DIVERTED} --remove /usr/sbin/update-initramfs && ` +
  'for k in "$1"/lib/modules/*; do [ -d "$k" ] || continue; [ -x "$1/usr/sbin/update-initramfs" ] || break; chroot "$1" update-initramfs -c -k "${k##*/}" || exit 1; done';
/** Changes whenever what is built for a spec changes, so cached tarballs of an older recipe are not reused. */
export const RECIPE = 'netboot-3';

export function mmdebstrapArgs(spec: DebootstrapSpec, output: string, sources: string[]): string[] {
  return [
    '--variant=minbase',
    `--setup-hook=${NETBOOT_HOOK}`,
    `--essential-hook=${DEFER_INITRAMFS_HOOK}`,
    `--customize-hook=${INITRAMFS_ONCE_HOOK}`,
    `--architectures=${spec.arch}`,
    // The temporary output name does not end in .tar, so the format is not left to be guessed from it.
    '--format=tar',
    ...(spec.packages.length ? [`--include=${spec.packages.join(',')}`] : []),
    '--',
    spec.suite,
    output,
    ...sources,
  ];
}

async function runMmdebstrap(
  spec: DebootstrapSpec,
  output: string,
  sources: string[],
  timeout: number,
  log: (line: string) => void,
): Promise<void> {
  const { child, done } = startTool('mmdebstrap', mmdebstrapArgs(spec, output, sources), {
    timeout,
    // On SIGTERM mmdebstrap unmounts /proc, /sys and /dev from its chroot and removes its temporary directory; give it time.
    forceKillAfterDelay: 60_000,
    what: `building ${formatDebootstrapSpec(spec)}`,
    why: `building the base ${formatDebootstrapSpec(spec)}`,
  });
  // Progress goes to the log line by line as it comes; a chunk may end mid-line.
  let pending = '';
  const emit = (line: string): void => {
    if (line.trim()) log(`mmdebstrap: ${line}`);
  };
  child.stderr?.on('data', (chunk: Buffer) => {
    const lines = (pending + String(chunk)).split('\n');
    pending = lines.pop() ?? '';
    lines.forEach(emit);
  });
  const finished = done();
  // Ctrl-C or SIGTERM to netroot alone: mmdebstrap is told, and waited for while it unmounts /proc, /sys
  // and /dev from its chroot. Were netroot to end first, mmdebstrap would die of the closed pipe it
  // reports its cleanup on (SIGPIPE), leaving them mounted under /tmp/mmdebstrap.*.
  const release = whenStopped(async () => {
    child.kill('SIGTERM');
    await finished.catch(() => undefined);
  });
  try {
    await finished;
  } finally {
    release();
    emit(pending);
  }
}
