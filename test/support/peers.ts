/**
 * Peer checks: validate rendered config files with the REAL programs that
 * read them (keepalived, mariadbd, dnsmasq, systemd-analyze).
 *
 * Every check returns { ok, output } where `output` is the program's combined
 * stdout+stderr (trimmed, minus proven noise) and is meant to be used as the
 * assertion message in a test.  All temporary files, directories and network
 * namespaces are removed in `finally` blocks; every subprocess has a timeout.
 *
 * Behaviour established by experiment on Debian 12 (keepalived 2.2.7,
 * mariadbd 10.11 + galera-4, dnsmasq 2.90, systemd 252):
 *
 * keepalived --config-test
 *   - A clean config prints nothing and exits 0.  Every config problem we
 *     tried prints a line AND exits non-zero (rc 5, rc 6 for script-security
 *     violations): unknown keyword (top level and inside a block), invalid IP
 *     in virtual_ipaddress / unicast_peer, auth_pass longer than 8 chars
 *     ("Truncating auth_pass to 8 characters"), VRID/priority out of range,
 *     unknown state, missing interface, unbalanced braces, duplicate VRID,
 *     vrrp_script with no usable script user, nopreempt with state MASTER...
 *     We never saw "exit 0 but printed a warning".  Still, to be safe, ANY
 *     output line is treated as a failure (there is no known noise).
 *   - Not detected at all (rc 0, silent): trailing garbage after a value
 *     ("priority 100 extra"), `include` of a non-existent glob, notify
 *     scripts that do not exist.
 *   - keepalived runs its parser in each child, so the same message is often
 *     printed 2-4 times; duplicates are collapsed in `output`.
 *   - `dummy` links are unavailable in this kernel, hence veth pairs.
 *
 * mariadbd --help --verbose
 *   - Unknown option in [mysqld]/[server]/[mariadb]/[galera]... → rc 7,
 *     bad enum → rc 13, bad number → rc 9, option without value → rc 5.
 *   - But several real problems exit 0 and only log: a broken group header
 *     ("[mysqld" → `error: Wrong group definition ...`, rest of that file
 *     silently ignored!), a bad size suffix for a plugin option
 *     (innodb_buffer_pool_size=12Q → [ERROR]s, InnoDB disabled), unloadable
 *     plugin-load-add, bind-address that does not resolve, a boolean that is
 *     not a boolean ("wsrep_on = maybe" → [Warning] ... Set to OFF), numbers
 *     clamped into range ([Warning] ... adjusted), `loose-` unknown options.
 *     So: any stderr line is a failure except the proven noise below.
 *   - Files in conf.d not ending in `.cnf` are silently ignored by
 *     `!includedir`; mariadbdCheck rejects such names up front.
 *   - Not validated: wsrep_provider path existence, wsrep_provider_options
 *     content, wsrep_node_address resolvability (the galera library is not
 *     loaded by --help).
 *
 * dnsmasq --test
 *   - Pure syntax/value parse.  It does NOT check that tftp-root exists, that
 *     interfaces exist, that addn-hosts / dhcp-hostsfile exist or that user=
 *     exists.  It DOES fail (rc 3) for missing conf-file=/conf-dir= targets.
 *     `dhcp-host=MAC,10.0.0.500` passes (the bad address is taken as a host
 *     name).
 *
 * systemd-analyze verify (see systemdVerify for details)
 *   - Unknown keys and unparsable values are only warnings and leave rc 0 by
 *     default; we pass --recursive-errors=yes, which makes such warnings in
 *     the selected units AND everything they pull in turn rc into 1, and we
 *     additionally treat every output line as a failure.
 *   - Documentation=man:... would be checked by running the HOST's `man`
 *     (it fails for pages this build machine simply has not installed, e.g.
 *     man:k3s(1)) — that says nothing about the image, so we pass --man=no.
 *     Malformed Documentation= URLs are still reported ("Invalid URL").
 *   - Commands prefixed with `-` are not checked by systemd (failure is
 *     tolerated at runtime), so we do not demand them to exist either.
 *   - Dangling enablement symlinks (multi-user.target.wants/x.service →
 *     missing unit) are silently accepted by verify; we check them ourselves.
 */
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface CheckResult {
  ok: boolean;
  output: string;
}

export interface MariadbFile {
  name: string;
  content: string;
}

const TIMEOUT_MS = 30_000;
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

// ---------------------------------------------------------------- helpers

function rand(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '');
}

function dedupe(ls: string[]): string[] {
  return [...new Set(ls)];
}

/** execa result → combined output (execa's `all`), robust to missing fields. */
function combined(r: { all?: unknown; stdout?: unknown; stderr?: unknown }): string {
  if (typeof r.all === 'string') return r.all;
  return [r.stdout, r.stderr].filter((s): s is string => typeof s === 'string').join('\n');
}

function describeFailure(r: {
  exitCode?: number | undefined;
  timedOut?: boolean;
  signal?: string | undefined;
  failed?: boolean;
  shortMessage?: string;
}): string {
  if (r.timedOut) return `timed out after ${TIMEOUT_MS} ms`;
  if (r.signal) return `killed by ${r.signal}`;
  if (r.exitCode === undefined) return r.shortMessage ?? 'failed to start';
  return `exit code ${r.exitCode}`;
}

async function run(file: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return execa(file, args, {
    reject: false,
    all: true,
    timeout: TIMEOUT_MS,
    stdin: 'ignore',
    cwd: opts.cwd ?? os.tmpdir(),
    env: { LC_ALL: 'C', ...(opts.env ?? {}) },
  });
}

async function mkTmp(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

async function rmrf(p: string | undefined): Promise<void> {
  if (p) await fs.rm(p, { recursive: true, force: true });
}

/** Is `name` an executable on PATH (plus the sbin dirs, which root's PATH may lack)? */
export function hasProgram(name: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SBIN_DIRS];
  const candidates = name.includes('/') ? [name] : dirs.map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, fsConstants.X_OK);
      if (statSync(c).isFile()) return true;
    } catch {
      /* keep looking */
    }
  }
  return false;
}

// ------------------------------------------------------------- keepalived

/**
 * Patterns of keepalived --config-test output that are NOT config problems.
 * Empty on purpose: a clean config produced no output at all in every
 * experiment, so every printed line is treated as a config error.
 */
const KEEPALIVED_NOISE: RegExp[] = [];

/**
 * Run `keepalived --config-test` on `configText` inside a throw-away network
 * namespace that contains an (up) veth interface for every name in
 * `interfaces` (keepalived rejects configs naming absent interfaces).
 * Needs root (ip netns).
 */
export async function keepalivedConfigTest(
  configText: string,
  interfaces: string[],
  /** Scripts the config names (vrrp_script), placed at `path` from the node's rendered `from` for the test. */
  scripts: { path: string; from: string }[] = [],
): Promise<CheckResult> {
  const ns = `nrt-${rand()}`;
  let nsCreated = false;
  let dir: string | undefined;
  try {
    const add = await run('ip', ['netns', 'add', ns]);
    if (add.exitCode !== 0) {
      return { ok: false, output: `ip netns add ${ns} failed (${describeFailure(add)}): ${combined(add).trim()}` };
    }
    nsCreated = true;

    const wanted = dedupe(interfaces);
    for (const [i, name] of wanted.entries()) {
      if (name === 'lo') continue; // every netns already has lo
      const peer = `p${rand(3)}${i}`.slice(0, 15);
      const mk = await run('ip', ['-n', ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer]);
      if (mk.exitCode !== 0) {
        return {
          ok: false,
          output: `cannot create interface '${name}' in ${ns} (${describeFailure(mk)}): ${combined(mk).trim()}`,
        };
      }
      for (const l of [name, peer]) {
        const up = await run('ip', ['-n', ns, 'link', 'set', l, 'up']);
        if (up.exitCode !== 0) {
          return { ok: false, output: `cannot bring up '${l}' in ${ns}: ${combined(up).trim()}` };
        }
      }
    }
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);

    dir = await mkTmp('nrt-keepalived-');
    const file = path.join(dir, 'keepalived.conf');
    await fs.writeFile(file, configText);

    // keepalived checks that each script exists and that only root can write it and
    // its directories. `ip netns exec` runs in a mount namespace of its own, so the
    // scripts go onto a tmpfs there and the host's directories are never written.
    const place = scripts.flatMap(({ path: target, from }) => {
      let cover = path.dirname(target);
      while (!existsSync(cover) && path.dirname(cover) !== '/') cover = path.dirname(cover);
      return [
        `mountpoint -q ${cover} || mount -t tmpfs -o mode=0755 netroot-test ${cover}`,
        `mkdir -p ${path.dirname(target)}`,
        `install -m 0755 ${from} ${target}`,
      ];
    });
    const r = await run('ip', ['netns', 'exec', ns, 'sh', '-euc', [...place, `exec keepalived --config-test -f ${file}`].join('\n')]);
    // the temp dir is gone afterwards: show the config's name instead of its path
    const out = dedupe(lines(combined(r)).map((l) => l.split(file).join('keepalived.conf')));
    const problems = out.filter((l) => !KEEPALIVED_NOISE.some((re) => re.test(l)));
    const ok = r.exitCode === 0 && problems.length === 0;
    const header = ok ? [] : [`keepalived --config-test: ${describeFailure(r)}`];
    return { ok, output: [...header, ...out].join('\n').trim() };
  } finally {
    if (nsCreated) await run('ip', ['netns', 'del', ns]);
    await rmrf(dir);
  }
}

// ---------------------------------------------------------------- mariadb

/**
 * stderr lines of `mariadbd --help --verbose` that are unavoidable noise here.
 *  - "Could not increase number of max_open_files to more than 20000 (request: N)":
 *    the process' RLIMIT_NOFILE in this container/CI is lower than what the
 *    default open_files_limit/max_connections ask for; it depends on the
 *    machine's ulimit, not on our config.
 */
const MARIADB_NOISE: RegExp[] = [/\[Warning\] Could not increase number of max_open_files/];

interface MariadbRun {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  failure: string;
}

async function runMariadbd(files: MariadbFile[]): Promise<MariadbRun | string> {
  for (const f of files) {
    if (!/^[A-Za-z0-9._-]+\.cnf$/.test(f.name)) {
      return `conf.d file name '${f.name}' would be ignored by mariadb: !includedir only reads ` + `plain file names ending in .cnf`;
    }
  }
  let dir: string | undefined;
  try {
    dir = await mkTmp('nrt-mariadb-');
    const confd = path.join(dir, 'conf.d');
    await fs.mkdir(confd);
    for (const f of files) await fs.writeFile(path.join(confd, f.name), f.content);
    const myCnf = path.join(dir, 'my.cnf');
    await fs.writeFile(myCnf, `[mysqld]\n\n!includedir ${confd}\n`);
    // --defaults-file must be the first argument; with it, no other option
    // file (/etc/mysql/my.cnf, ~/.my.cnf) is read.
    const r = await execa('mariadbd', [`--defaults-file=${myCnf}`, '--user=mysql', '--help', '--verbose'], {
      reject: false,
      timeout: TIMEOUT_MS,
      stdin: 'ignore',
      cwd: dir,
      env: { LC_ALL: 'C' },
    });
    return {
      exitCode: r.exitCode,
      stdout: typeof r.stdout === 'string' ? r.stdout : '',
      // the temp dir is gone afterwards: show conf.d/NAME instead of its path
      stderr: typeof r.stderr === 'string' ? r.stderr.split(`${dir}/`).join('') : '',
      failure: describeFailure(r),
    };
  } finally {
    await rmrf(dir);
  }
}

/**
 * Check MariaDB option files: they are placed in a temp conf.d included from a
 * temp my.cnf, then `mariadbd --help --verbose` parses them.  Fails on a
 * non-zero exit and on ANY stderr line ([ERROR], [Warning], or unprefixed
 * lines such as "error: Wrong group definition ...") except MARIADB_NOISE and
 * the caller's `allow` patterns (e.g. for deliberate `loose-` options).
 * `output` is stderr only, minus noise: stdout is ~3000 lines of help text.
 */
export async function mariadbdCheck(files: MariadbFile[], opts: { allow?: RegExp[] } = {}): Promise<CheckResult> {
  const r = await runMariadbd(files);
  if (typeof r === 'string') return { ok: false, output: r };
  const allow = [...MARIADB_NOISE, ...(opts.allow ?? [])];
  const errs = lines(r.stderr);
  const problems = errs.filter((l) => !allow.some((re) => re.test(l)));
  const ok = r.exitCode === 0 && problems.length === 0;
  const header = ok ? [] : [`mariadbd --help --verbose: ${r.failure}`];
  return { ok, output: [...header, ...problems].join('\n').trim() };
}

/**
 * Parse the "Variables (--variable-name=value)" table of
 * `mariadbd --help --verbose`, i.e. the effective value of every option after
 * reading `files`.  Keys are spelled as mariadbd prints them: dashes, original
 * case (e.g. 'bind-address', 'wsrep-cluster-address', 'wsrep-OSU-method'); use
 * mariadbOptionKey('wsrep_cluster_address') to convert.  Values are verbatim:
 * booleans are TRUE/FALSE (wsrep_on=ON shows as 'TRUE'), surrounding quotes of
 * the option file are gone, unset strings show as '' or '(No default value)'.
 * Throws (with mariadbd's stderr) if mariadbd fails or prints no table.
 */
export async function mariadbdEffectiveOptions(files: MariadbFile[]): Promise<Map<string, string>> {
  const r = await runMariadbd(files);
  if (typeof r === 'string') throw new Error(r);
  if (r.exitCode !== 0) {
    const errs = lines(r.stderr).filter((l) => !MARIADB_NOISE.some((re) => re.test(l)));
    throw new Error([`mariadbd --help --verbose: ${r.failure}`, ...errs].join('\n'));
  }
  const all = r.stdout.split('\n');
  const start = all.findIndex((l) => l.startsWith('Variables (--variable-name=value)'));
  const dashIdx = start < 0 ? -1 : all.findIndex((l, i) => i > start && /^-+ -+\s*$/.test(l));
  const dashes = dashIdx < 0 ? undefined : all[dashIdx];
  if (dashes === undefined) {
    throw new Error(`no variable table in mariadbd --help --verbose output\n${r.stderr.trim()}`);
  }
  const col = dashes.indexOf(' -') + 1; // value column (61 in 10.11)
  const map = new Map<string, string>();
  for (const line of all.slice(dashIdx + 1)) {
    if (line.trim() === '') break;
    let name: string;
    let value: string;
    if (line.length <= col || line[col - 1] === ' ') {
      name = line.slice(0, col).trim();
      value = line.slice(col).trimEnd();
    } else {
      // name longer than the column: "name value"
      const m = /^(\S+)\s+(.*)$/.exec(line);
      name = m?.[1] ?? line.trim();
      value = (m?.[2] ?? '').trimEnd();
    }
    if (name) map.set(name, value);
  }
  return map;
}

/** 'wsrep_cluster_address' → 'wsrep-cluster-address' (key format of mariadbdEffectiveOptions). */
export function mariadbOptionKey(name: string): string {
  return name.trim().replace(/_/g, '-');
}

// ---------------------------------------------------------------- dnsmasq

/**
 * `dnsmasq --test -C FILE`.  ok only if it exits 0 and prints nothing but
 * "dnsmasq: syntax check OK.".  It is a parse check only (see header): a
 * missing tftp-root, interface, addn-hosts file or user is NOT detected.
 */
export async function dnsmasqTest(configText: string): Promise<CheckResult> {
  let dir: string | undefined;
  try {
    dir = await mkTmp('nrt-dnsmasq-');
    const file = path.join(dir, 'dnsmasq.conf');
    await fs.writeFile(file, configText);
    const r = await run('dnsmasq', ['--test', '-C', file]);
    const out = lines(combined(r)).map((l) => l.split(file).join('dnsmasq.conf'));
    const problems = out.filter((l) => l.trim() !== 'dnsmasq: syntax check OK.');
    const ok = r.exitCode === 0 && problems.length === 0 && out.length > 0;
    const header = ok ? [] : [`dnsmasq --test: ${describeFailure(r)}`];
    return { ok, output: [...header, ...out].join('\n').trim() };
  } finally {
    await rmrf(dir);
  }
}

// ---------------------------------------------------------------- systemd

/**
 * Lines of `systemd-analyze verify` output that are unavoidable noise here.
 * Empty on purpose: with the host's units copied into the verify root and
 * --man=no, clean units (services, mounts, drop-ins on host units, enabled
 * units with WantedBy=multi-user.target) produce no output at all on this
 * Debian 12 / systemd 252 machine, so every line is a finding.
 */
const SYSTEMD_NOISE: RegExp[] = [];

/** The only executable that may be stubbed when neither overlay nor host has it. */
const STUBBABLE = new Set(['/usr/local/bin/k3s']);

const UNIT_DIRS = [
  '/etc/systemd/system',
  '/run/systemd/system',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/lib/systemd/system',
];

const EXEC_KEY = /^Exec(Start|StartPre|StartPost|Condition|Reload|Stop|StopPre|StopPost)$/;

/** Search path systemd 252 uses for non-absolute command names. */
const EXEC_SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

async function lstatOrNull(p: string) {
  try {
    return await fs.lstat(p);
  } catch {
    return null;
  }
}

/**
 * Resolve `p` inside `root` like systemd's chase_symlinks(CHASE_PREFIX_ROOT):
 * absolute symlink targets are taken relative to root.  Returns whether the
 * path exists and the root-relative (absolute-looking) resolved path; for a
 * missing path, that is the resolved existing prefix + the missing rest.
 */
async function chaseInRoot(root: string, p: string): Promise<{ exists: boolean; resolved: string }> {
  let todo = p.split('/').filter(Boolean);
  let cur: string[] = [];
  let hops = 0;
  while (todo.length > 0) {
    const c = todo.shift() as string;
    if (c === '.') continue;
    if (c === '..') {
      cur.pop();
      continue;
    }
    const cand = [...cur, c];
    const st = await lstatOrNull(path.join(root, ...cand));
    if (!st) return { exists: false, resolved: path.posix.normalize('/' + [...cand, ...todo].join('/')) };
    if (st.isSymbolicLink()) {
      if (++hops > 40) return { exists: false, resolved: '/' + [...cand, ...todo].join('/') };
      const target = await fs.readlink(path.join(root, ...cand));
      if (target.startsWith('/')) cur = [];
      todo = [...target.split('/').filter(Boolean), ...todo];
      continue;
    }
    cur = cand;
  }
  return { exists: true, resolved: '/' + cur.join('/') };
}

/** Parse systemd unit-file syntax enough to list Exec*= commands. */
function execCommands(text: string): { key: string; raw: string; exe: string; ignoreFailure: boolean }[] {
  const joined = text.replace(/\\\r?\n/g, ' ');
  const result: { key: string; raw: string; exe: string; ignoreFailure: boolean }[] = [];
  for (const rawLine of joined.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    if (!EXEC_KEY.test(key)) continue;
    let v = line.slice(eq + 1).trim();
    let ignoreFailure = false;
    while (v.length > 0 && '-@+!:'.includes(v[0] as string)) {
      if (v[0] === '-') ignoreFailure = true;
      v = v.slice(1);
    }
    if (v === '') continue; // "ExecStart=" resets the list
    let exe: string;
    const q = v[0];
    if (q === '"' || q === "'") {
      const end = v.indexOf(q, 1);
      exe = end < 0 ? v.slice(1) : v.slice(1, end);
    } else {
      exe = v.split(/\s+/)[0] ?? '';
    }
    if (exe) result.push({ key, raw: line, exe, ignoreFailure });
  }
  return result;
}

/** Unit file + drop-ins (root-relative paths) that systemd would load for `unit`. */
async function unitSources(root: string, unit: string): Promise<string[]> {
  const files: string[] = [];
  const dot = unit.lastIndexOf('.');
  const type = unit.slice(dot + 1);
  const prefix = unit.slice(0, dot);
  const at = prefix.indexOf('@');
  const template = at >= 0 && at < prefix.length - 1 ? `${prefix.slice(0, at + 1)}.${type}` : undefined;

  for (const name of template ? [unit, template] : [unit]) {
    let found = false;
    for (const d of UNIT_DIRS) {
      const c = await chaseInRoot(root, `${d}/${name}`);
      if (c.exists) {
        if (c.resolved !== '/dev/null') files.push(c.resolved);
        found = true;
        break;
      }
    }
    if (found) break;
  }

  // drop-in dirs: type-level, dash-prefix hierarchy, template, unit itself
  const dropinNames: string[] = [`${type}.d`];
  const parts = prefix.split('-');
  for (let i = 1; i < parts.length; i++) dropinNames.push(`${parts.slice(0, i).join('-')}-.${type}.d`);
  if (template) dropinNames.push(`${template}.d`);
  dropinNames.push(`${unit}.d`);
  const byName = new Map<string, string>();
  for (const dn of dropinNames) {
    for (const d of UNIT_DIRS) {
      const c = await chaseInRoot(root, `${d}/${dn}`);
      if (!c.exists) continue;
      let entries: string[];
      try {
        entries = await fs.readdir(path.join(root, c.resolved));
      } catch {
        continue;
      }
      for (const e of entries) {
        if (!e.endsWith('.conf') || byName.has(e)) continue;
        const f = await chaseInRoot(root, `${c.resolved}/${e}`);
        if (f.exists && f.resolved !== '/dev/null') byName.set(e, f.resolved);
      }
    }
  }
  files.push(...[...byName.keys()].sort().map((k) => byName.get(k) as string));
  return files;
}

async function hostExecutable(p: string): Promise<string | undefined> {
  try {
    const real = await fs.realpath(p);
    const st = await fs.stat(real);
    return st.isFile() ? real : undefined;
  } catch {
    return undefined;
  }
}

/** Copy host file `hostReal` into root at root-relative `dest` (parents created). */
async function installInto(root: string, dest: string, hostReal: string): Promise<void> {
  const abs = path.join(root, dest);
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.copyFile(hostReal, abs);
  const st = await fs.stat(hostReal);
  await fs.chmod(abs, st.mode & 0o7777);
}

async function writeStub(root: string, dest: string): Promise<void> {
  const abs = path.join(root, dest);
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, '#!/bin/sh\n# netroot verify placeholder: the real binary is installed into the image later\nexit 0\n', {
    mode: 0o755,
  });
  await fs.chmod(abs, 0o755);
}

/**
 * Make every executable referenced by Exec*= of `unit` (fragment + drop-ins)
 * present in the verify root: keep the overlay's, else copy the host's, else
 * stub /usr/local/bin/k3s, else report.
 */
async function provideExecutables(root: string, unit: string): Promise<string[]> {
  const problems: string[] = [];
  for (const src of await unitSources(root, unit)) {
    let text: string;
    try {
      text = await fs.readFile(path.join(root, src), 'utf8');
    } catch {
      continue;
    }
    for (const cmd of execCommands(text)) {
      // systemd itself skips the check for "-" commands (failure tolerated) and
      // resolves specifiers/variables we do not emulate: leave those to it.
      if (cmd.ignoreFailure || /[%$]/.test(cmd.exe)) continue;
      if (cmd.exe.startsWith('/')) {
        const c = await chaseInRoot(root, cmd.exe);
        if (c.exists) continue;
        // c.resolved follows symlinks inside the verify root (the usr-merge
        // links, or an overlay link such as /usr/local/bin/kubectl -> k3s),
        // so look up / stub the final target, as the image would.
        const host = await hostExecutable(c.resolved);
        if (host) await installInto(root, c.resolved, host);
        else if (STUBBABLE.has(c.resolved)) await writeStub(root, c.resolved);
        else {
          const via = c.resolved === cmd.exe ? '' : ` (resolves to ${c.resolved})`;
          problems.push(
            `executable ${cmd.exe}${via} referenced by ${unit} (${src}: ${cmd.key}=) exists neither in the overlay nor on this machine`,
          );
        }
      } else {
        let present = false;
        for (const d of EXEC_SEARCH) {
          if ((await chaseInRoot(root, `${d}/${cmd.exe}`)).exists) {
            present = true;
            break;
          }
        }
        if (present) continue;
        let copied = false;
        for (const d of EXEC_SEARCH) {
          const host = await hostExecutable(`${d}/${cmd.exe}`);
          if (host) {
            await installInto(root, (await chaseInRoot(root, `${d}/${cmd.exe}`)).resolved, host);
            copied = true;
            break;
          }
        }
        if (!copied)
          problems.push(
            `executable ${cmd.exe} referenced by ${unit} (${src}: ${cmd.key}=) exists neither in the overlay nor on this machine`,
          );
      }
    }
  }
  return problems;
}

/** Symlinks in the overlay's unit dirs (aliases, *.wants/, *.requires/, ...) must resolve. */
async function danglingUnitSymlinks(overlayRoot: string, root: string): Promise<string[]> {
  const problems: string[] = [];
  for (const d of UNIT_DIRS) {
    const base = path.join(overlayRoot, d);
    let entries: string[];
    try {
      entries = (await fs.readdir(base, { recursive: true })) as string[];
    } catch {
      continue;
    }
    for (const rel of entries) {
      const st = await lstatOrNull(path.join(base, rel));
      if (!st?.isSymbolicLink()) continue;
      const target = await fs.readlink(path.join(base, rel));
      if (target === '/dev/null') continue; // masked
      const c = await chaseInRoot(root, `${d}/${rel}`);
      if (!c.exists)
        problems.push(`symlink ${d}/${rel} -> ${target} is dangling (target exists neither in the overlay nor in the host's units)`);
    }
  }
  return problems;
}

const USR_MERGE = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/**
 * Verify units rendered into `overlayRoot` (a tree mirroring the target
 * filesystem) with `systemd-analyze verify --root=VERIFYROOT UNIT...`.
 * `units` are unit NAMES (e.g. 'k3s.service', 'mariadb.service',
 * 'var-lib-rancher.mount'); they may live only on the host when the overlay
 * just adds a drop-in.
 *
 * VERIFYROOT (temp dir) = host /usr/lib/systemd/system, then `cp -a` of the
 * overlay on top (so overlay files win), then the host's usr-merge symlinks
 * (/bin -> usr/bin ...) where the overlay does not have those paths.  The
 * host's /etc/systemd/system is NOT copied: it holds this machine's enablement
 * state, which is not the image's, and nothing needed it.
 * Executables named by Exec*= of the verified units and their drop-ins that
 * are missing in VERIFYROOT are copied from the host (symlinks resolved),
 * /usr/local/bin/k3s alone may be stubbed, anything else is reported.
 *
 * ok requires: rc 0 (with --recursive-errors=yes, so syntax warnings in the
 * units or anything they pull in fail), no output line (other than
 * SYSTEMD_NOISE), no missing executable, no dangling unit symlink in the
 * overlay.  VERIFYROOT paths in messages are shown as target paths.
 */
export async function systemdVerify(overlayRoot: string, units: string[]): Promise<CheckResult> {
  if (units.length === 0) return { ok: false, output: 'systemdVerify: no units given' };
  const bad = units.filter((u) => u.includes('/') || !/^[^.]+.*\.[a-z]+$/.test(u));
  if (bad.length > 0) {
    return { ok: false, output: `systemdVerify: pass unit names, not paths: ${bad.join(', ')}` };
  }
  try {
    if (!(await fs.stat(overlayRoot)).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    return { ok: false, output: `overlay root ${overlayRoot} is not a readable directory: ${String(e)}` };
  }

  let root: string | undefined;
  try {
    root = await mkTmp('nrt-sdverify-');
    // 1. host units first ...
    await fs.mkdir(path.join(root, 'usr/lib/systemd'), { recursive: true });
    const cpHost = await run('cp', ['-a', '/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/')]);
    if (cpHost.exitCode !== 0) {
      return { ok: false, output: `copying host units failed: ${combined(cpHost).trim()}` };
    }
    // 2. ... then the overlay on top, so its files win
    const cpOverlay = await run('cp', ['-a', `${path.resolve(overlayRoot)}/.`, `${root}/`]);
    if (cpOverlay.exitCode !== 0) {
      return { ok: false, output: `copying overlay failed: ${combined(cpOverlay).trim()}` };
    }
    // 3. usr-merge symlinks like the host's (Debian 12: /bin -> usr/bin, ...)
    for (const d of USR_MERGE) {
      const hostSt = await lstatOrNull(`/${d}`);
      if (!hostSt?.isSymbolicLink() || (await lstatOrNull(path.join(root, d)))) continue;
      await fs.symlink(await fs.readlink(`/${d}`), path.join(root, d));
    }

    const problems: string[] = [];
    for (const u of dedupe(units)) problems.push(...(await provideExecutables(root, u)));
    problems.push(...(await danglingUnitSymlinks(overlayRoot, root)));

    const r = await run('systemd-analyze', ['verify', `--root=${root}`, '--man=no', '--recursive-errors=yes', ...dedupe(units)], {
      cwd: root,
      env: { SYSTEMD_LOG_COLOR: '0', SYSTEMD_COLORS: '0', SYSTEMD_PAGER: 'cat', SYSTEMD_LOG_LOCATION: '0' },
    });
    const rootPrefix = root;
    const out = dedupe(lines(combined(r)).map((l) => l.split(rootPrefix).join('')));
    const findings = out.filter((l) => !SYSTEMD_NOISE.some((re) => re.test(l)));
    const ok = r.exitCode === 0 && findings.length === 0 && problems.length === 0;
    const header = ok ? [] : [`systemd-analyze verify ${dedupe(units).join(' ')}: ${describeFailure(r)}`];
    return { ok, output: [...header, ...problems, ...out].join('\n').trim() };
  } finally {
    await rmrf(root);
  }
}

// -------------------------------------------------------------------- sshd

/**
 * The settings sshd would apply to a login as `user`, from `sshd -T`: Debian's
 * /etc/ssh/sshd_config as an Armbian image changes it (PermitRootLogin yes and
 * PasswordAuthentication yes in the main file), with its `Include` pointed at
 * the node's sshd_config.d instead of this machine's. Keys in lower case, as
 * sshd -T prints them; values joined by a space.
 */
export async function sshdEffective(nodeRoot: string, user: string, hostKey: string): Promise<Map<string, string>> {
  const dir = await mkTmp('netroot-sshd-');
  try {
    const debian = await fs.readFile('/etc/ssh/sshd_config', 'utf8');
    if (!/^Include \/etc\/ssh\/sshd_config\.d\/\*\.conf$/m.test(debian))
      throw new Error('/etc/ssh/sshd_config here has no Include of sshd_config.d');
    const armbian = `${debian.replace(/^Include \/etc\/ssh\/sshd_config\.d\/\*\.conf$/m, `Include ${path.join(nodeRoot, 'etc/ssh/sshd_config.d')}/*.conf`)}\nPermitRootLogin yes\nPasswordAuthentication yes\n`;
    const config = path.join(dir, 'sshd_config');
    await fs.writeFile(config, armbian);
    await fs.mkdir('/run/sshd', { recursive: true });
    const result = await execa(
      '/usr/sbin/sshd',
      ['-T', '-f', config, '-h', hostKey, '-C', `user=${user},host=admin.example,addr=192.0.2.200`],
      { reject: false, timeout: 10_000 },
    );
    if (result.exitCode !== 0) throw new Error(`sshd -T: ${result.stderr}`);
    const settings = new Map<string, string>();
    for (const line of result.stdout.split('\n')) {
      const [key, ...rest] = line.split(' ');
      if (key) settings.set(key, rest.join(' '));
    }
    return settings;
  } finally {
    await rmrf(dir);
  }
}
