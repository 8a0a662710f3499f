/**
 * docs/hardware.md, the guide from four boards to a cluster, checked command by
 * command: every `sh` block parses as shell and names programs that exist; every
 * `build-images` line names a real subcommand and real flags, and those that can
 * run here do, against the guide's own profile (its `yaml` block) in a scratch
 * workspace, the boot server's paths put in scratch directories. The dnsmasq file
 * the deploy writes, with the guide's `port=0` beside it, goes through
 * `dnsmasq --test`, and the kubeconfig `sed` is run on k3s's own line.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import * as assert from 'uvu/assert';
import { test } from '../support/test.js';
import { CLI_ARGS } from '../support/cli.js';
import { dnsmasqTest } from '../support/peers.js';
import { REPO, tempDir } from '../profile/helpers.js';
import { loadProfile } from '../../src/profile/load.js';
import { clusterWarnings } from '../../src/profile/rules.js';

const DOC = 'docs/hardware.md';
const text = await readFile(path.join(REPO, DOC), 'utf8');
const blocks = [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1]!, body: m[2]! }));
const shell = blocks.filter((b) => b.lang === 'sh').map((b) => b.body);
const profileText = blocks.find((b) => b.lang === 'yaml')?.body ?? '';

/** Each command of a block: continuation lines joined, comments and blank lines dropped. */
const commands = (block: string): string[] =>
  block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.replace(/\s+#\s.*$/, '').trim())
    .filter((l) => l && !l.startsWith('#'));
const allCommands = shell.flatMap(commands);

/** A command line's words, as a shell splits them (quotes removed; no expansion). */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** The build-images lines, as their arguments after `npx build-images`. */
const cliLines = allCommands.filter((c) => c.startsWith('npx build-images')).map((c) => words(c).slice(2));
const SUBCOMMANDS = ['build', 'validate', 'render', 'plan', 'deploy', 'rollback', 'schema'];
const subcommandOf = (args: string[]): string => (SUBCOMMANDS.includes(args[0]!) ? args[0]! : 'build');

/** Programs the guide runs that are not on a test machine, and why that is right. */
const ELSEWHERE: Record<string, string> = {
  kubectl: "Kubernetes' client, on the reader's machine",
};

const run = promisify(execFile);
async function cli(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NETROOT_'))),
    NETROOT_SECRETS_DIR: `${cwd}.secrets`,
  };
  try {
    const { stdout, stderr } = await run(process.execPath, [...CLI_ARGS, ...args], { cwd, env, timeout: 80_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('the guide has its commands: shell blocks, a profile, and the steps from build to kubeconfig', () => {
  assert.ok(shell.length >= 8, `${shell.length} sh blocks`);
  assert.ok(profileText.includes('nodes:'), 'a yaml block with the profile');
  for (const sub of ['validate', 'render', 'build', 'plan', 'deploy']) {
    assert.ok(
      cliLines.some((a) => subcommandOf(a) === sub),
      `the guide runs build-images ${sub}`,
    );
  }
  assert.ok(
    allCommands.some((c) => c.includes('/etc/rancher/k3s/k3s.yaml')),
    'the guide fetches the kubeconfig',
  );
});

test('every sh block parses as bash', async () => {
  for (const block of shell) {
    const r = await run('bash', ['-n', '-c', block], { timeout: 10_000 }).catch((e: { stderr?: string }) => ({
      stderr: e.stderr ?? 'failed',
    }));
    assert.is(r.stderr, '', `bash -n on:\n${block}`);
  }
});

test('every program the guide runs here exists (or is named as elsewhere)', async () => {
  const programs = new Set<string>();
  for (const c of allCommands) {
    // Each segment of a pipeline or list, and each command substitution, starts with a program or an assignment.
    for (const segment of c.split(/\|\||&&|\||;|\$\(/)) {
      const first = words(segment.trim()).find((w) => !/^[A-Z_]+=/.test(w));
      if (first && !first.startsWith('$') && !first.startsWith(')')) programs.add(first.replace(/\)$/, ''));
    }
  }
  assert.ok(programs.has('npx') && programs.has('ssh') && programs.has('dd'), [...programs].join(' '));
  for (const program of programs) {
    if (program in ELSEWHERE) continue;
    const found = await run('sh', ['-c', `command -v "${program}"`], { timeout: 10_000 }).then(
      () => true,
      () => false,
    );
    assert.ok(found, `${DOC} runs ${program}, which is not a program on this machine`);
  }
});

test('every build-images line names a real subcommand and only flags that subcommand takes', async () => {
  const cwd = await tempDir('netroot-hardware-help-');
  for (const args of cliLines) {
    const sub = subcommandOf(args);
    const help = await cli(cwd, [sub, '--help']);
    assert.is(help.code, 0, help.stderr);
    for (const flag of args.filter((a) => a.startsWith('--'))) {
      assert.ok(
        help.stdout.includes(`${flag.split('=')[0]} `) || help.stdout.includes(`${flag.split('=')[0]}\n`),
        `build-images ${sub} has no ${flag}`,
      );
    }
  }
});

test("the guide's profile loads: three servers, one agent, a login, and every address the commands use is its own", async () => {
  const dir = await tempDir('netroot-hardware-profile-');
  await mkdir(path.join(dir, 'profiles'));
  await writeFile(path.join(dir, 'profiles/home.yaml'), profileText);
  const { cluster } = await loadProfile('home', { cwd: dir });
  assert.equal([cluster.servers.length, cluster.agents.length], [3, 1]);
  assert.equal(clusterWarnings(cluster), [], 'a key is set, so somebody can log in');
  const own = new Set([...cluster.nodes.map((n) => n.ip), cluster.profile.network.vip, cluster.profile.network.nfsServer]);
  for (const c of allCommands)
    for (const ip of c.match(/\b192\.0\.2\.\d+\b/g) ?? []) assert.ok(own.has(ip), `${c}: ${ip} is none of the profile's addresses`);
  // The nodes the guide logs in to are servers: they run MariaDB and k3s.
  for (const c of allCommands.filter((c) => c.startsWith('ssh root@192.0.2.6'))) {
    const ip = /root@([\d.]+)/.exec(c)![1]!;
    assert.ok(
      cluster.servers.some((n) => n.ip === ip),
      `${c}: ${ip} is not a server`,
    );
  }
  // What the guide says is the opz3 seed with its own names: the board and versions are the seed's.
  const seed = parse(await readFile(path.join(REPO, 'profiles/opz3.yaml'), 'utf8')) as Record<string, unknown>;
  const mine = parse(profileText) as Record<string, unknown>;
  for (const key of ['board', 'k3s', 'keepalived']) assert.equal(mine[key], seed[key], `${key} as in profiles/opz3.yaml`);
});

test('the build-images lines run against that profile; build, plan and deploy into scratch directories', async () => {
  const dir = await tempDir('netroot-hardware-run-');
  await mkdir(path.join(dir, 'profiles'));
  await writeFile(path.join(dir, 'profiles/home.yaml'), profileText);
  const server = path.join(dir, 'server');
  // The boot server's directories, here: the export root, TFTP root, /etc/dnsmasq.d and /etc/exports.d.
  const onServer = [
    '--tftp',
    `${server}/srv/tftp`,
    '--dnsmasq',
    `${server}/etc/dnsmasq.d`,
    '--exports-dir',
    `${server}/etc/exports.d`,
    '--no-exportfs',
  ];
  let deployed = false;
  for (const args of cliLines) {
    const sub = subcommandOf(args);
    let argv = args;
    if (sub === 'build')
      argv = args.filter((a, i) => a !== '--base' && args[i - 1] !== '--base' && a !== '--format' && args[i - 1] !== '--format');
    if (sub === 'plan' || sub === 'deploy') {
      const to = argv.indexOf('--to');
      assert.match(argv[to + 1]!, /^root@192\.0\.2\.10:\/srv\/nfs\/home$/, 'the export root is on the boot server, as exports.root');
      argv = [...argv.slice(0, to), '--to', `${server}/srv/nfs/home`, ...argv.slice(to + 2), ...onServer];
    }
    const r = await cli(dir, argv);
    assert.is(r.code, 0, `build-images ${argv.join(' ')}:\n${r.stderr}`);
    if (sub === 'render') assert.ok(r.stdout.trim().length > 0, `build-images ${argv.join(' ')} printed nothing`);
    if (sub === 'deploy') deployed = true;
  }
  assert.ok(deployed);
  // What the guide says the deploy writes on the boot server.
  assert.equal((await readdir(path.join(server, 'srv/nfs/home'))).filter((n) => !n.startsWith('.')).sort(), [
    'home-1',
    'home-2',
    'home-3',
    'home-4',
  ]);
  assert.equal(await readdir(path.join(server, 'etc/exports.d')), ['home.exports']);
  assert.equal(await readdir(path.join(server, 'etc/dnsmasq.d')), ['home.conf']);
  assert.ok((await readdir(path.join(server, 'srv/tftp/pxelinux.cfg'))).includes('01-02-00-c0-00-02-3c'));

  // dnsmasq reads the deployed file with the guide's port=0 beside it (its echo, run into the scratch dir).
  const echo = allCommands.find((c) => c.includes('/etc/dnsmasq.d/00-no-dns.conf'))!;
  await run('sh', ['-c', echo.replace('/etc/dnsmasq.d/', `${server}/etc/dnsmasq.d/`)], { timeout: 10_000 });
  const conf = await readFile(path.join(server, 'etc/dnsmasq.d/00-no-dns.conf'), 'utf8');
  assert.is(conf, 'port=0\n');
  const tftp = `${server}/srv/tftp`;
  const generated = (await readFile(path.join(server, 'etc/dnsmasq.d/home.conf'), 'utf8')).replace(
    'tftp-root=/srv/tftp',
    `tftp-root=${tftp}`,
  );
  const check = await dnsmasqTest(`${conf}${generated}`);
  assert.ok(check.ok, check.output);
});

test("the kubeconfig line points k3s's file at the VIP", async () => {
  const line = allCommands.find((c) => c.includes('/etc/rancher/k3s/k3s.yaml'))!;
  const sed = line.slice(line.indexOf('sed '), line.indexOf(' >'));
  const r = await run('sh', ['-c', `printf '    server: https://127.0.0.1:6443\\n' | ${sed}`], { timeout: 10_000 });
  const vip = (parse(profileText) as { network: { vip: string } }).network.vip;
  assert.is(r.stdout, `    server: https://${vip}:6443\n`);
});
