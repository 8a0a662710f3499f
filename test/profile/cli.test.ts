/**
 * The real command line, as a subprocess in a scratch directory with a
 * profiles/ folder: a bad profile exits 2 with file:line:col and key on stderr
 * and leaves nothing behind (no output directory, no secrets file); `validate`
 * of a good profile exits 0 and writes nothing.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, cp, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { suite } from '../support/test.js';
import { CLI_ARGS } from '../support/cli.js';
import * as assert from 'uvu/assert';
import { requires } from '../support/requires.js';
import { isRoot } from '../support/rootfs.js';
import { FIXTURES, OPZ3, OPZ3_FILE, REPO, opz3With, position, tempDir, type Edit, type Where } from './helpers.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI with ARGS in `cwd`, without any NETROOT_* variable of ours; `uid`: as that user (and group). */
async function cli(cwd: string, args: string[], env: Record<string, string> = {}, uid?: number): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NETROOT_')));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...CLI_ARGS, ...args], {
      cwd,
      // The cluster secrets store of this workspace alone, never the user's (~/.local/state/netroot).
      env: { ...clean, NETROOT_SECRETS_DIR: `${cwd}.secrets`, ...env },
      timeout: 60_000,
      ...(uid !== undefined ? { uid, gid: uid } : {}),
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Every path under `dir`, sorted. */
async function tree(dir: string): Promise<string[]> {
  return ((await readdir(dir, { recursive: true })) as string[]).sort();
}

/** A scratch dir holding profiles/NAME.yaml for each entry. */
async function workspace(profiles: Record<string, string>): Promise<string> {
  const dir = await tempDir('netroot-cli-');
  await mkdir(path.join(dir, 'profiles'));
  for (const [name, text] of Object.entries(profiles)) await writeFile(path.join(dir, 'profiles', `${name}.yaml`), text);
  return dir;
}

interface BadCase {
  name: string;
  edits: Edit[];
  args: string[];
  /** What stderr must show after `profiles/bad.yaml:LINE:COL `. */
  at: Where;
  shows: string;
}

const bad: BadCase[] = [
  {
    name: 'build: a wrong type',
    edits: [['virtualRouterId: 51', 'virtualRouterId: "fifty"']],
    args: ['build', '--profile', 'bad'],
    at: { line: 'virtualRouterId', col: '"fifty"' },
    shows: 'keepalived.virtualRouterId: expected a number, got text "fifty"',
  },
  {
    name: 'build (the default command) with an output directory: a cluster rule',
    edits: [['vip: 192.0.2.50', 'vip: 198.51.100.50']],
    args: ['--profile', 'bad', '--out', 'out'],
    at: { line: 'vip:', col: 'vip' },
    shows: 'network.vip: the VIP 198.51.100.50 is outside the subnet 192.0.2.0/24',
  },
  {
    name: 'build --json: an unknown key',
    edits: [['advertInterval: 1 }', 'advertInterval: 1, priorty: 100 }']],
    args: ['build', '--json', '-p', 'bad'],
    at: { line: 'priorty', col: 'priorty' },
    shows: 'keepalived.priorty: unknown key "priorty"',
  },
  {
    name: 'validate: an even number of servers',
    edits: [['roles: [agent]', 'roles: [server]']],
    args: ['validate', '--profile', 'bad'],
    at: { line: 'nodes:', col: 'nodes' },
    shows: 'nodes: there are 4 servers; with an even number a network split',
  },
];

const Cli = suite('cli: profile errors');

for (const c of bad) {
  Cli(`${c.name}: exit 2, file:line:col and key on stderr, nothing written`, async () => {
    const text = opz3With(...c.edits);
    const dir = await workspace({ bad: text });
    const before = await tree(dir);
    const run = await cli(dir, c.args);
    const { line, column } = position(text, c.at);
    assert.is(run.code, 2, `exit code; stderr:\n${run.stderr}`);
    assert.ok(run.stderr.includes(`profiles/bad.yaml:${line}:${column} ${c.shows}`), `stderr names the place and key:\n${run.stderr}`);
    assert.not.match(run.stderr, /internal error/);
    // Under --json the error is also on stdout, as JSON, with the same place and key; otherwise stdout stays empty.
    if (c.args.includes('--json')) {
      const { error } = JSON.parse(run.stdout) as { error: { exitCode: number; issues: { message: string }[] } };
      assert.is(error.exitCode, 2);
      const [key, ...message] = c.shows.split(': ');
      assert.equal(
        error.issues.map(({ message: _m, ...where }) => where),
        [{ file: 'profiles/bad.yaml', line, column, key }],
      );
      assert.ok(error.issues[0]!.message.startsWith(message.join(': ')), error.issues[0]!.message);
    } else assert.is(run.stdout, '');
    assert.equal(await tree(dir), before, 'no out/ directory and no secrets file');
  });
}

Cli('build: a good profile with a bad secret in the environment exits 2 and writes nothing', async () => {
  const dir = await workspace({ good: OPZ3 });
  const before = await tree(dir);
  const secret = 'WayTooLongAuthPass';
  const run = await cli(dir, ['build', '--profile', 'good'], { NETROOT_KEEPALIVED_AUTH_PASS: secret });
  assert.is(run.code, 2, run.stderr);
  assert.ok(run.stderr.includes('NETROOT_KEEPALIVED_AUTH_PASS: (environment) is longer than 8 characters'), run.stderr);
  assert.not.ok(run.stderr.includes(secret.slice(0, 8)), 'the secret is never printed');
  assert.equal(await tree(dir), before);
});

Cli('build --json: the error is JSON on stdout as well, with its exit code', async () => {
  const dir = await workspace({});
  const run = await cli(dir, ['build', '--profile', 'nosuch', '--json']);
  assert.is(run.code, 2, run.stderr);
  const parsed = JSON.parse(run.stdout) as { error: { message: string; exitCode: number } };
  assert.match(parsed.error.message, /no profile named nosuch/);
  assert.is(parsed.error.exitCode, 2);
});

// A template that uses a value the node lacks, and one that does not parse: each named with its place, in JSON too.
const TEMPLATE_ERRORS: [what: string, text: string, column: number, says: RegExp][] = [
  ['uses a value the node lacks', 'first line\n{{no.such.value}}\n', 3, /uses "no\.such\.value"/],
  ['does not parse', 'first line\n  {{/if}}\n', 3, /is not a valid Handlebars template: expecting 'EOF', got 'OPEN_ENDBLOCK'/],
];
for (const [what, text, column, says] of TEMPLATE_ERRORS)
  Cli(`build --json: a template that ${what} is JSON with the template's file, line and column`, async () => {
    const dir = await workspace({ good: OPZ3 });
    await cp(path.join(REPO, 'overlays'), path.join(dir, 'overlays'), { recursive: true });
    await writeFile(path.join(dir, 'overlays/base/etc/hosts.hbs'), text);
    const run = await cli(dir, ['build', '--profile', 'good', '--overlays', 'overlays', '--json']);
    assert.is(run.code, 2, run.stderr);
    assert.match(run.stderr, new RegExp(`^build-images: overlays/base/etc/hosts\\.hbs:2:${column}: `));
    assert.match(run.stderr, says);
    const { error } = JSON.parse(run.stdout) as { error: { file: string; line: number; column: number; exitCode: number } };
    assert.equal([error.file, error.line, error.column, error.exitCode], ['overlays/base/etc/hosts.hbs', 2, column, 2]);
  });

Cli('build --format tar without a base exits 2 and says a base is needed; nothing is written', async () => {
  const dir = await workspace({ good: OPZ3 });
  const before = await tree(dir);
  const run = await cli(dir, ['build', '--profile', 'good', '--format', 'tar', '--json']);
  assert.is(run.code, 2, run.stderr);
  assert.match(
    (JSON.parse(run.stdout) as { error: { message: string } }).error.message,
    '--format tar needs a base root filesystem: give --base or base: in the profile',
  );
  assert.equal(await tree(dir), before);
});

Cli("an unknown option under --json: yargs' own error is JSON too, exit 2", async () => {
  const dir = await workspace({});
  const run = await cli(dir, ['build', '--profile', 'good', '--json', '--bogus']);
  assert.is(run.code, 2, run.stderr);
  assert.match((JSON.parse(run.stdout) as { error: { message: string } }).error.message, /Unknown argument: bogus/);
});

Cli('a mistyped command: exit 2 with "did you mean", and the commands; a word like none of them: the commands', async () => {
  const dir = await workspace({ good: OPZ3 });
  const typo = await cli(dir, ['deplyo', '--profile', 'good', '--to', 'exports']);
  assert.is(typo.code, 2, typo.stderr);
  assert.is(
    typo.stderr,
    'build-images: unknown command deplyo; did you mean deploy? The commands are build, validate, render, plan, deploy, rollback, rollout, status, schema (build-images --help).\n',
  );
  const other = await cli(dir, ['frobnicate', '--json']);
  assert.is(other.code, 2, other.stderr);
  assert.match(other.stderr, /^build-images: unknown command frobnicate\. The commands are build, /);
  assert.is((JSON.parse(other.stdout) as { error: { exitCode: number } }).error.exitCode, 2);
  assert.equal(await tree(dir), ['profiles', 'profiles/good.yaml'], 'nothing written');
});

Cli('render shows the boot server files by their short names', async () => {
  const dir = await workspace({ good: OPZ3 });
  for (const [name, line] of [
    ['dnsmasq', /^dhcp-host=02:00:c0:00:02:3c,/m],
    ['exports', /^\/srv\/nfs\/opz3\/opz3-1-onder 192\.0\.2\.60\(/m],
    ['ganesha', /Clients = 192\.0\.2\.60;/],
    ['pxelinux.cfg', /nfsroot=192\.0\.2\.10:\/srv\/nfs\/opz3\/opz3-1-onder/],
  ] as const) {
    const run = await cli(dir, ['render', '--profile', 'good', '--node', 'opz3-1-onder', name]);
    assert.is(run.code, 0, run.stderr);
    assert.match(run.stdout, line, `${name}:\n${run.stdout}`);
  }
});

Cli("render without a path lists the node's files, then the boot server files it boots with and the names that show them", async () => {
  const dir = await workspace({ good: OPZ3 });
  const run = await cli(dir, ['render', '--profile', 'good', '--node', 'opz3-2-midden']);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, /^-0600 0:0 \/etc\/keepalived\/keepalived\.conf$/m);
  const boot = run.stdout.slice(run.stdout.indexOf('boot server (render --node opz3-2-midden NAME):'));
  assert.ok(boot.length > 0, run.stdout);
  // Its own pxelinux file (01- and its MAC), not another node's.
  assert.match(boot, /^ {2}pxelinux\.cfg +tftp\/pxelinux\.cfg\/01-02-00-c0-00-02-3d$/m);
  assert.equal(boot.match(/pxelinux\.cfg\/01-/g)?.length, 1);
  for (const name of ['dnsmasq', 'exports', 'ganesha']) assert.match(boot, new RegExp(`^ {2}${name} +\\S+$`, 'm'));
});

const Validate = suite('cli: validate');

Validate('a good profile: exit 0, and no out/ and no secrets file', async () => {
  const dir = await workspace({});
  await copyFile(OPZ3_FILE, path.join(dir, 'profiles', 'good.yaml'));
  const before = await tree(dir);
  const run = await cli(dir, ['validate', '--profile', 'good']);
  assert.is(run.code, 0, run.stderr);
  assert.is(run.stdout, 'good: valid, cluster opz3 (4 nodes, 3 servers)\n');
  assert.equal(await tree(dir), before);
  assert.equal(before, ['profiles', 'profiles/good.yaml']);
});

Validate('a profile that extends another in profiles/', async () => {
  const dir = await workspace({ opz3: OPZ3 });
  await copyFile(path.join(FIXTURES, 'opz3-lab.yaml'), path.join(dir, 'profiles', 'opz3-lab.yaml'));
  const before = await tree(dir);
  const run = await cli(dir, ['validate', '--profile', 'opz3-lab']);
  assert.is(run.code, 0, run.stderr);
  assert.is(run.stdout, 'opz3-lab: valid, cluster opz3-lab (5 nodes, 3 servers)\n');
  assert.equal(await tree(dir), before);
});

Validate('--json: the profile, its cluster, nodes and roles and its warnings as JSON; writes nothing', async () => {
  const dir = await workspace({ good: OPZ3 });
  const run = await cli(dir, ['validate', '--profile', 'good', '--json']);
  assert.is(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as {
    profile: string;
    cluster: string;
    nodes: { name: string; roles: string[] }[];
    warnings: string[];
  };
  assert.equal(
    [result.profile, result.cluster, result.nodes.length, result.nodes[3]],
    ['good', 'opz3', 4, { name: 'opz3-4-top', roles: ['agent'] }],
  );
  assert.match(result.warnings.join('\n'), /nobody can log in to any node over SSH as root/);
  assert.equal(await tree(dir), ['profiles', 'profiles/good.yaml']);
});

Validate('a profile name that does not exist exits 2', async () => {
  const dir = await workspace({});
  const run = await cli(dir, ['validate', '--profile', 'nosuch']);
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, /no profile named nosuch/);
  assert.equal(await tree(dir), ['profiles']);
});

const NOBODY = 65534;
const asNobody = requires(isRoot, 'reading as another user needs root to switch to it');

/** A workspace another user may enter, holding profiles/opz3.yaml and an out/ of that user's; `unreadable` made 0600 (root's). */
async function sharedWorkspace(...unreadable: string[]): Promise<string> {
  const dir = await workspace({ opz3: OPZ3 });
  await mkdir(path.join(dir, 'out'));
  await chown(path.join(dir, 'out'), NOBODY, NOBODY);
  await writeFile(path.join(dir, 'base.tar.gz'), 'not read\n');
  for (const p of [dir, path.join(dir, 'profiles')]) await chmod(p, 0o755);
  for (const p of ['profiles/opz3.yaml', 'base.tar.gz']) await chmod(path.join(dir, p), unreadable.includes(p) ? 0o600 : 0o644);
  return dir;
}

asNobody('a profile this user cannot read: exit 2 naming it and what to do, not an internal error', async () => {
  const dir = await sharedWorkspace('profiles/opz3.yaml');
  const run = await cli(dir, ['validate', '--profile', 'opz3'], {}, NOBODY);
  assert.is(run.code, 2, run.stderr);
  assert.is(
    run.stderr,
    'build-images: cannot read the profile profiles/opz3.yaml (permission denied): run as a user who may read it, or give it read permission\n',
  );
});

asNobody('a base this user cannot read: exit 2 naming it and what to do, before anything is written', async () => {
  const dir = await sharedWorkspace('base.tar.gz');
  const run = await cli(dir, ['build', '--profile', 'opz3', '--base', 'base.tar.gz', '--out', 'out'], {}, NOBODY);
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, /^build-images: cannot read the base \/.*\/base\.tar\.gz \(permission denied\): run as a user who may read it/);
  assert.not.match(run.stderr, /internal error/);
  assert.equal(await tree(path.join(dir, 'out')), []);
});
