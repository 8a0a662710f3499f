/**
 * The Galera recovery decision, run for real: the rendered galera-recovery
 * script and its rendered configuration, against fabricated grastate.dat and
 * gvwstate.dat files of three servers whose exchanges answer on loopback
 * addresses (127.0.0.x), each with its own datadir and run directory; a peer
 * whose MariaDB runs is a `mariadb` client stand-in answering its status query.
 * The rules themselves are a table of cases (galera-recovery-rules.test.ts); here,
 * the exchange, the files a decision writes, and `simulate` with a node's own config.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { waitFor } from '../../src/lab/run-command.js';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { buildToTemp, type TempBuild } from '../support/build.js';

const SERVERS = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven'];
const UUID = '6b3c6a4e-1f2a-11ef-9c33-000000000001';
let opz3: TempBuild;
let tmp: string;
let script: string;
let port = 24_570;
const running: ResultPromise[] = [];

interface Fixture {
  /** grastate.dat, or null for an empty datadir. */
  grastate: { uuid: string; seqno: number; safe?: boolean } | null;
  gvwstate?: { view: string; members: string[] };
}

test.before(async () => {
  [opz3, tmp] = await Promise.all([buildToTemp('opz3'), mkdtemp(path.join(os.tmpdir(), 'netroot-galera-recovery-'))]);
  script = path.join(opz3.nodeRoot('opz3-1-onder'), 'usr/local/lib/netroot/galera-recovery');
});
test.after(async () => {
  for (const child of running) child.kill('SIGKILL');
  await Promise.allSettled(running);
  await Promise.all([opz3.cleanup(), rm(tmp, { recursive: true, force: true })]);
});
test.after.each(async () => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});

/** Server i's rendered configuration, moved to 127.0.0.(i+2) and this test's port. */
async function setUp(name: string, fixtures: Record<string, Fixture>, changes: Record<string, unknown> = {}) {
  const dir = path.join(tmp, `${name}-${port}`);
  const ips = Object.fromEntries(SERVERS.map((s, i) => [s, `127.0.0.${i + 2}`]));
  const env: Record<string, Record<string, string>> = {};
  for (const server of SERVERS) {
    const rendered = JSON.parse(await readFile(path.join(opz3.nodeRoot(server), 'etc/netroot/galera-recovery.json'), 'utf8'));
    const config = { ...rendered, servers: rendered.servers.map((s: { name: string }) => ({ ...s, ip: ips[s.name] })), port, ...changes };
    const datadir = path.join(dir, server, 'mysql');
    await mkdir(path.join(datadir, 'mysql'), { recursive: true });
    const fixture = fixtures[server]!;
    if (fixture.grastate) {
      const g = fixture.grastate;
      await writeFile(path.join(datadir, 'grastate.dat'), `# GALERA saved state\nversion: 2.1\nuuid:    ${g.uuid}\nseqno:   ${g.seqno}\nsafe_to_bootstrap: ${g.safe ? 1 : 0}\n`);
    }
    if (fixture.gvwstate) {
      const v = fixture.gvwstate;
      await writeFile(path.join(datadir, 'gvwstate.dat'), `my_uuid: ${v.members[0]}\n#vwbeg\nview_id: 3 ${v.view} 5\nbootstrap: 0\n${v.members.map((m) => `member: ${m} 0`).join('\n')}\n#vwend\n`);
    }
    const configFile = path.join(dir, server, 'galera-recovery.json');
    await writeFile(configFile, JSON.stringify(config), { mode: 0o600 });
    env[server] = { NETROOT_GALERA_RECOVERY_CONFIG: configFile, NETROOT_GALERA_DATADIR: datadir, NETROOT_GALERA_RUN: path.join(dir, server, 'run'), NETROOT_GALERA_STATE: path.join(dir, server, 'state'), PATH: process.env.PATH ?? '/usr/bin:/bin' };
  }
  port++;
  return { env, datadir: (server: string) => path.join(dir, server, 'mysql'), run: (server: string) => path.join(dir, server, 'run') };
}

/**
 * Starts `decide` on every named server (and `serve` beside each), returns each decision's exit and log.
 * With `until`, the others are stopped once that server decided: they would wait for it to become
 * primary, which nothing here makes it, until the end of their attempt.
 */
async function decideAll(env: Record<string, Record<string, string>>, names: string[], timeoutMs = 30_000, until?: string) {
  for (const name of names) {
    const serve = execa(script, ['serve'], { env: env[name], extendEnv: false, reject: false, stdin: 'ignore' });
    running.push(serve);
  }
  const decisions = names.map((name) => execa(script, ['decide'], { env: env[name], extendEnv: false, reject: false, all: true, stdin: 'ignore', timeout: timeoutMs }));
  running.push(...decisions);
  if (until) {
    await decisions[names.indexOf(until)];
    // Let the others take one more look, then stop them: each round rewrites a server's vote (with its stamp),
    // and a server that ended removed it.
    const others = names.filter((n) => n !== until);
    const vote = (name: string) => readFile(path.join(env[name]!.NETROOT_GALERA_RUN!, 'galera-vote.json'), 'utf8').catch(() => undefined);
    const before = await Promise.all(others.map(vote));
    const looked = async () => (await Promise.all(others.map(vote))).every((now, i) => now === undefined || now !== before[i]);
    assert.ok(await waitFor(async () => ((await looked()) ? true : undefined), 10_000, 100), `${others.join(', ')} looked again`);
    for (const d of decisions) d.kill('SIGTERM');
  }
  const results = await Promise.all(decisions);
  return Object.fromEntries(names.map((name, i) => [name, { exitCode: results[i]!.exitCode, log: String(results[i]!.all), timedOut: results[i]!.timedOut }]));
}

async function bootstraps(run: string): Promise<boolean> {
  return readFile(path.join(run, 'wsrep-new-cluster'), 'utf8').then((t) => t.includes('--wsrep-new-cluster'), () => false);
}

// A clean stop that left others running: the seqno, safe_to_bootstrap: 0.
const stopped = (seqno: number): Fixture => ({ grastate: { uuid: UUID, seqno } });

test('every server answers: the highest seqno bootstraps, marked safe, and only it', async () => {
  const s = await setUp('cut', { 'opz3-1-onder': stopped(1200), 'opz3-2-midden': stopped(1843), 'opz3-3-boven': stopped(1843) }, { attemptSeconds: 60 });
  const all = await decideAll(s.env, SERVERS, 90_000, 'opz3-2-midden');
  // A tie at 1843: node order decides, so opz3-2-midden bootstraps; the others wait for it to be primary,
  // which nothing here makes it (they are stopped once it decided).
  assert.is(all['opz3-2-midden']!.exitCode, 0, all['opz3-2-midden']!.log);
  assert.match(all['opz3-2-midden']!.log, 'opz3-2-midden: bootstrapping, highest seqno 1843 of 3 servers seen');
  assert.ok(await bootstraps(s.run('opz3-2-midden')));
  assert.match(await readFile(path.join(s.datadir('opz3-2-midden'), 'grastate.dat'), 'utf8'), /^safe_to_bootstrap: 1$/m);
  for (const other of ['opz3-1-onder', 'opz3-3-boven']) {
    assert.match(all[other]!.log, `${other}: waiting for opz3-2-midden to bootstrap, highest seqno 1843 of 3 servers seen`);
    assert.not.ok(await bootstraps(s.run(other)));
  }
});

test('a peer in a primary component is joined, even by a server with a safe_to_bootstrap flag, and by a stale one', async () => {
  const s = await setUp('primary', { 'opz3-1-onder': { grastate: { uuid: UUID, seqno: 12, safe: true } }, 'opz3-2-midden': stopped(15), 'opz3-3-boven': stopped(3) }, { attemptSeconds: 20 });
  // opz3-2-midden's MariaDB runs in the primary component: a mariadb client stand-in answers its status query.
  const bin = path.join(tmp, 'primary-bin');
  await mkdir(bin, { recursive: true });
  const status = ['wsrep_cluster_status\tPrimary', 'wsrep_local_state\t4', `wsrep_cluster_state_uuid\t${UUID}`, 'wsrep_last_committed\t15', 'wsrep_cluster_size\t1'];
  await writeFile(path.join(bin, 'mariadb'), `#!/bin/sh\nprintf '${status.join('\\n')}\\n'\n`, { mode: 0o755 });
  const midden = { ...s.env['opz3-2-midden']!, PATH: `${bin}:${s.env['opz3-2-midden']!.PATH}` };
  const serve = execa(script, ['serve'], { env: midden, extendEnv: false, reject: false, stdin: 'ignore' });
  running.push(serve);
  // It answers before anyone decides: a server that found nobody would bootstrap from its safe_to_bootstrap after waitForAll.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('opz3-2-midden did not start answering within 20 s')), 20_000);
    serve.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('answering')) resolve(clearTimeout(timer));
    });
  });
  const joiners = ['opz3-1-onder', 'opz3-3-boven'];
  const decisions = await Promise.all(
    joiners.map((name) => {
      const d = execa(script, ['decide'], { env: s.env[name], extendEnv: false, reject: false, all: true, stdin: 'ignore', timeout: 40_000 });
      running.push(d);
      return d;
    }),
  );
  for (const [i, name] of joiners.entries()) {
    assert.is(decisions[i]!.exitCode, 0, String(decisions[i]!.all));
    assert.ok(String(decisions[i]!.all).includes(`${name}: joining the primary component of opz3-2-midden`), String(decisions[i]!.all));
    assert.not.ok(await bootstraps(s.run(name)), `${name} does not bootstrap`);
  }
});

test('a fresh cluster starts on the bootstrap node only once every server answers with no history', async () => {
  const fresh: Fixture = { grastate: null };
  const s = await setUp('fresh', { 'opz3-1-onder': fresh, 'opz3-2-midden': fresh, 'opz3-3-boven': fresh }, { attemptSeconds: 6 });
  const two = await decideAll(s.env, ['opz3-1-onder', 'opz3-2-midden'], 20_000);
  assert.is(two['opz3-1-onder']!.exitCode, 1, 'two of three is not enough for a new cluster');
  assert.match(two['opz3-1-onder']!.log, /a new one starts only once all 3 answer \([12] of 3 servers seen\)/);
  assert.not.ok(await bootstraps(s.run('opz3-1-onder')));

  const t = await setUp('fresh-all', { 'opz3-1-onder': fresh, 'opz3-2-midden': fresh, 'opz3-3-boven': fresh }, { attemptSeconds: 60 });
  const all = await decideAll(t.env, SERVERS, 90_000, 'opz3-1-onder');
  assert.is(all['opz3-1-onder']!.exitCode, 0, all['opz3-1-onder']!.log);
  assert.ok(await bootstraps(t.run('opz3-1-onder')));
  assert.match(all['opz3-1-onder']!.log, 'starting the new Galera cluster k3s_cluster');
  assert.not.ok(await bootstraps(t.run('opz3-2-midden')));
});

test('the last server to leave cleanly bootstraps alone once waitForAll passed; a lone crashed one does not, unless the survivor policy says so', async () => {
  const safe = await setUp('safe', { 'opz3-1-onder': stopped(10), 'opz3-2-midden': stopped(10), 'opz3-3-boven': { grastate: { uuid: UUID, seqno: 12, safe: true } } }, { attemptSeconds: 60, waitForAll: 3 });
  const alone = await decideAll(safe.env, ['opz3-3-boven'], 90_000);
  assert.is(alone['opz3-3-boven']!.exitCode, 0, alone['opz3-3-boven']!.log);
  // The others may have bootstrapped without it since it left: it waits for them first.
  assert.match(alone['opz3-3-boven']!.log, 'waiting up to 3 s for opz3-1-onder, opz3-2-midden');
  assert.match(alone['opz3-3-boven']!.log, 'opz3-3-boven left the cluster last (safe_to_bootstrap)');
  assert.ok(await bootstraps(safe.run('opz3-3-boven')));

  const lone = await setUp('lone', { 'opz3-1-onder': stopped(10), 'opz3-2-midden': stopped(11), 'opz3-3-boven': stopped(12) }, { attemptSeconds: 5 });
  const majority = await decideAll(lone.env, ['opz3-2-midden'], 20_000);
  assert.is(majority['opz3-2-midden']!.exitCode, 1);
  assert.match(majority['opz3-2-midden']!.log, 'opz3-2-midden: not bootstrapping: 1 of 3 servers seen; every server that answers at seqno 11 stopped cleanly');
  assert.not.ok(await bootstraps(lone.run('opz3-2-midden')));

  const survivor = await setUp('survivor', { 'opz3-1-onder': stopped(10), 'opz3-2-midden': stopped(11), 'opz3-3-boven': stopped(12) }, { attemptSeconds: 60, policy: 'survivor', survivorAfter: 3 });
  const after = await decideAll(survivor.env, ['opz3-2-midden'], 90_000);
  assert.is(after['opz3-2-midden']!.exitCode, 0, after['opz3-2-midden']!.log);
  assert.match(after['opz3-2-midden']!.log, 'policy survivor bootstraps after 3 s');
  assert.match(after['opz3-2-midden']!.log, 'bootstrapping, highest seqno 11 of 1 server seen (of 3): policy survivor, nothing proven after 3 s');
  assert.ok(await bootstraps(survivor.run('opz3-2-midden')));
});

test('an answer signed with another key is not believed, and a stranger gets no answer', async () => {
  const s = await setUp('keys', { 'opz3-1-onder': stopped(5), 'opz3-2-midden': stopped(5), 'opz3-3-boven': stopped(5) }, { attemptSeconds: 5 });
  const wrong = JSON.parse(await readFile(s.env['opz3-3-boven']!.NETROOT_GALERA_RECOVERY_CONFIG!, 'utf8'));
  await writeFile(s.env['opz3-3-boven']!.NETROOT_GALERA_RECOVERY_CONFIG!, JSON.stringify({ ...wrong, key: 'x'.repeat(48) }));
  const serveRogue = execa(script, ['serve'], { env: s.env['opz3-3-boven'], extendEnv: false, reject: false, stdin: 'ignore' });
  running.push(serveRogue);
  const result = await decideAll(s.env, ['opz3-1-onder', 'opz3-2-midden'], 20_000);
  // Two genuine servers of three: the third (whose answer is not believed) may hold writes they lack.
  assert.match(result['opz3-1-onder']!.log, 'not bootstrapping: 2 of 3 servers seen; every server that answers at seqno 5 stopped cleanly without safe_to_bootstrap, so opz3-3-boven left after them');
  const stranger = await execa('python3', ['-c', `import socket;s=socket.create_connection(("127.0.0.2", ${port - 1}),timeout=3);s.sendall(b'{"from":"x","nonce":"y","mac":"z"}\\n');print(repr(s.recv(100)))`], { reject: false, timeout: 10_000 });
  assert.is(stranger.stdout.trim(), "b''", stranger.stderr);
});

test("the watchdog restarts a MariaDB Galera left out for good, and leaves one that is still joining alone", async () => {
  // systemctl and journalctl stand-ins: mariadb.service's main PID is 4242, and its journal holds Galera's
  // "node restart required" when LOGGED is set. Each call is recorded.
  const bin = path.join(tmp, 'watchdog-bin');
  await mkdir(bin, { recursive: true });
  const calls = path.join(tmp, 'watchdog-calls');
  await writeFile(path.join(bin, 'systemctl'), `#!/bin/sh\necho "systemctl $*" >> ${calls}\necho 4242\n`, { mode: 0o755 });
  await writeFile(path.join(bin, 'journalctl'), `#!/bin/sh\necho "journalctl $*" >> ${calls}\n[ -n "$LOGGED" ] && echo "[ERROR] WSREP: Receiving IST failed, node restart required: IST didn't contain all write sets"\nexit 0\n`, { mode: 0o755 });
  const cases = [
    { name: 'disconnected', live: { status: 'Disconnected', state: 0 }, logged: false, peerPrimary: false, out: true },
    { name: 'joining in the primary component after a failed IST', live: { status: 'Primary', state: 1 }, logged: true, peerPrimary: true, out: true },
    { name: 'joining in the primary component (a state transfer under way)', live: { status: 'Primary', state: 1 }, logged: false, peerPrimary: true, out: false },
    { name: 'synced again after the message', live: { status: 'Primary', state: 4 }, logged: true, peerPrimary: true, out: false },
    { name: 'non-primary while a peer is primary', live: { status: 'non-Primary', state: 1 }, logged: false, peerPrimary: true, out: true },
    { name: 'non-primary with no primary anywhere (waiting for pc.recovery)', live: { status: 'non-Primary', state: 0 }, logged: false, peerPrimary: false, out: false },
  ];
  const program = [
    'import importlib.machinery, importlib.util, json, sys',
    `loader = importlib.machinery.SourceFileLoader("galera_recovery", ${JSON.stringify(script)})`,
    'spec = importlib.util.spec_from_loader("galera_recovery", loader)',
    'gr = importlib.util.module_from_spec(spec); loader.exec_module(gr)',
    'case = json.loads(sys.argv[1])',
    'gr.ask_all = lambda config: {"peer": {"primary": case["peerPrimary"]}}',
    'print(json.dumps(gr.left_out({}, dict(case["live"], uuid="", seqno=0, size=3))))',
  ].join('\n');
  for (const c of cases) {
    await rm(calls, { force: true });
    const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...(c.logged ? { LOGGED: '1' } : {}) };
    const result = await execa('python3', ['-c', program, JSON.stringify(c)], { env, extendEnv: false, reject: false, timeout: 20_000 });
    assert.is(result.exitCode, 0, `${c.name}: ${result.stderr}`);
    assert.is(JSON.parse(result.stdout), c.out, c.name);
    if (c.live.state !== 4 && c.live.status !== 'Disconnected') {
      // The message is looked for in this mariadbd's own lines only (a restarted one starts clean).
      assert.match(await readFile(calls, 'utf8'), /^journalctl _PID=4242 --grep=node restart required /m, c.name);
    }
  }
});


test("simulate: what each server would decide, from a description and the node's own config", async () => {
  const config = path.join(opz3.nodeRoot('opz3-1-onder'), 'etc/netroot/galera-recovery.json');
  const description = path.join(tmp, 'simulate.json');
  // Sequence 1 of issue 18: an orderly stop with opz3-1-onder last, powered on without it.
  const clean = (seqno: number) => ({ uuid: UUID, seqno, safeToBootstrap: false, crashed: false });
  await writeFile(description, JSON.stringify({ waited: 100_000, servers: { 'opz3-1-onder': null, 'opz3-2-midden': clean(8), 'opz3-3-boven': clean(9) } }));
  const run = await execa(script, ['simulate', description], { env: { NETROOT_GALERA_RECOVERY_CONFIG: config }, reject: false, timeout: 20_000 });
  assert.is(run.exitCode, 0, run.stderr);
  const { decisions } = JSON.parse(run.stdout) as { decisions: Record<string, { action: string; reason: string }> };
  assert.equal(Object.keys(decisions).sort(), ['opz3-2-midden', 'opz3-3-boven']);
  for (const server of ['opz3-2-midden', 'opz3-3-boven']) {
    assert.is(decisions[server]!.action, 'wait', decisions[server]!.reason);
    assert.match(decisions[server]!.reason, 'so opz3-1-onder left after them and holds writes they lack (policy majority waits for it)');
  }
  await writeFile(description, '{"servers": {"opz3-9-nobody": null}}');
  const refused = await execa(script, ['simulate', description], { env: { NETROOT_GALERA_RECOVERY_CONFIG: config }, reject: false, timeout: 20_000 });
  assert.is(refused.exitCode, 2);
  assert.match(refused.stderr, 'servers not in this cluster: opz3-9-nobody');
});
