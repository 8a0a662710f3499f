/**
 * rolling-redeploy: a new build reaches a running cluster the way an operator
 * ships one. The lab's export root (exports.ts), which the nodes run from,
 * becomes netroot's first deployed generation; a rebuild with one changed
 * template is deployed onto it while the cluster runs (`deploy`); then
 * `rollout` reboots every node, servers first, one at a time, as a user runs
 * it. The lab gives rollout only what a user's boards would: a way to read a
 * node (it enters the container, where a user has SSH) and a way to reboot
 * one (a power cycle, as a PDU does). Throughout, a writer inserts a row
 * through the VIP every half second: the longest gap between two accepted
 * writes is the datastore's outage. `status` is checked against what the lab
 * sees before and after the rollout. Afterwards every row is there, each node
 * kept its k3s identity (/etc/rancher/node/password, state a deploy never
 * touches), and the changed file is what every node reads.
 */
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from '../../build.js';
import { deploy, type DeployResult } from '../../deploy/index.js';
import type { NodeAccess } from '../../deploy/health.js';
import { rollout, status, type RolloutResult, type StatusResult } from '../../deploy/rollout.js';
import { RolloutStoppedError } from '../../errors.js';
import { BUNDLED_OVERLAYS_DIR } from '../../overlays/load.js';
import { ensureWhole, rowsThroughVip, sqlWithin, TABLE, writeRows } from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type LabDeployment, type ScenarioResult } from '../context.js';
import type { Machine } from '../machine.js';
import { galeraStatus, sqlThroughVip, vipHolders } from '../probes.js';

/** The template the rebuild changes: every node has /etc/hosts, and any program that resolves a name reads it. */
const TEMPLATE = 'base/etc/hosts.hbs';
const CHANGED_FILE = 'etc/hosts';
const NODE_PASSWORD = 'etc/rancher/node/password';
/** Rows written through the VIP before the deploy, to be there after it. */
const ROWS_BEFORE = 20;

/** Inserts a row through the VIP every `everyMs` until stopped; the longest time without an accepted write. */
class Writer {
  accepted = 0;
  longestGapMs = 0;
  private lastOk: number;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly ctx: LabContext,
    private readonly phase: string,
    everyMs: number,
  ) {
    this.lastOk = Date.now();
    this.done = this.loop(everyMs);
  }

  private async loop(everyMs: number): Promise<void> {
    while (!this.stopped) {
      const t = Date.now();
      const insert = await sqlThroughVip(
        this.ctx.topology,
        this.ctx.datastore,
        `INSERT INTO ${TABLE} (phase) VALUES ('${this.phase}')`,
        5_000,
      );
      if (insert.ok) {
        this.accepted++;
        this.longestGapMs = Math.max(this.longestGapMs, Date.now() - this.lastOk);
        this.lastOk = Date.now();
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - t))));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.longestGapMs = Math.max(this.longestGapMs, Date.now() - this.lastOk);
  }
}

async function readInside(machine: Machine, file: string): Promise<string | undefined> {
  const result = await machine.exec('cat', [`/${file}`], { timeoutMs: 10_000 });
  return result.ok ? result.stdout : undefined;
}

/** Deploys the build in `out` onto the export root; the boot server's files go under `work`. */
export function deployTo(d: LabDeployment, out: string, work: string, overlays?: string): Promise<DeployResult> {
  const boot = path.join(work, 'boot-server');
  return deploy({
    profile: d.profile,
    cwd: d.cwd,
    out,
    to: d.exportRoot,
    // The lab's boot server runs from the build's own files: the deploy's copies go beside them.
    tftp: path.join(boot, 'tftp'),
    dnsmasq: path.join(boot, 'dnsmasq'),
    exportsDir: path.join(boot, 'exports'),
    ganeshaDir: false,
    exportfs: false,
    ...(overlays ? { overlays } : {}),
    ...(d.secrets ? { secrets: d.secrets } : {}),
    ...(d.cacheDir ? { cacheDir: d.cacheDir } : {}),
  });
}

/**
 * The bundled overlays with TEMPLATE changed (a marker line), built into WORK/out (the lab's own
 * build is the export root's lower layer and is never written while it is mounted).
 */
export async function rebuildChanged(d: LabDeployment, work: string, marker: string): Promise<{ out: string; overlays: string }> {
  const overlays = path.join(work, 'overlays');
  await rm(overlays, { recursive: true, force: true });
  await cp(BUNDLED_OVERLAYS_DIR, overlays, { recursive: true });
  const template = path.join(overlays, TEMPLATE);
  await writeFile(template, `${await readFile(template, 'utf8')}${marker}\n`);
  const out = path.join(work, 'out');
  await build({
    profile: d.profile,
    cwd: d.cwd,
    out,
    overlays,
    formats: ['tree'],
    k3sBinary: d.k3sBinary,
    ...(d.secrets ? { secrets: d.secrets } : {}),
    ...(d.cacheDir ? { cacheDir: d.cacheDir } : {}),
  });
  return { out, overlays };
}

/**
 * How the lab's nodes are read and rebooted, as a user's boards would be: the probe runs inside
 * the node (a user reaches it over SSH), and a reboot is a power cycle (a PDU's), netbooting again.
 * `afterReboot` runs once the node is powered on again (a scenario's disruption).
 */
export function labAccess(ctx: LabContext, afterReboot?: (machine: Machine) => Promise<void>): NodeAccess & { reboots: string[] } {
  const machineOf = (name: string): Machine => ctx.machines.find((m) => m.node.name === name)!;
  const reboots: string[] = [];
  return {
    reboots,
    async run(node, script, args, timeoutMs) {
      const r = await machineOf(node.name).exec('sh', ['-c', script, 'sh', ...args], { timeoutMs });
      return { ok: r.ok, stdout: r.stdout, stderr: r.stderr };
    },
    async reboot(node) {
      const machine = machineOf(node.name);
      const how = await machine.shutdown();
      reboots.push(`${node.name}${how === 'clean' ? '' : ' (forced off)'}`);
      await ctx.powerOn(machine);
      await afterReboot?.(machine);
    },
  };
}

/** `status` as a user runs it, on the lab's export root, through the lab's access to its nodes. */
export function labStatus(ctx: LabContext, d: LabDeployment, access: NodeAccess): Promise<StatusResult> {
  return status({ profile: d.profile, cwd: d.cwd, to: d.exportRoot, access });
}

/** `rollout` as a user runs it, its steps in the lab's log. */
export function labRollout(ctx: LabContext, d: LabDeployment, access: NodeAccess): Promise<RolloutResult> {
  return rollout({
    profile: d.profile,
    cwd: d.cwd,
    to: d.exportRoot,
    access,
    reporter: {
      info: (line) => ctx.log(`rollout: ${line}`),
      step: (name) => {
        ctx.log(`rollout: ${name}`);
        return { update: () => undefined, finish: () => undefined };
      },
    },
  });
}

/**
 * Where `status` disagrees with what the lab sees itself: who holds the VIP (from the nodes'
 * interfaces), which nodes run, each server's Galera state and size (read inside it), and the
 * generation deployed, booted and pending that the lab expects.
 */
export async function statusProblems(
  ctx: LabContext,
  s: StatusResult,
  expected: { deployed: Map<string, number>; pending: Set<string> },
): Promise<string[]> {
  const problems: string[] = [];
  const holders = (await vipHolders(ctx.topology, ctx.machines)).sort();
  if (holders.join(',') !== [...s.vipHolders].sort().join(','))
    problems.push(
      `status says the VIP is held by ${s.vipHolders.join(', ') || 'no node'}, the lab sees ${holders.join(', ') || 'no node'}`,
    );
  for (const machine of ctx.machines) {
    const name = machine.node.name;
    const row = s.nodes.find((n) => n.node === name);
    if (!row) {
      problems.push(`status has no row for ${name}`);
      continue;
    }
    if (row.answered !== machine.running)
      problems.push(
        `status says ${name} ${row.answered ? 'answers' : 'does not answer'}, but it is ${machine.running ? 'running' : 'off'}`,
      );
    if (machine.node.isServer && machine.running) {
      const g = await galeraStatus(machine);
      const said = row.galera ? `${row.galera.state} ${row.galera.size}` : 'none';
      const seen = g ? `${g.state} ${g.size}` : 'none';
      if (said !== seen) problems.push(`status says ${name}'s Galera is ${said}, the lab reads ${seen}`);
    }
    const deployed = expected.deployed.get(name);
    if (deployed !== undefined && row.deployed !== deployed)
      problems.push(`status says ${name} has generation ${row.deployed} deployed, the deploy made ${deployed}`);
    const pending = expected.pending.has(name);
    if (row.answered && row.rebootPending !== pending)
      problems.push(
        `status says ${name} ${row.rebootPending ? 'has' : 'has no'} reboot pending; the lab expects ${pending ? 'one' : 'none'}`,
      );
    if (row.answered && !pending && deployed !== undefined && row.booted !== deployed)
      problems.push(`status says ${name} booted generation ${row.booted ?? '?'}, but it booted after generation ${deployed} was deployed`);
  }
  return problems;
}

/** Each node's k3s node password, which the redeploy must keep; or which node has none. */
async function nodePasswords(ctx: LabContext): Promise<Map<string, string> | string> {
  const identities = new Map<string, string>();
  for (const machine of ctx.machines) {
    const password = await readInside(machine, NODE_PASSWORD);
    if (!password?.trim()) return `${machine.node.name} has no k3s node password (/${NODE_PASSWORD}) to keep`;
    identities.set(machine.node.name, password);
  }
  return identities;
}

/** A rebuild with TEMPLATE changed: where it is, the marker every node must read after the rollout, and how long it took. */
interface Rebuild {
  out: string;
  overlays: string;
  marker: string;
  builtSeconds: number;
}

/**
 * The nodes run what the lab built: that becomes netroot's generation, as if the operator had deployed it.
 * Netroot never deployed there (or another scenario did): the trees are compared by content. Then the rebuild.
 */
async function adoptThenRebuild(ctx: LabContext, d: LabDeployment, work: string, phase: string): Promise<Rebuild> {
  let t = Date.now();
  const first = await deployTo(d, d.buildOut, work);
  const firstChanged = first.nodes.filter((n) => n.added.length + n.changed.length + n.removed.length > 0).map((n) => n.node);
  ctx.log(
    `rolling-redeploy: the running export root is at generation ${first.nodes[0]?.generation} after ${elapsed(t)} s (${firstChanged.length ? `changed on ${firstChanged.join(', ')}` : 'no file changed'}); rebuilding with a changed ${TEMPLATE}`,
  );
  const marker = `# rolling-redeploy ${phase}`;
  t = Date.now();
  const { out, overlays } = await rebuildChanged(d, work, marker);
  return { out, overlays, marker, builtSeconds: elapsed(t) };
}

/** The rebuild's deploy onto the running export root: what it did and how long it took. */
interface Redeploy {
  second: DeployResult;
  deploySeconds: number;
  /** Each node's generation, as the deploy made it. */
  deployed: Map<string, number>;
}

/** Deploys the rebuild while every node runs: it changes CHANGED_FILE everywhere and seeds nothing the nodes hold. */
async function deployRebuild(ctx: LabContext, d: LabDeployment, work: string, rebuild: Rebuild): Promise<Redeploy | string> {
  const t = Date.now();
  let second: DeployResult;
  try {
    second = await deployTo(d, rebuild.out, work, rebuild.overlays);
  } catch (error) {
    return `deploying the rebuild onto the running export root failed: ${(error as Error).message}`;
  }
  const deploySeconds = elapsed(t);
  const missed = second.nodes.filter((n) => !n.changed.includes(CHANGED_FILE));
  if (missed.length) return `the rebuild's deploy did not change /${CHANGED_FILE} on ${missed.map((n) => n.node).join(', ')}`;
  const seeded = second.nodes.filter((n) => n.seeded.length);
  if (seeded.length)
    return `the redeploy seeded state that the nodes already hold: ${seeded.map((n) => `${n.node}: ${n.seeded.join(', ')}`).join('; ')}`;
  const counts = [...new Set(second.nodes.map((n) => n.changed.length + n.added.length + n.removed.length))].join('/');
  ctx.log(`rolling-redeploy: generation ${second.nodes[0]?.generation} deployed in ${deploySeconds} s (${counts} files a node); rollout`);
  return { second, deploySeconds, deployed: new Map(second.nodes.map((n) => [n.node, n.generation])) };
}

/**
 * `rollout` after the deploy, with `status` checked before (every node's reboot pending) and after
 * (none) and the order checked (servers, then agents); what it did, or why it stopped. Disagreements
 * go to `problems`.
 */
async function rollOutChecked(
  ctx: LabContext,
  d: LabDeployment,
  access: ReturnType<typeof labAccess>,
  { second, deploySeconds, deployed }: Redeploy,
  problems: string[],
): Promise<{ rolled: RolloutResult; rolloutSeconds: number } | string> {
  const everyNode = new Set(second.nodes.map((n) => n.node));
  const before = await statusProblems(ctx, await labStatus(ctx, d, access), { deployed, pending: everyNode });
  if (before.length) problems.push(`status after the deploy: ${before.join('; ')}`);
  const t = Date.now();
  let rolled: RolloutResult;
  try {
    rolled = await labRollout(ctx, d, access);
  } catch (error) {
    const why = error instanceof RolloutStoppedError ? error.message : `rollout failed: ${(error as Error).message}`;
    return `generation ${second.nodes[0]?.generation} deployed in ${deploySeconds} s; ${why} (rebooted: ${access.reboots.join(', ') || 'none'})`;
  }
  const rolloutSeconds = elapsed(t);
  const servers = ctx.machines.filter((m) => m.node.isServer).map((m) => m.node.name);
  const agents = ctx.machines.filter((m) => !m.node.isServer).map((m) => m.node.name);
  if (rolled.order.join(',') !== [...servers, ...agents].join(','))
    problems.push(
      `rollout's order was ${rolled.order.join(', ')}; every node changed, so it should be the servers then the agents: ${[...servers, ...agents].join(', ')}`,
    );
  const after = await statusProblems(ctx, await labStatus(ctx, d, access), { deployed, pending: new Set() });
  if (after.length) problems.push(`status after the rollout: ${after.join('; ')}`);
  return { rolled, rolloutSeconds };
}

/** The writer's longest gap (`gap` seconds) against keepalived's health check and takeover (`bound`). */
function outageProblems(writer: Writer, gap: number, bound: number): string[] {
  const problems: string[] = [];
  if (writer.accepted === 0) problems.push('no write through the VIP was accepted during the rollout');
  if (gap > bound)
    problems.push(`the datastore took no write through the VIP for ${gap} s (bound ${bound} s: keepalived's health check and takeover)`);
  return problems;
}

/** Every row is there, written before and during, and every node kept its k3s identity and reads the new file. */
async function keptProblems(
  ctx: LabContext,
  phase: string,
  writer: Writer,
  identities: Map<string, string>,
  marker: string,
): Promise<string[]> {
  const problems: string[] = [];
  const rowsBefore = await rowsThroughVip(ctx, phase);
  if (typeof rowsBefore === 'string') problems.push(rowsBefore);
  else if (rowsBefore.count !== ROWS_BEFORE || !rowsBefore.last)
    problems.push(`only ${rowsBefore.count} of the ${ROWS_BEFORE} rows written before the deploy are there`);
  const during = await sqlWithin(ctx, `SELECT COUNT(*) FROM ${TABLE} WHERE phase = '${phase}-during'`, 60_000, 1_000);
  const duringCount = Number(during.stdout.trim());
  // A write whose answer was lost may have landed: more rows than accepted answers is fine, fewer is a loss.
  if (!during.ok || duringCount < writer.accepted)
    problems.push(`${writer.accepted} writes were accepted during the rollout, but ${during.ok ? duringCount : 'none'} are there`);
  for (const machine of ctx.machines) {
    const password = await readInside(machine, NODE_PASSWORD);
    if (password !== identities.get(machine.node.name)) problems.push(`${machine.node.name}'s k3s node password changed`);
    const live = await readInside(machine, CHANGED_FILE);
    if (!live?.includes(marker)) problems.push(`${machine.node.name} does not read the redeployed /${CHANGED_FILE}`);
  }
  return problems;
}

export async function rollingRedeploy(ctx: LabContext): Promise<ScenarioResult> {
  const s = scenario('rolling-redeploy', Date.now());
  const d = ctx.deployment;
  if (!d) return s.result(false, 'this lab run has no export root to deploy onto (rolling-redeploy runs in the container lab)');
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const phase = `rolling-redeploy-${Date.now()}`;
  const wrote = await writeRows(ctx, phase, ROWS_BEFORE);
  if (wrote) return s.result(false, wrote);
  const identities = await nodePasswords(ctx);
  if (typeof identities === 'string') return s.result(false, identities);

  const work = path.join(ctx.runDir, 'redeploy');
  await rm(work, { recursive: true, force: true });
  ctx.cleanup.add('the rebuild for rolling-redeploy', () => rm(path.join(work, 'out'), { recursive: true, force: true }));
  try {
    const rebuild = await adoptThenRebuild(ctx, d, work, phase);
    // Deployed while every node runs, then `rollout`: a writer measures the outage.
    const writer = new Writer(ctx, `${phase}-during`, 500);
    const access = labAccess(ctx);
    const problems: string[] = [];
    let redeploy: Redeploy | string;
    let rolledOut: { rolled: RolloutResult; rolloutSeconds: number } | string;
    try {
      redeploy = await deployRebuild(ctx, d, work, rebuild);
      if (typeof redeploy === 'string') return s.result(false, redeploy);
      rolledOut = await rollOutChecked(ctx, d, access, redeploy, problems);
      if (typeof rolledOut === 'string') return s.result(false, rolledOut);
    } finally {
      await writer.stop();
    }

    const gap = Math.round(writer.longestGapMs / 100) / 10;
    const bound = ctx.bounds.healthFailoverSeconds;
    problems.push(...outageProblems(writer, gap, bound));
    problems.push(...(await keptProblems(ctx, phase, writer, identities, rebuild.marker)));
    const { rolled, rolloutSeconds } = rolledOut;
    const story =
      `generation ${redeploy.second.nodes[0]?.generation} (${TEMPLATE} changed; rebuilt in ${rebuild.builtSeconds} s) deployed onto the running export root in ${redeploy.deploySeconds} s; ` +
      `rollout rebooted ${rolled.rebooted.map((r) => `${r.node} ${r.seconds} s`).join(', ')} in ${rolloutSeconds} s${access.reboots.some((r) => r.includes('forced')) ? ` (${access.reboots.join(', ')})` : ''}; ` +
      `${writer.accepted} writes through the VIP accepted meanwhile, the longest gap ${gap} s (bound ${bound} s)`;
    if (problems.length) return s.result(false, `${story}; but ${problems.join('; ')}`);
    return s.result(
      true,
      `${story}; status agreed with the lab before and after; all ${ROWS_BEFORE} rows written before and all ${writer.accepted} during are there; every node kept its k3s node password and reads the new /${CHANGED_FILE}`,
    );
  } finally {
    await rm(path.join(work, 'out'), { recursive: true, force: true });
  }
}
