/**
 * The seed article's own tests, run against the booted nodes. Each scenario
 * returns pass/fail, its measured seconds and a detail line that names the
 * check that failed and what the nodes said about it.
 */
import type { Cleanup } from './cleanup.js';
import type { LabDns } from './dns.js';
import type { Machine } from './machine.js';
import { unplug } from './network.js';
import { datastoreTls, galeraProviderOptions, galeraTlsProblems, nameProblem, systemState, type SystemState } from './node-checks.js';
import { describeGalera, galeraStatus, sqlThroughVip, standinReady, vipHolders, type Datastore, type GaleraStatus } from './probes.js';
import { waitFor, type CommandResult } from './run-command.js';
import type { LabDeployment } from './rolling-redeploy.js';
import type { LabTopology } from './topology.js';

export const SCENARIOS = [
  'cold-start',
  'vip-failover',
  'galera-node-loss',
  'mariadb-down',
  'mariadb-restart-bootstrap',
  'kine-sequence',
  'power-orderly',
  'power-cut',
  'power-stale-node',
  'power-one-survivor',
  'power-last-leaver-missing',
  'power-stale-flag',
  'bootstrap-datadir-lost',
  'rogue-galera-node',
  'impostor-k3s-server',
  'rolling-redeploy',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/** Scenarios on emulated boards (a profile with board: qemu-virt-arm64); each runs on its own. */
export const EMULATED_SCENARIOS = ['netboot-arm64'] as const;
export type LabScenario = ScenarioName | (typeof EMULATED_SCENARIOS)[number];

export interface ScenarioResult {
  name: string;
  pass: boolean;
  seconds: number;
  detail: string;
  /** From the end of the disruption (power on, MariaDB killed) to a primary component of all servers. */
  primarySeconds?: number;
}

export interface LabBounds {
  /** From power-on until Galera, the VIP, the datastore and every stand-in are up. */
  coldStartSeconds: number;
  /** Once Galera formed, keepalived has run for a while: one holder must emerge within this. */
  vipSettleSeconds: number;
  /** The goal for the VIP to move after its holder lost power. */
  failoverSeconds: number;
  /** From power-on until a restarted server is back in a full Galera cluster. */
  rejoinSeconds: number;
  /** keepalived's health check (2 failures checkInterval apart) plus the takeover: the VIP leaves a server whose MariaDB died. */
  healthFailoverSeconds: number;
  /** From powering the servers on after a whole-cluster outage until a primary component of all of them. */
  recoverySeconds: number;
  /** The profile's galera.recovery.survivorAfter: when a lone server may bootstrap under the survivor policy. */
  survivorAfterSeconds: number;
  /** The profile's galera.recovery.waitForAll: how long servers wait for one that may hold a few writes more. */
  waitForAllSeconds: number;
  /**
   * From a node's power-on until its systemd reports the system running: every server more
   * starts and joins Galera in turn, and the servers' k3s waits for the datastore.
   */
  systemRunningSeconds: number;
  /** How long a stranger's MariaDB is watched for joining the cluster (its own wait for a primary component is 30 s). */
  rogueSeconds: number;
}

/** How long one VIP holder must stay the only one before the lab believes it. */
const VIP_QUIET_MS = 12_000;

/**
 * The time bounds, derived from the profile: keepalived declares a master dead
 * after three missed adverts, its health check fails after two 2-s intervals,
 * and every server more boots, recovers and transfers its state in turn.
 */
export function boundsFor(
  profile: {
    keepalived: { advertInterval: number; checkInterval?: number };
    galera: { recovery: { survivorAfter: number; waitForAll: number } };
  },
  servers: number,
): LabBounds {
  const advert = profile.keepalived.advertInterval;
  const check = profile.keepalived.checkInterval ?? 2;
  return {
    coldStartSeconds: 120 + 60 * servers,
    vipSettleSeconds: 30 + 15 * advert,
    failoverSeconds: 3 * advert + 2,
    rejoinSeconds: 120 + 40 * servers,
    healthFailoverSeconds: 2 * check + 3 * advert + 8,
    recoverySeconds: 120 + 40 * servers,
    survivorAfterSeconds: profile.galera.recovery.survivorAfter,
    waitForAllSeconds: profile.galera.recovery.waitForAll,
    systemRunningSeconds: 60 + 20 * servers,
    rogueSeconds: 60,
  };
}

export interface LabContext {
  topology: LabTopology;
  /** The profile's recovery policy for a whole-cluster outage (galera.recovery.policy). */
  recoveryPolicy: 'majority' | 'survivor';
  /** The server that starts a brand-new cluster (galera.bootstrapNode). */
  bootstrapNode: string;
  /** Shuffles with the lab's seed, so an order can be repeated. */
  shuffle<T>(items: T[]): T[];
  machines: Machine[];
  datastore: Datastore & { optionsFile: string };
  /** Brings a powered-off node back: DHCP again, then boot (what a power cycle does). */
  powerOn(machine: Machine): Promise<void>;
  log(line: string): void;
  bounds: LabBounds;
  /** The lab's DNS server on the gateway and the name it serves. */
  dns: LabDns;
  /** The lab's run directory: what a scenario starts keeps its files under it. */
  runDir: string;
  /** Undoes what a scenario started, should the lab be stopped in the middle of it. */
  cleanup: Cleanup;
  /** How to build and deploy again onto the export root the nodes run from (rolling-redeploy). */
  deployment?: LabDeployment;
}

/** The table the scenarios write their rows to through the VIP. */
export const TABLE = 'netroot_lab_writes';

export const elapsed = (start: number): number => Math.round((Date.now() - start) / 100) / 10;
export const servers = (ctx: LabContext): Machine[] => ctx.machines.filter((m) => m.node.isServer);
const runningServers = (ctx: LabContext): Machine[] => servers(ctx).filter((m) => m.running);

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

/** Polls until every running server is a synced member of a primary cluster of all servers; the last view either way. */
/** Every running server in one primary component of `size` (by default, every server of the profile). */
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

/** A scenario's result builder: its name, the seconds since `start`, and the time to a primary component once known. */
export function scenario(
  name: string,
  start: number,
): { result: (pass: boolean, detail: string) => ScenarioResult; primary(seconds: number): void } {
  let primarySeconds: number | undefined;
  return {
    result: (pass, detail) => ({
      name,
      pass,
      seconds: elapsed(start),
      detail,
      ...(primarySeconds !== undefined ? { primarySeconds } : {}),
    }),
    primary: (seconds) => void (primarySeconds = seconds),
  };
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

export async function coldStart(ctx: LabContext, started: number): Promise<ScenarioResult> {
  const deadline = started + ctx.bounds.coldStartSeconds * 1000;
  const left = (): number => Math.max(0, deadline - Date.now());
  const fail = async (what: string, more = ''): Promise<ScenarioResult> => ({
    name: 'cold-start',
    pass: false,
    seconds: elapsed(started),
    detail: [what, more].filter(Boolean).join('\n'),
  });

  const size = servers(ctx).length;
  const galera = await galeraFullWithin(ctx, left());
  if (!galera.ok) {
    const bad = [...galera.seen].filter(([, s]) => !s || s.size !== size).map(([name]) => name);
    return fail(
      `Galera did not form within ${ctx.bounds.coldStartSeconds} s: wsrep_cluster_size is not ${size} on every server (${showGalera(galera.seen)})`,
      await journals(ctx, bad, 'mariadb'),
    );
  }
  const galeraAt = elapsed(started);

  // A split brain can look like a single holder for a while: a server whose health
  // check has just passed waits rise × interval (4 s), then three missed adverts,
  // before it takes the VIP. One holder must stay the only one longer than that.
  const holders = await settledVipHolder(ctx, VIP_QUIET_MS, Math.min(left(), ctx.bounds.vipSettleSeconds * 1000));
  if (holders.length !== 1)
    return fail(
      vipProblem(ctx, holders),
      await journals(ctx, holders.length ? holders : servers(ctx).map((m) => m.node.name), 'keepalived'),
    );
  const holder = holders[0]!;

  const sql = await datastoreWithin(ctx, left(), 2_000);
  if (!sql.ok)
    return fail(
      `the k3s database ${ctx.datastore.database} does not answer through the VIP as ${ctx.datastore.user}: ${sql.stderr.trim()}`,
      await journals(ctx, [holder], 'netroot-k3s-datastore'),
    );

  let notReady: string[] = [];
  const ready = await waitFor(
    async () => {
      notReady = [];
      for (const machine of ctx.machines) if (!(await standinReady(ctx.topology, machine))) notReady.push(machine.node.name);
      return notReady.length === 0 ? true : undefined;
    },
    left(),
    2_000,
  );
  if (!ready) {
    const units = await Promise.all(
      notReady.map(async (name) =>
        journals(ctx, [name], ctx.machines.find((m) => m.node.name === name)!.node.isServer ? 'k3s' : 'k3s-agent'),
      ),
    );
    return fail(`k3s stand-in not ready on ${notReady.join(', ')}`, units.join('\n'));
  }

  // Inside every node: names through its own resolver, and systemd's verdict on its boot; on the
  // servers, Galera over TLS; and the k3s user's connection encrypted. Every problem is reported at once.
  const problems: string[] = [];
  const more: string[] = [];
  const { record } = ctx.dns;
  const names = (await Promise.all(ctx.machines.map((m) => nameProblem(m, record.name, record.address, ctx.dns.address)))).filter(
    (p): p is string => p !== undefined,
  );
  if (names.length) {
    problems.push(`names: ${names.join('; ')}`);
    more.push(`the lab's DNS server logs every query it gets in ${ctx.dns.log}`);
  }
  const bootBound = ctx.bounds.systemRunningSeconds;
  const states = await Promise.all(ctx.machines.map((m) => systemState(m, Math.max(10_000, bootBound * 1000 - (Date.now() - started)))));
  const badBoot = states.filter(
    (st) => st.state !== 'running' || st.failed.length > 0 || st.timedOut.length > 0 || st.seconds === undefined || st.seconds > bootBound,
  );
  if (badBoot.length) {
    problems.push(`systemd on ${badBoot.map((st) => describeBoot(st, bootBound)).join('; ')}`);
    for (const st of badBoot) for (const unit of st.failed) more.push(await journals(ctx, [st.node], unit, 3));
  }
  const tls: string[] = [];
  for (const machine of servers(ctx)) {
    const options = await galeraProviderOptions(machine);
    const missing = typeof options === 'string' ? [options] : galeraTlsProblems(options);
    if (missing.length) tls.push(`${machine.node.name}: ${missing.join(', ')}`);
  }
  if (tls.length) problems.push(`Galera does not run over TLS (wsrep_provider_options): ${tls.join('; ')}`);
  const session = await datastoreTls(ctx.topology, ctx.datastore);
  if (typeof session === 'string') problems.push(session);
  if (problems.length || typeof session === 'string') return fail(problems.join('\n'), more.filter(Boolean).join('\n'));
  const slowest = states.reduce((a, b) => ((b.seconds ?? 0) > (a.seconds ?? 0) ? b : a));

  return {
    name: 'cold-start',
    pass: true,
    seconds: elapsed(started),
    detail:
      `Galera size ${size} on every server after ${galeraAt} s, over TLS (socket.ssl); VIP on ${holder} only; k3s database and user answer through the VIP (${session.version}, ${session.cipher}); ` +
      `k3s stand-ins ready on ${ctx.machines.length} nodes; ${record.name} resolves to ${record.address} on every node; ` +
      `systemd running with no failed unit on every node, the slowest (${slowest.node}) after ${slowest.seconds} s (bound ${bootBound} s)`,
  };
}

function describeBoot(st: SystemState, bound: number): string {
  const parts = [`${st.node} is ${st.state}`];
  if (st.seconds === undefined) parts.push(`its startup not finished within ${bound} s`);
  else if (st.seconds > bound) parts.push(`its startup took ${st.seconds} s, more than ${bound} s`);
  if (st.failed.length) parts.push(`failed: ${st.failed.join(', ')}`);
  if (st.jobs.length) parts.push(`still waiting: ${st.jobs.slice(0, 5).join(' / ')}`);
  if (st.timedOut.length) parts.push(`timed out: ${st.timedOut.slice(0, 3).join(' / ')}`);
  return parts.join(', ');
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
async function rejoin(
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

export async function vipFailover(ctx: LabContext): Promise<ScenarioResult> {
  const start = Date.now();
  const result = (pass: boolean, detail: string): ScenarioResult => ({ name: 'vip-failover', pass, seconds: elapsed(start), detail });
  const whole = await ensureWhole(ctx);
  if (whole) return result(false, whole);
  const before = await settledVipHolder(ctx);
  if (before.length !== 1) return result(false, `before the test: ${vipProblem(ctx, before)}`);
  const victim = ctx.machines.find((m) => m.node.name === before[0])!;
  if (!victim.node.isServer) return result(false, `the VIP is on ${before[0]}, which is not a server`);
  ctx.log(`vip-failover: pulling the power of ${victim.node.name}, which holds the VIP`);
  const cut = Date.now();
  await powerLoss(victim);
  const after = await settledVipHolder(ctx, 0, ctx.bounds.failoverSeconds * 1000 + 25_000, 100);
  const movedAfter = elapsed(cut);
  if (after.length !== 1) return result(false, `after ${victim.node.name} lost power: ${vipProblem(ctx, after)}`);
  const moved = after[0]!;
  if (movedAfter > ctx.bounds.failoverSeconds) {
    return result(
      false,
      `the VIP moved to ${moved} ${movedAfter} s after ${victim.node.name} lost power, more than ${ctx.bounds.failoverSeconds} s: check advert_int and the priorities in keepalived.conf`,
    );
  }
  const sql = await datastoreWithin(ctx, 30_000, 1_000);
  if (!sql.ok)
    return result(
      false,
      `the VIP moved to ${moved} after ${movedAfter} s, but the datastore does not answer through it: ${sql.stderr.trim()}`,
    );
  const answeredAfter = elapsed(cut);
  ctx.log(`vip-failover: VIP on ${moved} after ${movedAfter} s; powering ${victim.node.name} on again`);
  const back = await rejoin(ctx, victim);
  if (!back.ok) {
    return result(
      false,
      `${victim.node.name} did not rejoin Galera within ${ctx.bounds.rejoinSeconds} s of powering on (${showGalera(back.seen)})\n${await journals(ctx, [victim.node.name], 'mariadb')}`,
    );
  }
  return result(
    true,
    `VIP moved from ${victim.node.name} to ${moved} ${movedAfter} s after the power cut; the datastore answered through it after ${answeredAfter} s; ${victim.node.name} rejoined Galera (size ${servers(ctx).length}) ${back.seconds} s after powering on`,
  );
}

export async function galeraNodeLoss(ctx: LabContext): Promise<ScenarioResult> {
  const start = Date.now();
  const result = (pass: boolean, detail: string): ScenarioResult => ({ name: 'galera-node-loss', pass, seconds: elapsed(start), detail });
  const whole = await ensureWhole(ctx);
  if (whole) return result(false, whole);
  const holders = await settledVipHolder(ctx);
  const victim = runningServers(ctx).find((m) => !holders.includes(m.node.name));
  if (!victim) return result(false, 'no running server without the VIP to take down');
  const created = await sqlThroughVip(
    ctx.topology,
    ctx.datastore,
    `CREATE TABLE IF NOT EXISTS ${TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, phase VARCHAR(64) NOT NULL)`,
  );
  if (!created.ok) return result(false, `could not create ${TABLE} through the VIP: ${created.stderr.trim()}`);
  const phase = `down-${Date.now()}`;
  ctx.log(`galera-node-loss: pulling the power of ${victim.node.name}; writing through the VIP meanwhile`);
  await powerLoss(victim);
  const writes = 10;
  let slowest = 0;
  for (let i = 0; i < writes; i++) {
    const t = Date.now();
    const insert = await sqlThroughVip(ctx.topology, ctx.datastore, `INSERT INTO ${TABLE} (phase) VALUES ('${phase}')`, 60_000);
    slowest = Math.max(slowest, (Date.now() - t) / 1000);
    if (!insert.ok)
      return result(
        false,
        `write ${i + 1} of ${writes} through the VIP failed while ${victim.node.name} was down: ${insert.stderr.trim()}`,
      );
    await new Promise((r) => setTimeout(r, 500));
  }
  ctx.log(`galera-node-loss: ${writes} writes went through; powering ${victim.node.name} on again`);
  const back = await rejoin(ctx, victim);
  if (!back.ok) {
    return result(
      false,
      `${victim.node.name} did not rejoin Galera within ${ctx.bounds.rejoinSeconds} s of powering on (${showGalera(back.seen)})\n${await journals(ctx, [victim.node.name], 'mariadb')}`,
    );
  }
  const count = await victim.exec(
    'mariadb',
    ['--batch', '--skip-column-names', ctx.datastore.database, '-e', `SELECT COUNT(*) FROM ${TABLE} WHERE phase = '${phase}'`],
    { timeoutMs: 10_000 },
  );
  const seen = Number(count.stdout.trim());
  if (!count.ok || seen !== writes)
    return result(
      false,
      `${victim.node.name} rejoined but holds ${count.ok ? seen : 'none'} of the ${writes} writes made while it was down${count.ok ? '' : `: ${count.stderr.trim()}`}`,
    );
  return result(
    true,
    `${writes} writes through the VIP while ${victim.node.name} was down (slowest ${slowest.toFixed(1)} s); it rejoined after ${back.seconds} s and holds all ${writes}`,
  );
}

/**
 * The node stays up but its MariaDB dies: keepalived's health check must move
 * the VIP to a server whose Galera works, and MariaDB (Restart=on-failure)
 * must come back into the cluster by itself.
 */
export async function mariadbDown(ctx: LabContext): Promise<ScenarioResult> {
  const { result, primary } = scenario('mariadb-down', Date.now());
  const whole = await ensureWhole(ctx);
  if (whole) return result(false, whole);
  const before = await settledVipHolder(ctx);
  if (before.length !== 1) return result(false, `before the test: ${vipProblem(ctx, before)}`);
  const holder = ctx.machines.find((m) => m.node.name === before[0])!;
  ctx.log(`mariadb-down: killing MariaDB on ${holder.node.name}, which holds the VIP`);
  const cut = Date.now();
  // The main process only: systemd in a container cannot always signal a unit's whole cgroup.
  const killed = await holder.exec(
    'bash',
    ['-c', 'pid=$(systemctl show --property=MainPID --value mariadb.service) && [ "$pid" -gt 0 ] && kill -KILL "$pid"'],
    { timeoutMs: 10_000 },
  );
  if (!killed.ok) return result(false, `could not kill MariaDB on ${holder.node.name}: ${killed.stderr.trim()}`);
  let holders: string[] = before;
  const moved = await waitFor(
    async () => {
      holders = await vipHolders(ctx.topology, ctx.machines);
      return holders.length === 1 && holders[0] !== holder.node.name ? holders[0] : undefined;
    },
    ctx.bounds.healthFailoverSeconds * 1000,
    250,
  );
  const movedAfter = elapsed(cut);
  if (!moved) {
    return result(
      false,
      `the VIP stayed ${holders.length ? `on ${holders.join(', ')}` : 'nowhere'} for ${ctx.bounds.healthFailoverSeconds} s after MariaDB died on ${holder.node.name}: keepalived's galera_ready check must move it\n${await journals(ctx, [holder.node.name], 'keepalived')}`,
    );
  }
  const sql = await datastoreWithin(ctx, 30_000, 1_000);
  if (!sql.ok) return result(false, `the VIP moved to ${moved}, but the datastore does not answer through it: ${sql.stderr.trim()}`);
  const size = servers(ctx).length;
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  if (!galera.ok)
    return result(
      false,
      `MariaDB on ${holder.node.name} did not come back into Galera within ${ctx.bounds.rejoinSeconds} s (${showGalera(galera.seen)})\n${await journals(ctx, [holder.node.name], 'mariadb')}`,
    );
  primary(elapsed(cut));
  const returned = await settledVipHolder(ctx, 0, 30_000, 250);
  return result(
    true,
    `VIP left ${holder.node.name} for ${moved} ${movedAfter} s after its MariaDB was killed; the datastore answered through it; MariaDB restarted and Galera was back to size ${size} after ${elapsed(cut)} s${returned.length === 1 ? `, VIP on ${returned[0]}` : ''}`,
  );
}
