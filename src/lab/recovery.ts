/**
 * The cluster's life after the cold start: MariaDB killed on the node that
 * bootstrapped, whole-cluster power-offs and cuts, a stale server, a lone
 * survivor and a lost datadir. Each scenario starts from a whole cluster
 * (ensureWhole), leaves it whole when it passes, and reports the seconds from
 * power-on (or the kill) to a primary component of all servers.
 */
import { readFile, rm } from 'node:fs/promises';
import type { Machine } from './machine.js';
import { galeraStatus, sqlThroughVip, vipHolders } from './probes.js';
import { waitFor } from './run-command.js';
import {
  elapsed,
  ensureWhole,
  galeraFullWithin,
  journals,
  powerLoss,
  scenario,
  servers,
  showGalera,
  sqlWithin,
  TABLE,
  type LabContext,
  type ScenarioResult,
} from './scenarios.js';

/** A scenario's start from a whole cluster, with `rows` rows written through the VIP under a fresh phase. */
async function begin(
  ctx: LabContext,
  name: string,
  rows: number,
): Promise<{ s: ReturnType<typeof scenario>; phase: string } | ScenarioResult> {
  const s = scenario(name, Date.now());
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const phase = `${name}-${Date.now()}`;
  const wrote = await writeRows(ctx, phase, rows);
  if (wrote) return s.result(false, wrote);
  return { s, phase };
}

/**
 * A server powered on alone must stay out of any primary component and say why: the journal line
 * matching `says` (within 90 s), then `settleMs` more for a bootstrap that would come late.
 */
async function staysAlone(
  ctx: LabContext,
  machine: Machine,
  says: RegExp,
  settleMs: number,
): Promise<{ said: string } | { problem: string }> {
  const log = await waitFor(
    async () => {
      const text = await machine.journal('mariadb', 50);
      return says.test(text) ? text : undefined;
    },
    90_000,
    2_000,
  );
  await new Promise((r) => setTimeout(r, settleMs));
  if ((await galeraStatus(machine))?.status === 'Primary') return { problem: `${machine.node.name} alone became primary` };
  if (!log)
    return { problem: `${machine.node.name} alone does not say why it waits\n${await journals(ctx, [machine.node.name], 'mariadb')}` };
  return {
    said: log
      .split('\n')
      .filter((l) => says.test(l))
      .pop()!
      .trim(),
  };
}

/** `count` rows of `phase` through the VIP, the last one alone (the "last row written"). */
export async function writeRows(ctx: LabContext, phase: string, count: number): Promise<string | undefined> {
  const created = await sqlThroughVip(
    ctx.topology,
    ctx.datastore,
    `CREATE TABLE IF NOT EXISTS ${TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, phase VARCHAR(64) NOT NULL)`,
  );
  if (!created.ok) return `could not create ${TABLE} through the VIP: ${created.stderr.trim()}`;
  if (count > 1) {
    const values = Array.from({ length: count - 1 }, () => `('${phase}')`).join(',');
    const bulk = await sqlThroughVip(ctx.topology, ctx.datastore, `INSERT INTO ${TABLE} (phase) VALUES ${values}`, 30_000);
    if (!bulk.ok) return `writing ${count - 1} rows through the VIP failed: ${bulk.stderr.trim()}`;
  }
  const last = await sqlThroughVip(ctx.topology, ctx.datastore, `INSERT INTO ${TABLE} (phase) VALUES ('${phase}-last')`, 30_000);
  if (!last.ok) return `writing the last row through the VIP failed: ${last.stderr.trim()}`;
  return undefined;
}

/** writeRows, tried again every 2 s while the VIP settles; whether it succeeded within `timeoutMs`. */
async function writeRowsWithin(ctx: LabContext, phase: string, count: number, timeoutMs: number): Promise<boolean> {
  return (await waitFor(async () => ((await writeRows(ctx, phase, count)) === undefined ? true : undefined), timeoutMs, 2_000)) === true;
}

/**
 * Rows of `phase` (the last one included) as the datastore answers through the VIP now. Retried
 * (bounded) like any statement through the VIP: right after a recovery the VIP may still move (the
 * first server takes it back once its health check passes), which resets a connection in flight.
 */
export async function rowsThroughVip(ctx: LabContext, phase: string): Promise<{ count: number; last: boolean } | string> {
  const rows = await sqlWithin(
    ctx,
    `SELECT COUNT(*), SUM(phase = '${phase}-last') FROM ${TABLE} WHERE phase IN ('${phase}', '${phase}-last')`,
    60_000,
    1_000,
  );
  if (!rows.ok) return `reading ${TABLE} through the VIP failed: ${rows.stderr.trim()}`;
  const [count, last] = rows.stdout.trim().split('\t').map(Number);
  return { count: count ?? 0, last: last === 1 };
}

/** The servers whose MariaDB decision bootstrapped the cluster in their current boot. */
async function bootstrappers(ctx: LabContext, among: Machine[] = servers(ctx)): Promise<string[]> {
  const found: string[] = [];
  for (const machine of among) {
    // Grepped for: a donor's state transfer can write more lines than any fixed tail holds.
    const log = await machine.journal('mariadb', 5, ': (bootstrapping|starting the new Galera cluster)');
    if (log) found.push(machine.node.name);
  }
  return found;
}

/** A problem unless `expected` alone bootstrapped in this boot (`why` says why it should have). */
async function onlyBootstrapper(ctx: LabContext, expected: Machine, why: string): Promise<string | undefined> {
  const who = await bootstrappers(ctx);
  if (who.join(',') === expected.node.name) return undefined;
  return `expected ${expected.node.name} (${why}) to bootstrap, but ${who.length ? who.join(', ') : 'none'} did`;
}

/** Powers the machines on in the lab's shuffled order, without waiting between them (all on at once). */
async function powerOnAll(ctx: LabContext, machines: Machine[]): Promise<string[]> {
  const order = ctx.shuffle(machines);
  await Promise.all(order.map((m) => ctx.powerOn(m)));
  return order.map((m) => m.node.name);
}

/**
 * What a server left out of the primary component said: mariadbd's errors and
 * the recovery's decisions, which the journal's last lines (often systemd's
 * own) do not show.
 */
export async function whyOut(ctx: LabContext, names: string[]): Promise<string> {
  const parts: string[] = [];
  for (const machine of ctx.machines.filter((m) => names.includes(m.node.name))) {
    const said = await machine.journal('mariadb', 10, `\\[ERROR\\]|^${machine.node.name}: `).catch(() => '');
    if (said) parts.push(`errors and decisions of mariadb on ${machine.node.name}: ${said.split('\n').join(' / ')}`);
  }
  return parts.join('\n');
}

/** After an outage: a primary component of all servers within the bound, and the rows written before it. */
async function recovered(
  ctx: LabContext,
  s: ReturnType<typeof scenario>,
  poweredOn: number,
  phase: string,
  rows: number,
  story: string,
): Promise<ScenarioResult> {
  const galera = await galeraFullWithin(ctx, ctx.bounds.recoverySeconds * 1000);
  if (!galera.ok) {
    const names = servers(ctx).map((m) => m.node.name);
    const out = [...galera.seen].filter(([, seen]) => !seen || seen.size !== names.length).map(([name]) => name);
    return s.result(
      false,
      `${story}; no primary component of all ${names.length} servers within ${ctx.bounds.recoverySeconds} s (${showGalera(galera.seen)})\n${await journals(ctx, names, 'mariadb', 6)}\n${await whyOut(ctx, out)}`,
    );
  }
  const primaryAfter = elapsed(poweredOn);
  s.primary(primaryAfter);
  const seen = await rowsThroughVip(ctx, phase);
  if (typeof seen === 'string') return s.result(false, `${story}; ${seen}`);
  if (seen.count !== rows || !seen.last)
    return s.result(
      false,
      `${story}; only ${seen.count} of the ${rows} rows written before are there${seen.last ? '' : ', and the last one is lost'}`,
    );
  const kept = rows === 1 ? 'the row written last is there' : `all ${rows} rows there, the last one too`;
  return s.result(
    true,
    `${story}; primary component of all servers ${primaryAfter} s after power-on (bound ${ctx.bounds.recoverySeconds} s); ${kept}`,
  );
}

/**
 * MariaDB killed (no reboot) on the server that bootstrapped the cluster: its
 * next start must join, not bootstrap again ("It may not be safe to bootstrap").
 */
export async function mariadbRestartBootstrap(ctx: LabContext): Promise<ScenarioResult> {
  const start = Date.now();
  const s = scenario('mariadb-restart-bootstrap', start);
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const named = await bootstrappers(ctx);
  const victim = servers(ctx).find((m) => m.node.name === (named[0] ?? ctx.bootstrapNode))!;
  const why = named.length
    ? 'which bootstrapped the cluster in this boot'
    : `the bootstrap node (the cluster formed through pc.recovery in this boot, so none bootstrapped)`;
  ctx.log(`mariadb-restart-bootstrap: killing MariaDB on ${victim.node.name}, ${why}`);
  const killed = await victim.exec(
    'bash',
    ['-c', 'pid=$(systemctl show --property=MainPID --value mariadb.service) && [ "$pid" -gt 0 ] && kill -KILL "$pid"'],
    { timeoutMs: 10_000 },
  );
  if (!killed.ok) return s.result(false, `could not kill MariaDB on ${victim.node.name}: ${killed.stderr.trim()}`);
  const cut = Date.now();
  // Wait until it is really gone from the cluster, then for its return.
  await waitFor(async () => ((await galeraStatus(victim)) === undefined ? true : undefined), 20_000, 250);
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  const log = await victim.journal('mariadb', 60);
  if (!galera.ok)
    return s.result(
      false,
      `MariaDB on ${victim.node.name} did not come back into the cluster within ${ctx.bounds.rejoinSeconds} s (${showGalera(galera.seen)})\n${log.split('\n').slice(-8).join(' / ')}`,
    );
  s.primary(elapsed(cut));
  if (/may not be safe to bootstrap/i.test(log))
    return s.result(
      false,
      `${victim.node.name} tried to bootstrap again: ${log.split('\n').filter((l) => /safe to bootstrap/i.test(l))[0]}`,
    );
  const joined = log
    .split('\n')
    .filter((l) => l.includes('joining the primary component'))
    .pop();
  return s.result(
    true,
    `MariaDB killed on ${victim.node.name} (${why}) restarted by itself${joined ? ` ("${joined.trim()}")` : ''}; all servers primary again ${elapsed(cut)} s after the kill (bound ${ctx.bounds.rejoinSeconds} s)`,
  );
}

/**
 * The seed's daily power-off: every server but the VIP's holder shuts down, a row is written that only
 * the holder then holds (`${phase}-alone`), and the holder shuts down last (safe_to_bootstrap: 1).
 */
async function orderlyPowerOff(
  ctx: LabContext,
  name: string,
  phase: string,
): Promise<{ lastOne: Machine; firstOnes: Machine[] } | { problem: string }> {
  const running = servers(ctx).filter((m) => m.running);
  // The VIP's holder goes last, so writes reach it until the end.
  const [holder] = await vipHolders(ctx.topology, ctx.machines);
  const lastOne = running.find((m) => m.node.name === holder) ?? running[0]!;
  const firstOnes = running.filter((m) => m !== lastOne);
  ctx.log(`${name}: shutting down ${firstOnes.map((m) => m.node.name).join(' and ')}, then ${lastOne.node.name}`);
  for (const m of firstOnes) await m.shutdown();
  await new Promise((r) => setTimeout(r, 5_000));
  // Written while only the last server runs: only it holds this row.
  const final = await writeRows(ctx, `${phase}-alone`, 1);
  if (final) return { problem: `with only ${lastOne.node.name} running: ${final}` };
  const how = await lastOne.shutdown();
  if (how !== 'clean') return { problem: `${lastOne.node.name} did not shut down within 90 s` };
  for (const m of [...firstOnes, lastOne]) await powerLoss(m);
  const model = await modelDisagrees([...firstOnes, lastOne], (m) => ({ clean: true, safe: m === lastOne }));
  if (model) return { problem: model };
  return { lastOne, firstOnes };
}

/** What Galera left in a server's datadir: grastate.dat's seqno and flag, and the members of gvwstate.dat. */
async function stateFiles(machine: Machine): Promise<{ seqno: number; safe: boolean; view: number | undefined } | undefined> {
  const grastate = await readFile(machine.pathInRoot('var/lib/mysql/grastate.dat'), 'utf8').catch(() => undefined);
  if (grastate === undefined) return undefined;
  const gvwstate = await readFile(machine.pathInRoot('var/lib/mysql/gvwstate.dat'), 'utf8').catch(() => undefined);
  return {
    seqno: Number(/^seqno:\s*(-?\d+)/m.exec(grastate)?.[1] ?? NaN),
    safe: /^safe_to_bootstrap:\s*1/m.test(grastate),
    view: gvwstate === undefined ? undefined : (gvwstate.match(/^member:/gm) ?? []).length,
  };
}

/**
 * Keeps the model of test/overlays/galera-recovery/test_model.py honest: what real MariaDB wrote
 * after an orderly stop (the seqno; safe_to_bootstrap only on the last; no gvwstate.dat) or a power
 * cut (seqno -1 and the primary view's members in gvwstate.dat), as the model says it writes.
 */
async function modelDisagrees(
  machines: Machine[],
  expected: (m: Machine) => { clean: true; safe: boolean } | { clean: false; view: number },
): Promise<string | undefined> {
  const wrong: string[] = [];
  for (const m of machines) {
    const got = await stateFiles(m);
    const want = expected(m);
    const said = got
      ? `seqno ${got.seqno}, safe_to_bootstrap ${got.safe ? 1 : 0}, ${got.view === undefined ? 'no gvwstate.dat' : `a view of ${got.view}`}`
      : 'no grastate.dat';
    const ok =
      got !== undefined &&
      (want.clean ? got.seqno >= 0 && got.safe === want.safe && got.view === undefined : got.seqno === -1 && got.view === want.view);
    if (!ok)
      wrong.push(
        `${m.node.name}: real MariaDB wrote ${said}; the model says ${want.clean ? `a seqno, safe_to_bootstrap ${want.safe ? 1 : 0}, no gvwstate.dat` : `seqno -1 and a view of ${want.view}`}`,
      );
  }
  return wrong.length ? `Galera's state files differ from the recovery model's: ${wrong.join('; ')}` : undefined;
}

/** The seed's daily power-off: two servers, a pause, the last; then every node on at once in random order. */
export async function powerOrderly(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-orderly', 20);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-orderly', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne, firstOnes } = off;
  const poweredOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const story = `${firstOnes.map((m) => m.node.name).join(', ')} shut down, then ${lastOne.node.name}; powered on in the order ${order.join(', ')}`;
  const result = await recovered(ctx, s, poweredOn, `${phase}-alone`, 1, story);
  if (!result.pass) return result;
  const earlier = await rowsThroughVip(ctx, phase);
  if (typeof earlier === 'string' || earlier.count !== 20)
    return s.result(false, `${story}; the 20 rows written before the power-off are not all there`);
  const other = await onlyBootstrapper(ctx, lastOne, 'safe_to_bootstrap');
  if (other) return s.result(false, `${story}; ${other}`);
  return s.result(true, `${result.detail}; ${lastOne.node.name}, the last to leave, bootstrapped`);
}

/** Every server loses power at once, then all come back. */
export async function powerCut(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-cut', 50);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  ctx.log('power-cut: pulling the power of every server at once');
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const model = await modelDisagrees(servers(ctx), () => ({ clean: false, view: servers(ctx).length }));
  if (model) return s.result(false, model);
  const poweredOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const result = await recovered(ctx, s, poweredOn, phase, 50, `all servers cut at once; powered on in the order ${order.join(', ')}`);
  if (!result.pass) return result;
  const who = await bootstrappers(ctx);
  return s.result(
    true,
    `${result.detail}; ${who.length ? `${who.join(', ')} bootstrapped` : "nobody bootstrapped: Galera's pc.recovery restored the last view"}`,
  );
}

/** One server is down while rows are written; then all are cut and all come back: the stale one must not bootstrap. */
export async function powerStaleNode(ctx: LabContext): Promise<ScenarioResult> {
  const start = Date.now();
  const s = scenario('power-stale-node', start);
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const holders = servers(ctx);
  const withVip = await vipHolders(ctx.topology, ctx.machines);
  const stale = holders.find((m) => !withVip.includes(m.node.name))!;
  ctx.log(`power-stale-node: pulling the power of ${stale.node.name}, then writing through the VIP`);
  await powerLoss(stale);
  const phase = `stale-${Date.now()}`;
  const wrote = await writeRowsWithin(ctx, phase, 30, 60_000);
  if (!wrote) return s.result(false, `could not write through the VIP while ${stale.node.name} was down`);
  ctx.log('power-stale-node: pulling the power of the other servers');
  await Promise.all(holders.filter((m) => m.running).map((m) => powerLoss(m)));
  const poweredOn = Date.now();
  const order = await powerOnAll(ctx, holders);
  const result = await recovered(
    ctx,
    s,
    poweredOn,
    phase,
    30,
    `${stale.node.name} down while 30 rows were written, then every server cut; powered on in the order ${order.join(', ')}`,
  );
  if (!result.pass) return result;
  const who = await bootstrappers(ctx);
  if (who.includes(stale.node.name)) return s.result(false, `${result.detail}; but the stale ${stale.node.name} bootstrapped`);
  return s.result(true, `${result.detail}; ${who.length ? who.join(', ') : 'nobody'} bootstrapped, not the stale ${stale.node.name}`);
}

/**
 * Only one server comes back after a cut. Under the majority policy it stays
 * out of any primary component and says why; under the survivor policy it
 * bootstraps once survivorAfter has passed. Then the others return.
 */
export async function powerOneSurvivor(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-one-survivor', 10);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const [survivor, ...rest] = ctx.shuffle(servers(ctx));
  ctx.log(`power-one-survivor: every server cut; powering only ${survivor!.node.name} on (policy ${ctx.recoveryPolicy})`);
  const poweredOn = Date.now();
  await ctx.powerOn(survivor!);
  const total = servers(ctx).length;
  let story: string;
  if (ctx.recoveryPolicy === 'majority') {
    // Long enough to have bootstrapped if it were going to (the decision polls every 2 s).
    const alone = await staysAlone(ctx, survivor!, /not bootstrapping: 1 of \d+ servers seen/, 20_000);
    if ('problem' in alone) return s.result(false, `${alone.problem} (policy majority)`);
    story = `${survivor!.node.name} alone stayed out of any primary component and said "${alone.said}"`;
  } else {
    const bound = ctx.bounds.survivorAfterSeconds + 120;
    const primary = await waitFor(
      async () => ((await galeraStatus(survivor!))?.status === 'Primary' ? true : undefined),
      bound * 1000,
      2_000,
    );
    if (!primary)
      return s.result(
        false,
        `policy survivor: ${survivor!.node.name} alone did not bootstrap within ${bound} s\n${await journals(ctx, [survivor!.node.name], 'mariadb')}`,
      );
    const after = elapsed(poweredOn);
    if (after < ctx.bounds.survivorAfterSeconds)
      return s.result(
        false,
        `policy survivor: ${survivor!.node.name} bootstrapped after ${after} s, before survivorAfter (${ctx.bounds.survivorAfterSeconds} s)`,
      );
    story = `policy survivor: ${survivor!.node.name} alone bootstrapped ${after} s after power-on (survivorAfter ${ctx.bounds.survivorAfterSeconds} s)`;
  }
  const othersOn = Date.now();
  await powerOnAll(ctx, rest);
  return recovered(ctx, s, othersOn, phase, 10, `${story}; the other ${total - 1} powered on`);
}

/** The bootstrap node's datadir is lost and it boots alone; the others come back later: no new cluster, every row kept. */
export async function bootstrapDatadirLost(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'bootstrap-datadir-lost', 25);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const node = servers(ctx).find((m) => m.node.name === ctx.bootstrapNode)!;
  // What a rebuilt tree or a swapped disk leaves: an empty datadir.
  await rm(node.pathInRoot('var/lib/mysql'), { recursive: true, force: true });
  ctx.log(`bootstrap-datadir-lost: ${node.node.name}'s datadir emptied; powering it on alone`);
  await ctx.powerOn(node);
  const alone = await staysAlone(ctx, node, /waiting|not bootstrapping|new one starts only once/, 15_000);
  if ('problem' in alone) return s.result(false, `${alone.problem} (its datadir empty)`);
  const { said } = alone;
  const othersOn = Date.now();
  const order = await powerOnAll(
    ctx,
    servers(ctx).filter((m) => m !== node),
  );
  const result = await recovered(
    ctx,
    s,
    othersOn,
    phase,
    25,
    `${node.node.name} booted alone with an empty datadir and waited ("${said}"); then ${order.join(', ')} powered on`,
  );
  if (!result.pass) return result;
  if ((await bootstrappers(ctx, [node])).length) return s.result(false, `${result.detail}; but ${node.node.name} bootstrapped`);
  const there = await rowsOn(ctx, node, phase);
  if (there !== 25) return s.result(false, `${result.detail}; but ${node.node.name} itself holds ${there} of the 25 rows`);
  return s.result(true, `${result.detail}; ${node.node.name} joined with a state transfer and holds all 25`);
}

/** Rows of `phase` (the last one included) that one server itself holds, read on it. */
async function rowsOn(ctx: LabContext, machine: Machine, phase: string): Promise<number | string> {
  const held = await machine.exec(
    'mariadb',
    [
      '--batch',
      '--skip-column-names',
      ctx.datastore.database,
      '-e',
      `SELECT COUNT(*) FROM ${TABLE} WHERE phase IN ('${phase}', '${phase}-last')`,
    ],
    { timeoutMs: 10_000 },
  );
  return held.ok ? Number(held.stdout.trim()) : `reading ${TABLE} on ${machine.node.name} failed: ${held.stderr.trim()}`;
}

/**
 * The servers powered on without the last to leave wait for it, and say why, for longer than waitForAll
 * (policy majority); or (policy survivor) bootstrap once survivorAfter passed, saying whose writes they give up.
 * Returns the line that says so, or a problem.
 */
async function withoutTheLastLeaver(
  ctx: LabContext,
  firstOnes: Machine[],
  lastOne: Machine,
  poweredOn: number,
): Promise<{ said: string } | { problem: string }> {
  const names = firstOnes.map((m) => m.node.name).join(', ');
  if (ctx.recoveryPolicy === 'majority') {
    // Past the old rule's wait (waitForAll), with a margin for a bootstrap that would come late.
    const alone = await staysAlone(ctx, firstOnes[0]!, /left after them and holds writes they lack/, 0);
    if ('problem' in alone) return alone;
    const until = poweredOn + (ctx.bounds.waitForAllSeconds + 20) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
    for (const m of firstOnes)
      if ((await galeraStatus(m))?.status === 'Primary')
        return { problem: `${m.node.name} became primary without ${lastOne.node.name}, the last to leave (policy majority)` };
    return {
      said: `${names} waited ${elapsed(poweredOn)} s without ${lastOne.node.name} (waitForAll ${ctx.bounds.waitForAllSeconds} s) and said "${alone.said}"`,
    };
  }
  const bound = ctx.bounds.survivorAfterSeconds + 120;
  const primary = await waitFor(
    async () => {
      for (const m of firstOnes) if ((await galeraStatus(m))?.status === 'Primary') return m;
      return undefined;
    },
    bound * 1000,
    2_000,
  );
  if (!primary)
    return {
      problem: `policy survivor: ${names} did not bootstrap within ${bound} s\n${await journals(
        ctx,
        firstOnes.map((m) => m.node.name),
        'mariadb',
      )}`,
    };
  const after = elapsed(poweredOn);
  if (after < ctx.bounds.survivorAfterSeconds)
    return {
      problem: `policy survivor: ${primary.node.name} bootstrapped after ${after} s, before survivorAfter (${ctx.bounds.survivorAfterSeconds} s)`,
    };
  const line = (await primary.journal('mariadb', 5, 'bootstrapping, .* given up')).split('\n').filter(Boolean).pop();
  if (!line)
    return {
      problem: `policy survivor: ${primary.node.name} bootstrapped without saying whose writes it gives up\n${await journals(ctx, [primary.node.name], 'mariadb')}`,
    };
  return { said: `policy survivor: ${primary.node.name} bootstrapped ${after} s after power-on and said "${line.trim()}"` };
}

/**
 * Sequence 1 of issue 18: an orderly power-off with one server last (it alone holds the last row),
 * then the others come back without it. They never bootstrap without it under policy majority,
 * and it bootstraps when it returns, every row there. Under policy survivor they bootstrap after
 * survivorAfter, take new rows, and the old last leaver rejoins them with a full state transfer:
 * the newest history wins, every row of it on every server.
 */
export async function powerLastLeaverMissing(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-last-leaver-missing', 20);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-last-leaver-missing', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne, firstOnes } = off;
  const poweredOn = Date.now();
  await powerOnAll(ctx, firstOnes);
  const without = await withoutTheLastLeaver(ctx, firstOnes, lastOne, poweredOn);
  if ('problem' in without) return s.result(false, without.problem);
  const backOn = Date.now();
  if (ctx.recoveryPolicy === 'majority') {
    await ctx.powerOn(lastOne);
    const result = await recovered(ctx, s, backOn, `${phase}-alone`, 1, `${without.said}; then ${lastOne.node.name} powered on`);
    if (!result.pass) return result;
    const other = await onlyBootstrapper(ctx, lastOne, 'the last to leave');
    if (other) return s.result(false, `${result.detail}; ${other}`);
    const earlier = await rowsThroughVip(ctx, phase);
    if (typeof earlier === 'string' || earlier.count !== 20)
      return s.result(false, `${result.detail}; the 20 rows written before the power-off are not all there`);
    return s.result(true, `${result.detail}; ${lastOne.node.name}, the last to leave, bootstrapped`);
  }
  return newestHistoryWins(ctx, s, phase, lastOne, without.said);
}

/**
 * After a bootstrap that gave up `stale`'s last writes: rows written now, then `stale` powered on.
 * It rejoins with a full state transfer, and every server holds every new row and not its old one.
 */
async function newestHistoryWins(
  ctx: LabContext,
  s: ReturnType<typeof scenario>,
  phase: string,
  stale: Machine,
  story: string,
): Promise<ScenarioResult> {
  const newer = `${phase}-newer`;
  const wrote = await writeRowsWithin(ctx, newer, 15, 90_000);
  if (!wrote) return s.result(false, `${story}; could not write through the VIP afterwards`);
  const backOn = Date.now();
  if (!stale.running) await ctx.powerOn(stale);
  const result = await recovered(ctx, s, backOn, newer, 15, `${story}; 15 rows written, then ${stale.node.name} powered on`);
  if (!result.pass) return result;
  const rejoined = await rejoinedAfresh(ctx, stale, newer, `${phase}-alone`);
  if ('problem' in rejoined) return s.result(false, `${result.detail}; ${rejoined.problem}`);
  return s.result(
    true,
    `${result.detail}; ${stale.node.name} said "${rejoined.said}"; every server holds the 15 newer rows and not the given-up one`,
  );
}

/**
 * A server whose last writes a bootstrap gave up rejoined with a full state transfer: it says so, and
 * every server holds the 15 rows of `newer` and not the given-up row of `givenUp`.
 */
async function rejoinedAfresh(
  ctx: LabContext,
  stale: Machine,
  newer: string,
  givenUp: string,
): Promise<{ said: string } | { problem: string }> {
  // Grepped for: a state transfer's own lines push the decision out of any fixed tail of the journal.
  const said = (await stale.journal('mariadb', 5, 'with a full state transfer')).split('\n').filter(Boolean).pop();
  if (!said)
    return {
      problem: `${stale.node.name} did not say it rejoins with a full state transfer\n${await journals(ctx, [stale.node.name], 'mariadb', 8)}`,
    };
  for (const m of servers(ctx)) {
    const held = await rowsOn(ctx, m, newer);
    if (held !== 15) return { problem: `${m.node.name} holds ${held} of the 15 newer rows` };
    const old = await rowsOn(ctx, m, givenUp);
    if (old !== 0)
      return { problem: `${m.node.name} still holds the given-up row of ${stale.node.name} (${old}): histories went two ways` };
  }
  return { said: said.trim() };
}

/**
 * Sequence 2 of issue 18: a server's safe_to_bootstrap flag goes stale. After an orderly power-off
 * with `stale` last, the others come back without it and bootstrap anyway (a person chooses one under
 * policy majority, survivorAfter under survivor), take new rows and are powered off in order. Then
 * every server comes on at once: the newest history bootstraps, not the stale flag, and `stale`
 * rejoins with a full state transfer.
 */
export async function powerStaleFlag(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-stale-flag', 10);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-stale-flag', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne: stale, firstOnes } = off;
  const poweredOn = Date.now();
  await powerOnAll(ctx, firstOnes);
  let story: string;
  if (ctx.recoveryPolicy === 'majority') {
    const alone = await staysAlone(ctx, firstOnes[0]!, /left after them and holds writes they lack/, 0);
    if ('problem' in alone) return s.result(false, alone.problem);
    const chosen = firstOnes[0]!;
    const chose = await chosen.exec('touch', ['/run/netroot/galera-bootstrap-here'], { timeoutMs: 10_000 });
    if (!chose.ok) return s.result(false, `could not choose ${chosen.node.name}: ${chose.stderr.trim()}`);
    story = `${firstOnes.map((m) => m.node.name).join(', ')} waited for ${stale.node.name} ("${alone.said}"); a person chose ${chosen.node.name}`;
  } else {
    const without = await withoutTheLastLeaver(ctx, firstOnes, stale, poweredOn);
    if ('problem' in without) return s.result(false, without.problem);
    story = without.said;
  }
  const formed = await galeraFullWithin(ctx, ctx.bounds.recoverySeconds * 1000, firstOnes.length);
  if (!formed.ok)
    return s.result(false, `${story}; the servers without ${stale.node.name} formed no primary component (${showGalera(formed.seen)})`);
  const newer = `${phase}-newer`;
  const wrote = await writeRowsWithin(ctx, newer, 15, 90_000);
  if (!wrote) return s.result(false, `${story}; could not write through the VIP`);
  // A second orderly power-off: the newest history now ends on a server with a flag of its own.
  const again = await orderlyPowerOff(ctx, 'power-stale-flag', newer);
  if ('problem' in again) return s.result(false, again.problem);
  const allOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const result = await recovered(
    ctx,
    s,
    allOn,
    `${newer}-alone`,
    1,
    `${story}; 15 rows written, ${again.lastOne.node.name} shut down last; all powered on in the order ${order.join(', ')}`,
  );
  if (!result.pass) return result;
  const other = await onlyBootstrapper(ctx, again.lastOne, 'the newest history');
  if (other) return s.result(false, `${result.detail}; ${other}`);
  const rejoined = await rejoinedAfresh(ctx, stale, newer, `${phase}-alone`);
  if ('problem' in rejoined) return s.result(false, `${result.detail}; ${rejoined.problem}`);
  return s.result(
    true,
    `${result.detail}; ${again.lastOne.node.name} bootstrapped, not the stale flag of ${stale.node.name}, which rejoined with a full state transfer; every server holds the 15 newer rows`,
  );
}
