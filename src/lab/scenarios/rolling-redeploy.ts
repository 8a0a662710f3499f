/**
 * rolling-redeploy: a new build reaches a running cluster the way an operator
 * ships one. The lab's export root (exports.ts), which the nodes run from,
 * becomes netroot's first deployed generation; a rebuild with one changed
 * template is deployed onto it while the cluster runs; then the servers are
 * rebooted one at a time. Throughout, a writer inserts a row through the VIP
 * every half second: the longest gap between two accepted writes is the
 * datastore's outage. Afterwards every row is there, each node kept its k3s
 * identity (/etc/rancher/node/password, state a deploy never touches), and
 * the changed file is what every node reads.
 */
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from '../../build.js';
import { deploy, type DeployResult } from '../../deploy/index.js';
import { BUNDLED_OVERLAYS_DIR } from '../../overlays/load.js';
import {
  ensureWhole,
  galeraFullWithin,
  journals,
  rowsThroughVip,
  servers,
  settledVipHolder,
  showGalera,
  sqlWithin,
  TABLE,
  vipProblem,
  whyOut,
  writeRows,
} from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type LabDeployment, type ScenarioResult } from '../context.js';
import type { Machine } from '../machine.js';
import { sqlThroughVip } from '../probes.js';

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
function deployTo(d: LabDeployment, out: string, work: string, overlays?: string): Promise<DeployResult> {
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

export async function rollingRedeploy(ctx: LabContext): Promise<ScenarioResult> {
  const s = scenario('rolling-redeploy', Date.now());
  const d = ctx.deployment;
  if (!d) return s.result(false, 'this lab run has no export root to deploy onto (rolling-redeploy runs in the container lab)');
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const phase = `rolling-redeploy-${Date.now()}`;
  const wrote = await writeRows(ctx, phase, ROWS_BEFORE);
  if (wrote) return s.result(false, wrote);

  const identities = new Map<string, string>();
  for (const machine of ctx.machines) {
    const password = await readInside(machine, NODE_PASSWORD);
    if (!password?.trim()) return s.result(false, `${machine.node.name} has no k3s node password (/${NODE_PASSWORD}) to keep`);
    identities.set(machine.node.name, password);
  }

  const work = path.join(ctx.runDir, 'redeploy');
  await rm(work, { recursive: true, force: true });
  ctx.cleanup.add('the rebuild for rolling-redeploy', () => rm(path.join(work, 'out'), { recursive: true, force: true }));
  try {
    // The nodes run what the lab built: that becomes generation 1, as if the operator had deployed it.
    // Its plan lists every file as changed (netroot never deployed there); rsync's checksums skip the equal ones.
    let t = Date.now();
    const first = await deployTo(d, d.buildOut, work);
    ctx.log(
      `rolling-redeploy: the running export root became generation ${first.nodes[0]?.generation} in ${elapsed(t)} s; rebuilding with a changed ${TEMPLATE}`,
    );

    // The rebuild: the bundled overlays with one template changed, into an output of its own
    // (the lab's build is the export root's lower layer and is never written while it is mounted).
    const overlays = path.join(work, 'overlays');
    await cp(BUNDLED_OVERLAYS_DIR, overlays, { recursive: true });
    const marker = `# rolling-redeploy ${phase}`;
    const template = path.join(overlays, TEMPLATE);
    await writeFile(template, `${await readFile(template, 'utf8')}${marker}\n`);
    t = Date.now();
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
    const builtSeconds = elapsed(t);

    // Deployed while every node runs, then the servers rebooted one at a time: a writer measures the outage.
    const writer = new Writer(ctx, `${phase}-during`, 500);
    let second: DeployResult;
    let deploySeconds: number;
    const reboots: string[] = [];
    try {
      t = Date.now();
      try {
        second = await deployTo(d, out, work, overlays);
      } catch (error) {
        return s.result(false, `deploying the rebuild onto the running export root failed: ${(error as Error).message}`);
      }
      deploySeconds = elapsed(t);
      const missed = second.nodes.filter((n) => !n.changed.includes(CHANGED_FILE));
      if (missed.length)
        return s.result(false, `the rebuild's deploy did not change /${CHANGED_FILE} on ${missed.map((n) => n.node).join(', ')}`);
      const seeded = second.nodes.filter((n) => n.seeded.length);
      if (seeded.length)
        return s.result(
          false,
          `the redeploy seeded state that the nodes already hold: ${seeded.map((n) => `${n.node}: ${n.seeded.join(', ')}`).join('; ')}`,
        );
      const counts = [...new Set(second.nodes.map((n) => n.changed.length + n.added.length + n.removed.length))].join('/');
      ctx.log(
        `rolling-redeploy: generation ${second.nodes[0]?.generation} deployed in ${deploySeconds} s (${counts} files a node); rebooting the servers one at a time`,
      );

      // Each server back in a whole Galera cluster, with one VIP holder, before the next goes down.
      for (const machine of ctx.shuffle(servers(ctx))) {
        t = Date.now();
        const how = await machine.shutdown();
        await ctx.powerOn(machine);
        const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
        if (!galera.ok) {
          return s.result(
            false,
            `${machine.node.name} did not rejoin Galera within ${ctx.bounds.rejoinSeconds} s of its reboot (${showGalera(galera.seen)})\n${await journals(ctx, [machine.node.name], 'mariadb', 8)}\n${await whyOut(ctx, [machine.node.name])}`,
          );
        }
        const holders = await settledVipHolder(ctx, 6_000, ctx.bounds.vipSettleSeconds * 1000);
        if (holders.length !== 1) return s.result(false, `after ${machine.node.name}'s reboot: ${vipProblem(ctx, holders)}`);
        reboots.push(`${machine.node.name} ${elapsed(t)} s${how === 'clean' ? '' : ' (forced off)'}`);
      }
    } finally {
      await writer.stop();
    }

    const gap = Math.round(writer.longestGapMs / 100) / 10;
    const bound = ctx.bounds.healthFailoverSeconds;
    const problems: string[] = [];
    if (writer.accepted === 0) problems.push('no write through the VIP was accepted during the reboots');
    if (gap > bound)
      problems.push(`the datastore took no write through the VIP for ${gap} s (bound ${bound} s: keepalived's health check and takeover)`);
    const before = await rowsThroughVip(ctx, phase);
    if (typeof before === 'string') problems.push(before);
    else if (before.count !== ROWS_BEFORE || !before.last)
      problems.push(`only ${before.count} of the ${ROWS_BEFORE} rows written before the deploy are there`);
    const during = await sqlWithin(ctx, `SELECT COUNT(*) FROM ${TABLE} WHERE phase = '${phase}-during'`, 60_000, 1_000);
    const duringCount = Number(during.stdout.trim());
    // A write whose answer was lost may have landed: more rows than accepted answers is fine, fewer is a loss.
    if (!during.ok || duringCount < writer.accepted)
      problems.push(`${writer.accepted} writes were accepted during the reboots, but ${during.ok ? duringCount : 'none'} are there`);
    for (const machine of ctx.machines) {
      const password = await readInside(machine, NODE_PASSWORD);
      if (password !== identities.get(machine.node.name)) problems.push(`${machine.node.name}'s k3s node password changed`);
      const live = await readInside(machine, CHANGED_FILE);
      if (!live?.includes(marker)) problems.push(`${machine.node.name} does not read the redeployed /${CHANGED_FILE}`);
    }
    const story =
      `generation ${second.nodes[0]?.generation} (${TEMPLATE} changed; rebuilt in ${builtSeconds} s) deployed onto the running export root in ${deploySeconds} s; ` +
      `servers rebooted one at a time (${reboots.join(', ')}); ${writer.accepted} writes through the VIP accepted meanwhile, the longest gap ${gap} s (bound ${bound} s)`;
    if (problems.length) return s.result(false, `${story}; but ${problems.join('; ')}`);
    return s.result(
      true,
      `${story}; all ${ROWS_BEFORE} rows written before and all ${writer.accepted} during are there; every node kept its k3s node password and reads the new /${CHANGED_FILE}`,
    );
  } finally {
    await rm(path.join(work, 'out'), { recursive: true, force: true });
  }
}
