/**
 * What the scenarios ask of the cluster and do to it, shared by all of them:
 * Galera whole on every running server, one settled VIP holder, statements
 * and rows through the VIP, who bootstrapped, the journals behind a failure,
 * and a node's power pulled or every node's given back.
 */
import type { Machine } from './machine.js';
import { unplug } from './network.js';
import { describeGalera, galeraStatus, sqlThroughVip, vipHolders, type GaleraStatus } from './probes.js';
import { waitFor, type CommandResult } from './run-command.js';
import { elapsed, type LabContext } from './context.js';

/** The table the scenarios write their rows to through the VIP. */
export const TABLE = 'netroot_lab_writes';

export const servers = (ctx: LabContext): Machine[] => ctx.machines.filter((m) => m.node.isServer);
export const runningServers = (ctx: LabContext): Machine[] => servers(ctx).filter((m) => m.running);

export interface GaleraView {
  ok: boolean;
  seen: Map<string, GaleraStatus | undefined>;
}

async function galeraEverywhere(ctx: LabContext, expected: number): Promise<GaleraView> {
  const seen = new Map<string, GaleraStatus | undefined>();
  for (const machine of runningServers(ctx)) seen.set(machine.node.name, await galeraStatus(machine));
  const ok = [...seen.values()].every((s) => s !== undefined && s.size === expected && s.status === 'Primary' && s.state === 'Synced');
  return { ok: ok && seen.size > 0, seen };
}

/**
 * Polls until every running server is a synced member of one primary component of `size` (by
 * default, every server of the profile); the last view either way.
 */
export async function galeraFullWithin(ctx: LabContext, timeoutMs: number, size = servers(ctx).length): Promise<GaleraView> {
  let view: GaleraView | undefined;
  await waitFor(async () => ((view = await galeraEverywhere(ctx, size)).ok ? true : undefined), timeoutMs, 2_000);
  return view!;
}

/** Polls until the k3s database answers through the VIP; the last attempt either way. */
export function datastoreWithin(ctx: LabContext, timeoutMs: number, intervalMs: number): Promise<CommandResult> {
  return sqlWithin(ctx, 'SELECT 1', timeoutMs, intervalMs);
}

/** Retries a statement through the VIP until it succeeds (while the VIP moves, say); the last attempt either way. */
export async function sqlWithin(
  ctx: LabContext,
  statement: string,
  timeoutMs: number,
  intervalMs: number,
  attemptMs = 15_000,
): Promise<CommandResult> {
  let last: CommandResult | undefined;
  await waitFor(
    async () => ((last = await sqlThroughVip(ctx.topology, ctx.datastore, statement, attemptMs)).ok ? true : undefined),
    timeoutMs,
    intervalMs,
  );
  return last!;
}

export const showGalera = (seen: Map<string, GaleraStatus | undefined>): string =>
  [...seen].map(([name, s]) => `${name}: ${describeGalera(s)}`).join('; ');

/** Journal lines of `unit` on the named machines, for a failure's detail. */
export async function journals(ctx: LabContext, names: string[], unit: string, lines = 4): Promise<string> {
  const parts: string[] = [];
  for (const machine of ctx.machines.filter((m) => names.includes(m.node.name))) {
    const text = await machine.journal(unit, lines);
    if (text) parts.push(`${unit} on ${machine.node.name}: ${text.split('\n').join(' / ')}`);
  }
  return parts.join('\n');
}

/**
 * Waits for a single VIP holder that stays the only one for `quietMs` (0: as
 * soon as there is one); returns the holders last seen. Before a scenario, a
 * quiet time keeps a preemption still under way (a restarted server becoming
 * synced and taking the VIP back) from racing the test.
 */
export async function settledVipHolder(ctx: LabContext, quietMs = 6_000, timeoutMs = 60_000, intervalMs = 500): Promise<string[]> {
  let holders: string[] = [];
  let since = Date.now();
  let previous = '';
  await waitFor(
    async () => {
      holders = await vipHolders(ctx.topology, ctx.machines);
      const key = holders.join(',');
      if (key !== previous) {
        previous = key;
        since = Date.now();
      }
      return holders.length === 1 && Date.now() - since >= quietMs ? true : undefined;
    },
    timeoutMs,
    intervalMs,
  );
  return holders;
}

export function vipProblem(ctx: LabContext, holders: string[]): string {
  if (holders.length === 0) return `no server holds the VIP ${ctx.topology.vip}`;
  return `the VIP ${ctx.topology.vip} is held by ${holders.length} servers at once (${holders.join(', ')}): their keepalived do not accept each other's VRRP adverts; check virtual_router_id, auth_pass and interface in their keepalived.conf`;
}

/**
 * Every scenario but the cold start begins here, so that each passes alone and
 * in any order: every node powered on, Galera whole, one VIP holder, the
 * datastore answering through it. Returns what is wrong, or undefined.
 */
export async function ensureWhole(ctx: LabContext): Promise<string | undefined> {
  const off = ctx.machines.filter((m) => !m.running);
  for (const machine of off) {
    ctx.log(`powering ${machine.node.name} on: the scenario starts from a whole cluster`);
    await ctx.powerOn(machine);
  }
  const galera = await galeraFullWithin(ctx, (off.length ? ctx.bounds.recoverySeconds : ctx.bounds.rejoinSeconds) * 1000);
  if (!galera.ok) return `before the scenario, Galera is not whole (${showGalera(galera.seen)})`;
  const holders = await settledVipHolder(ctx, 6_000, ctx.bounds.vipSettleSeconds * 1000);
  if (holders.length !== 1) return `before the scenario: ${vipProblem(ctx, holders)}`;
  const sql = await datastoreWithin(ctx, 60_000, 1_000);
  if (!sql.ok) return `before the scenario, the datastore does not answer through the VIP: ${sql.stderr.trim()}`;
  return undefined;
}

/** Waits for the restarted node to be back in a full, synced Galera cluster. */
export async function rejoin(
  ctx: LabContext,
  machine: Machine,
): Promise<{ ok: boolean; seconds: number; seen: Map<string, GaleraStatus | undefined> }> {
  const start = Date.now();
  await ctx.powerOn(machine);
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  return { ok: galera.ok, seconds: elapsed(start), seen: galera.seen };
}

export async function powerLoss(machine: Machine): Promise<void> {
  await machine.powerOff();
  await unplug(machine.node);
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
export async function writeRowsWithin(ctx: LabContext, phase: string, count: number, timeoutMs: number): Promise<boolean> {
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
export async function bootstrappers(ctx: LabContext, among: Machine[] = servers(ctx)): Promise<string[]> {
  const found: string[] = [];
  for (const machine of among) {
    // Grepped for: a donor's state transfer can write more lines than any fixed tail holds.
    const log = await machine.journal('mariadb', 5, ': (bootstrapping|starting the new Galera cluster)');
    if (log) found.push(machine.node.name);
  }
  return found;
}

/** A problem unless `expected` alone bootstrapped in this boot (`why` says why it should have). */
export async function onlyBootstrapper(ctx: LabContext, expected: Machine, why: string): Promise<string | undefined> {
  const who = await bootstrappers(ctx);
  if (who.join(',') === expected.node.name) return undefined;
  return `expected ${expected.node.name} (${why}) to bootstrap, but ${who.length ? who.join(', ') : 'none'} did`;
}

/** Powers the machines on in the lab's shuffled order, without waiting between them (all on at once). */
export async function powerOnAll(ctx: LabContext, machines: Machine[]): Promise<string[]> {
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

/** Rows of `phase` (the last one included) that one server itself holds, read on it. */
export async function rowsOn(ctx: LabContext, machine: Machine, phase: string): Promise<number | string> {
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
