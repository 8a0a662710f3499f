/**
 * The steps the recovery scenarios (scenarios/power-*.ts and
 * bootstrap-datadir-lost) share: a start from a whole cluster with rows
 * written, an orderly power-off, a server that must stay out alone, the
 * recovery checked against the rows written before, Galera's state files
 * against the recovery model, and a stale server's rejoining with a full
 * state transfer.
 */
import { readFile } from 'node:fs/promises';
import { elapsed, scenario, type LabContext, type ScenarioResult } from './context.js';
import {
  servers,
  galeraFullWithin,
  showGalera,
  journals,
  ensureWhole,
  powerLoss,
  writeRows,
  writeRowsWithin,
  rowsThroughVip,
  whyOut,
  rowsOn,
} from './cluster-checks.js';
import type { Machine } from './machine.js';
import { galeraStatus, vipHolders } from './probes.js';
import { waitFor } from './run-command.js';

/** A scenario's start from a whole cluster, with `rows` rows written through the VIP under a fresh phase. */
export async function begin(
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
export async function staysAlone(
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

/** After an outage: a primary component of all servers within the bound, and the rows written before it. */
export async function recovered(
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
 * The seed's daily power-off: every server but the VIP's holder shuts down, a row is written that only
 * the holder then holds (`${phase}-alone`), and the holder shuts down last (safe_to_bootstrap: 1).
 */
export async function orderlyPowerOff(
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
export async function modelDisagrees(
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

/**
 * The servers powered on without the last to leave wait for it, and say why, for longer than waitForAll
 * (policy majority); or (policy survivor) bootstrap once survivorAfter passed, saying whose writes they give up.
 * Returns the line that says so, or a problem.
 */
export async function withoutTheLastLeaver(
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
 * After a bootstrap that gave up `stale`'s last writes: rows written now, then `stale` powered on.
 * It rejoins with a full state transfer, and every server holds every new row and not its old one.
 */
export async function newestHistoryWins(
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
export async function rejoinedAfresh(
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
