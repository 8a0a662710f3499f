/**
 * npm run bench [-- --files 50000 --size 1G --only tar,tree,rebuild,memory --write]
 *
 * Makes a synthetic base (an Armbian-like root plus FILES files of SIZE bytes
 * in all, half of it incompressible like binaries, half text), and measures,
 * side by side in one run on the same tree:
 *  - GNU tar -cf / -czf of the base against netroot's artifacts for 1, 4 and 32 nodes;
 *  - cp -a of the base per node against netroot's trees for 4 nodes;
 *  - an unchanged rebuild, a one-node change and a one-template change, 4 nodes;
 *  - `deploy` of a one-template change onto 4 nodes' trees, end to end (the stale build
 *    found and rebuilt, then the changed files deployed);
 *  - the peak memory (RSS) of every netroot run, and of one build of a large base
 *    (--large-files 300000 --large-size 2G, synthesised once and kept in $TMPDIR).
 * Every netroot run is the real command line (bin/build-images.js) in a child
 * process. --write puts the table into BENCHMARKS.md.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeArmbianBase } from '../test/support/armbian-base.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const FILES = Number(flag('files', '50000'));
const SIZE = parseSize(flag('size', '1G'));
const WRITE = args.includes('--write');
const LARGE_FILES = Number(flag('large-files', '300000'));
const LARGE_SIZE = parseSize(flag('large-size', '2G'));
/** Groups of rows to run (default all): tar, tree, rebuild, deploy, memory. */
const ONLY = new Set(flag('only', 'tar,tree,rebuild,deploy,memory').split(','));
/** Runs of each timed pair that the machine's noise makes worth repeating. */
const REPEAT = Number(flag('repeat', '3'));
/** How long the disk is left after deleting gigabytes, before a timed run (online discard). */
const SETTLE_MS = Number(flag('settle', '30')) * 1000;
/** Where each build-images run leaves a V8 CPU profile (--cpu-prof DIR), to see where a row's time goes. */
const CPU_PROF = flag('cpu-prof', '');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EPOCH = '1700000000';

function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/.exec(text);
  if (!m) throw new Error(`--size ${text}: use a number with K, M or G`);
  return Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G'];
}

/** xorshift32: the same base on every machine and every run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

async function makeSyntheticBase(root: string, work: string, FILES: number, SIZE: number): Promise<void> {
  await makeArmbianBase(root, work);
  const next = prng(42);
  const POOL = 32 << 20;
  const random = Buffer.alloc(POOL);
  for (let i = 0; i < POOL; i += 4) random.writeUInt32LE(next(), i);
  const words = [
    'kernel',
    'module',
    'systemd',
    'service',
    'config',
    'the',
    'and',
    'of',
    'libc',
    'share',
    'doc',
    'license',
    'GNU',
    'Debian',
    'netroot',
    'cluster',
    '\n',
    '=',
    '/usr/lib/',
    '0x00',
  ];
  const text = Buffer.alloc(POOL);
  for (let i = 0; i < POOL;) {
    const w = Buffer.from(`${words[next() % words.length]} `);
    w.copy(text, i);
    i += w.length;
  }
  const average = Math.max(1, Math.floor(SIZE / FILES));
  // About 20 files a directory, like /usr/share: 2500 directories for 50 000 files.
  const dirs = Math.max(1, Math.ceil(FILES / 20));
  let written = 0;
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(root, 'usr/share/bench', `d${String(i % dirs).padStart(4, '0')}`);
    if (i < dirs) await mkdir(dir, { recursive: true });
    // Sizes spread from a few bytes to ~4x the average, summing to about SIZE.
    const size = Math.min(POOL - 1, Math.floor((average * 2 * (next() % 1000)) / 1000) + 1);
    const pool = i % 2 === 0 ? random : text;
    const start = next() % (POOL - size);
    await writeFile(path.join(dir, `f${i}`), pool.subarray(start, start + size));
    written += size;
  }
  process.stderr.write(`synthetic base: ${FILES} files, ${(written / 1024 ** 3).toFixed(2)} GiB of content\n`);
}

/** The seed profile with another node list (extends would merge nodes by name, not replace them). */
async function profileText(servers: number, agents: number, allowUnsafe = false): Promise<string> {
  const nodes = [];
  for (let i = 0; i < servers + agents; i++) {
    const hex = (0x3c + i).toString(16).padStart(2, '0');
    nodes.push(
      `  - { name: node-${i + 1}, mac: "02:00:c0:00:02:${hex}", ip: 192.0.2.${60 + i}, roles: [${i < servers ? 'server' : 'agent'}] }`,
    );
  }
  const seed = await readFile(path.join(ROOT, 'profiles/opz3.yaml'), 'utf8');
  return seed
    .replace(/^cluster: .*$/m, 'cluster: { name: bench }')
    .replace(/^nodes:\n( {2}- .*\n)+/m, `nodes:\n${nodes.join('\n')}\n`)
    .replace(/^galera: .*$/m, `galera: { clusterName: bench, bootstrapNode: node-1, allowUnsafeClusterSize: ${allowUnsafe} }`);
}

interface Run {
  seconds: number;
  rssMiB?: number;
}

async function time(command: string, argv: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  // Every run starts with no dirty pages from the one before, and ends when what
  // it wrote is on disk (a trailing sync, timed): otherwise a run that writes
  // 1 GiB leaves its writeback uncharged, while one that writes 4 GiB pays for
  // most of its own.
  await execa('sync');
  const started = process.hrtime.bigint();
  await execa(command, argv, { ...options, stdio: ['ignore', 'ignore', 'inherit'] });
  await execa('sync');
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** The run of median time (peak RSS: the highest of them). */
function median(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  const rss = runs.map((r) => r.rssMiB ?? 0);
  return { ...sorted[(sorted.length - 1) >> 1]!, ...(Math.max(...rss) ? { rssMiB: Math.max(...rss) } : {}) };
}
const seconds = (runs: Run[]): string => `${runs.map((r) => r.seconds.toFixed(1)).join(' / ')} s`;

async function netroot(work: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const rssFile = path.join(work, 'rss');
  // GNU time reports its child's peak RSS. The child's own resourceUsage() would not do: a child forked
  // from this process starts with this process's resident size as its high-water mark, which execve keeps.
  const run = await time(
    '/usr/bin/time',
    [
      '-o',
      rssFile,
      '-f',
      '%M',
      process.execPath,
      ...(CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(CPU_PROF)] : []),
      path.join(ROOT, 'bin/build-images.js'),
      ...argv,
    ],
    {
      cwd: work,
      env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH, CI: '1', ...env },
    },
  );
  return { ...run, rssMiB: Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) / 1024 };
}

async function machine(): Promise<string> {
  const cpu = (await readFile('/proc/cpuinfo', 'utf8')).match(/^model name\s*:\s*(.*)$/m)?.[1] ?? os.arch();
  const fs = (await execa('df', ['-T', os.tmpdir()])).stdout.split('\n')[1]?.split(/\s+/)[1];
  const tar = (await execa('tar', ['--version'])).stdout.split('\n')[0];
  const gzip = (await execa('gzip', ['--version'])).stdout.split('\n')[0];
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, ${fs} (no reflink), Node ${process.version}, ${tar}, ${gzip}`;
}

async function main(): Promise<void> {
  await execa('npx', ['tsc', '-p', ROOT], { cwd: ROOT, stdio: 'inherit' });
  const work = await mkdtemp(path.join(os.tmpdir(), 'netroot-bench-'));
  try {
    const base = path.join(work, 'base');
    await makeSyntheticBase(base, path.join(work, 'base-work'), FILES, SIZE);
    const bytes = Number((await execa('du', ['-sb', base])).stdout.split(/\s/)[0]);
    // A stand-in k3s must be a script (#!) or an ELF program for the base's architecture.
    const k3s = Buffer.alloc(64 << 20, 7);
    k3s.write('#!/bin/sh\n');
    await writeFile(path.join(work, 'k3s'), k3s, { mode: 0o755 });
    await writeFile(path.join(work, 'one.yaml'), await profileText(1, 0, true));
    await writeFile(path.join(work, 'four.yaml'), await profileText(3, 1));
    await writeFile(path.join(work, 'thirtytwo.yaml'), await profileText(3, 29));
    await writeFile(path.join(work, 'four-changed.yaml'), `extends: ./four.yaml\nnodes:\n  - { name: node-4, interface: eth1 }\n`);
    // One template's output changes on every server: keepalived.conf.
    await writeFile(
      path.join(work, 'four-keepalived.yaml'),
      `extends: ./four.yaml\nkeepalived: { virtualRouterId: 51, advertInterval: 2 }\n`,
    );
    // Warm the page cache the same way for everyone.
    await execa('tar', ['-cf', '/dev/null', '-C', base, '.']);

    const loadStart = os.loadavg()[0]!;
    const rows: [string, Run, string][] = [];
    const add = (what: string, run: Run, note = '') => {
      rows.push([what, run, note]);
      process.stderr.write(`${what}: ${run.seconds.toFixed(1)} s${run.rssMiB ? `, ${run.rssMiB.toFixed(0)} MiB` : ''}\n`);
    };
    const common = (profile: string, out: string, cache: string, format: string, secrets = profile) => [
      '--profile',
      path.join(work, profile),
      '--base',
      base,
      '--k3s-binary',
      path.join(work, 'k3s'),
      '--format',
      format,
      '--out',
      path.join(work, out),
      '--cache-dir',
      path.join(work, cache),
      '--secrets',
      path.join(work, `${secrets}.secrets.yaml`),
      '--compress',
      'gz',
    ];

    if (ONLY.has('tar')) {
      add('GNU tar -cf (one tree)', await time('tar', ['-cf', path.join(work, 'gnu.tar'), '-C', base, '.']));
      add('GNU tar -czf (one tree)', await time('tar', ['-czf', path.join(work, 'gnu.tar.gz'), '-C', base, '.']));
      await rm(path.join(work, 'gnu.tar'));
      add('netroot tar.gz, 1 node', await netroot(work, common('one.yaml', 'out-1', 'cache-1', 'tar')), 'base packed once, cold cache');
      add('netroot tar.gz, 4 nodes', await netroot(work, common('four.yaml', 'out-4', 'cache-4', 'tar')), 'cold cache');
      add('netroot tar.gz, 32 nodes', await netroot(work, common('thirtytwo.yaml', 'out-32', 'cache-32', 'tar')), 'cold cache');
      await rm(path.join(work, 'out-32'), { recursive: true });
    }
    if (ONLY.has('tree')) {
      // Four copies in one run, like netroot's four trees, so both pay for the writeback of 4 GiB. The machine
      // is shared, so a single run can be off by 2x: each pair runs back to back, REPEAT times, and the medians
      // are compared. This disk is mounted with online discard: deleting 4 GiB slows the writes that follow for
      // a while, so the run right after a deletion loses (in the old order netroot's always came right after
      // the copies were deleted). Now both outputs of a round are deleted before it, the disk settles, and the
      // order alternates.
      const copies: Run[] = [];
      const trees: Run[] = [];
      /** Deletes what the rounds wrote (the copies, and the trees too when `trees`), then lets the disk settle. */
      const clear = async (trees: boolean) => {
        for (let i = 1; i <= 4; i++) await rm(path.join(work, `cp-${i}`), { recursive: true, force: true });
        if (trees) await rm(path.join(work, 'out-tree'), { recursive: true, force: true });
        await execa('sync');
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      };
      const copy = async () => {
        copies.push(await time('sh', ['-c', 'for i in 1 2 3 4; do cp -a "$1" "$2-$i"; done', 'sh', base, path.join(work, 'cp')]));
      };
      const write = async () => {
        trees.push(await netroot(work, common('four.yaml', 'out-tree', 'cache-4', 'tree')));
      };
      for (let r = 0; r < REPEAT; r++) {
        await clear(true);
        for (const run of r % 2 === 0 ? [copy, write] : [write, copy]) await run();
      }
      // The rows below start from the last tree build; the copies go, and the disk settles, first.
      await clear(false);
      const [cp, tree] = [median(copies), median(trees)];
      add('cp -a base, 4 times', cp, `median of ${seconds(copies)}`);
      add(
        'netroot trees, 4 nodes',
        tree,
        `median of ${seconds(trees)}; ${(tree.seconds / cp.seconds).toFixed(2)}x cp -a (goal: at most 1.2x); cp -a --reflink=auto + overlay, k3s 64 MiB each`,
      );
      add(
        'netroot trees, 4 nodes, one node changed',
        await netroot(work, common('four-changed.yaml', 'out-tree', 'cache-4', 'tree', 'four.yaml')),
        'tree revised in place',
      );
      await rm(path.join(work, 'out-tree'), { recursive: true });
    }
    if (ONLY.has('rebuild')) {
      add(
        'netroot tree+tar, 4 nodes, first build',
        await netroot(work, common('four.yaml', 'out-incr', 'cache-4', 'tree,tar')),
        'packed chunks cached by the run above',
      );
      add(
        'netroot tree+tar, 4 nodes, unchanged rebuild',
        await netroot(work, common('four.yaml', 'out-incr', 'cache-4', 'tree,tar')),
        'base not read (one find for its identity), trees moved',
      );
      add(
        'netroot tree+tar, 4 nodes, one node changed',
        await netroot(work, common('four-changed.yaml', 'out-incr', 'cache-4', 'tree,tar', 'four.yaml')),
        'index from the cache; one tree revised, its archive revised in place',
      );
      // Back to four.yaml (not timed), so that what follows changes the 3 servers and nothing else; then the
      // template change is made and undone, REPEAT times: each run is a one-template change on 3 nodes.
      await netroot(work, common('four.yaml', 'out-incr', 'cache-4', 'tree,tar'));
      const toggles: Run[] = [];
      for (let r = 0; r < REPEAT; r++)
        toggles.push(
          await netroot(work, common(r % 2 === 0 ? 'four-keepalived.yaml' : 'four.yaml', 'out-incr', 'cache-4', 'tree,tar', 'four.yaml')),
        );
      add(
        'netroot tree+tar, 4 nodes, one template on 3 nodes',
        median(toggles),
        `median of ${seconds(toggles)}; keepalived.conf of the 3 servers changed and back: 3 trees and 3 archives revised in place (goal: under 6 s)`,
      );
    }
    if (ONLY.has('deploy')) {
      // deploy takes no --cache-dir: the build it runs uses $XDG_CACHE_HOME/netroot, so the first build uses that too.
      const env = { XDG_CACHE_HOME: path.join(work, 'xdg') };
      const exportsRoot = path.join(work, 'exports');
      const server = path.join(work, 'boot-server');
      const build = (profile: string) => {
        const argv = common(profile, 'out-deploy', 'cache-4', 'tree', 'four.yaml');
        argv[argv.indexOf('--cache-dir') + 1] = path.join(work, 'xdg/netroot');
        return argv;
      };
      const deployArgv = (profile: string) => [
        'deploy',
        ...['--profile', path.join(work, profile), '--base', base, '--out', path.join(work, 'out-deploy')],
        ...['--secrets', path.join(work, 'four.yaml.secrets.yaml'), '--to', exportsRoot, '--no-exportfs'],
        ...['--tftp', `${server}/tftp`, '--dnsmasq', `${server}/dnsmasq.d`, '--exports-dir', `${server}/exports.d`],
      ];
      // Not timed: the build, and the first deploy (every file of 4 trees copied).
      await netroot(work, build('four.yaml'), env);
      await netroot(work, deployArgv('four.yaml'), env);
      const deploys: Run[] = [];
      for (let r = 0; r < REPEAT; r++)
        deploys.push(await netroot(work, deployArgv(r % 2 === 0 ? 'four-keepalived.yaml' : 'four.yaml'), env));
      add(
        'netroot deploy, 4 nodes, one template on 3 nodes',
        median(deploys),
        `median of ${seconds(deploys)}; end to end: the stale build found and revised (trees only), then keepalived.conf deployed to the 3 servers' trees (goal: under 5 s)`,
      );
      await rm(path.join(work, 'out-deploy'), { recursive: true, force: true });
      await rm(exportsRoot, { recursive: true, force: true });
    }
    if (ONLY.has('memory')) {
      // Kept between runs: writing 300 000 files takes minutes; its name says what it holds.
      const large = path.join(os.tmpdir(), `netroot-bench-base-${LARGE_FILES}-${LARGE_SIZE}`);
      if (!existsSync(path.join(large, '.complete'))) {
        await rm(large, { recursive: true, force: true });
        await makeSyntheticBase(large, path.join(work, 'large-work'), LARGE_FILES, LARGE_SIZE);
        await writeFile(path.join(large, '.complete'), '');
      }
      const entries = Number((await execa('sh', ['-c', 'find "$1" | wc -l', 'sh', large])).stdout);
      const largeBytes = Number((await execa('du', ['-sb', large])).stdout.split(/\s/)[0]);
      const argv = common('one.yaml', 'out-large', 'cache-large', 'tar');
      argv[argv.indexOf('--base') + 1] = large;
      const run = await netroot(work, argv);
      add(
        `netroot tar.gz, 1 node, base of ${entries} entries, ${(largeBytes / 1024 ** 3).toFixed(2)} GiB`,
        run,
        `peak memory, no heap cap, cold cache (goal: under 250 MB = ${(250e6 / 1024 ** 2).toFixed(0)} MiB)`,
      );
      await rm(path.join(work, 'out-large'), { recursive: true, force: true });
    }

    const m = await machine();
    const loadEnd = os.loadavg()[0]!;
    const table = [
      `Base: ${FILES} files + an Armbian-like skeleton, ${(bytes / 1024 ** 3).toFixed(2)} GiB on disk; k3s stand-in 64 MiB; gzip level 6 on both sides.`,
      `Machine: ${m}.`,
      `Load average (1 min) when the runs began: ${loadStart.toFixed(2)}, when they ended: ${loadEnd.toFixed(2)}${Math.max(loadStart, loadEnd) > os.cpus().length / 2 ? ' (other work shared the machine: figures are noisier and slower than on an idle one)' : ''}. Each run ends with a timed sync.`,
      '',
      '| run | seconds | peak RSS (MiB) | note |',
      '| --- | ---: | ---: | --- |',
      ...rows.map(([what, run, note]) => `| ${what} | ${run.seconds.toFixed(1)} | ${run.rssMiB ? run.rssMiB.toFixed(0) : ''} | ${note} |`),
    ].join('\n');
    process.stdout.write(`${table}\n`);
    if (WRITE) {
      const file = path.join(ROOT, 'BENCHMARKS.md');
      const current = await readFile(file, 'utf8').catch(() => '');
      const marker = /<!-- bench:start -->[\s\S]*<!-- bench:end -->/;
      const block = `<!-- bench:start -->\n${table}\n<!-- bench:end -->`;
      await writeFile(file, marker.test(current) ? current.replace(marker, block) : `${current}\n${block}\n`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
