/**
 * rollout-mariadb-killed: a rollout meets a server whose MariaDB dies as it
 * comes back from its reboot, and does not start again (killed, and masked so
 * that systemd cannot restart it: a crash that repeats). `rollout` must stop
 * at that server, say that its MariaDB is why, and leave the nodes after it
 * alone; `status` must show the same as the lab sees (that server's MariaDB
 * down, the others' Galera without it, the reboots still pending). Then the
 * MariaDB is let start again and a second `rollout` finishes the rest, as an
 * operator would once the cluster is healthy.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { RolloutStoppedError } from '../../errors.js';
import type { Machine } from '../machine.js';
import { waitFor } from '../run-command.js';
import { ensureWhole, galeraFullWithin, servers, settledVipHolder, showGalera, vipProblem } from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type LabDeployment, type ScenarioResult } from '../context.js';
import { deployTo, labAccess, labRollout, labStatus, rebuildChanged, statusProblems } from './rolling-redeploy.js';

/** Kills MariaDB's main process, and masks the unit for this boot so that systemd does not restart it. */
const KILL = [
  'systemctl mask --runtime mariadb.service',
  'pid=$(systemctl show --property=MainPID --value mariadb.service)',
  '[ "$pid" -gt 0 ] && kill -KILL "$pid"',
].join(' && ');

/** A rebuild with a changed template, deployed: each node's generation, or why every node does not need a reboot. */
async function deployChanged(ctx: LabContext, d: LabDeployment, work: string): Promise<Map<string, number> | string> {
  const marker = `# rollout-mariadb-killed ${Date.now()}`;
  await rebuildChanged(d, work, marker);
  const deployed = await deployTo(d, path.join(work, 'out'), work, path.join(work, 'overlays'));
  const pending = new Set(deployed.nodes.filter((n) => n.reboot).map((n) => n.node));
  if (pending.size !== ctx.machines.length)
    return `the deploy said only ${[...pending].join(', ')} must reboot; the changed /etc/hosts is on every node`;
  return new Map(deployed.nodes.map((n) => [n.node, n.generation]));
}

/** The lab's access, except that once the victim is back and its MariaDB started, it is killed and kept down; `killed` says how that went. */
function accessKillingMariadb(ctx: LabContext, victim: Machine): { access: ReturnType<typeof labAccess>; killed(): string | undefined } {
  let killed: string | undefined;
  const access = labAccess(ctx, async (machine: Machine) => {
    if (machine !== victim) return;
    const started = await waitFor(
      async () => {
        const pid = await machine.exec('systemctl', ['show', '--property=MainPID', '--value', 'mariadb.service'], { timeoutMs: 10_000 });
        return Number(pid.stdout.trim()) > 0 ? true : undefined;
      },
      ctx.bounds.rejoinSeconds * 1000,
      1_000,
    );
    const r = started ? await machine.exec('sh', ['-c', KILL], { timeoutMs: 15_000 }) : undefined;
    killed = r?.ok
      ? `${machine.node.name}'s MariaDB killed and masked`
      : `could not kill ${machine.node.name}'s MariaDB: ${r?.stderr.trim() ?? 'it never started'}`;
    ctx.log(`rollout-mariadb-killed: ${killed}`);
  });
  return { access, killed: () => killed };
}

/** `rollout`, expected to stop: the stop, if it came, and the seconds until it. */
async function rolloutUntilStopped(
  ctx: LabContext,
  d: LabDeployment,
  access: ReturnType<typeof labAccess>,
): Promise<{ stopped: RolloutStoppedError | undefined; stopSeconds: number }> {
  const t = Date.now();
  let stopped: RolloutStoppedError | undefined;
  try {
    await labRollout(ctx, d, access);
  } catch (error) {
    if (!(error instanceof RolloutStoppedError)) throw error;
    stopped = error;
  }
  return { stopped, stopSeconds: elapsed(t) };
}

/** Where the rollout stopped, why it said, and what it rebooted before; the nodes it left, in rollout's order. */
function stopProblems(
  ctx: LabContext,
  name: string,
  stopped: RolloutStoppedError,
  reboots: string[],
  problems: string[],
): { rebooted: string[]; left: Set<string> } {
  if (stopped.node !== name) problems.push(`rollout stopped at ${stopped.node}, not at ${name}`);
  if (!stopped.problems.some((p) => p.startsWith(`${name}: mariadb`)))
    problems.push(`rollout did not say that ${name}'s MariaDB is why: ${stopped.problems.join('; ')}`);
  const order = [...servers(ctx), ...ctx.machines.filter((m) => !m.node.isServer)].map((m) => m.node.name);
  const expectedReboots = order.slice(0, order.indexOf(name) + 1);
  const rebooted = reboots.map((r) => r.split(' ')[0]!);
  if (rebooted.join(',') !== expectedReboots.join(','))
    problems.push(`rollout rebooted ${rebooted.join(', ')}; it should have rebooted ${expectedReboots.join(', ')} and left the rest alone`);
  return { rebooted, left: new Set(order.filter((n) => !rebooted.includes(n))) };
}

/** status: what the lab sees; the nodes after the victim still have their reboot pending, and the victim's MariaDB is down. */
async function statusAfterStop(
  ctx: LabContext,
  d: LabDeployment,
  access: ReturnType<typeof labAccess>,
  expected: { deployed: Map<string, number>; pending: Set<string> },
  name: string,
  problems: string[],
): Promise<void> {
  const seen = await statusProblems(ctx, await labStatus(ctx, d, access), expected);
  if (seen.length) problems.push(`status after the stop: ${seen.join('; ')}`);
  const row = (await labStatus(ctx, d, access)).nodes.find((n) => n.node === name);
  if (row?.galera || !['failed', 'inactive'].includes(row?.mariadb ?? ''))
    problems.push(`status shows ${name}'s MariaDB as ${row?.mariadb ?? '?'}${row?.galera ? `, Galera ${row.galera.state}` : ''}`);
}

/** The operator lets MariaDB start again: it rejoins, and one server holds the VIP; or what went wrong. */
async function startMariadbAgain(ctx: LabContext, victim: Machine, unmask: () => Promise<void>): Promise<string | undefined> {
  await unmask();
  await victim.exec('systemctl', ['reset-failed', 'mariadb.service'], { timeoutMs: 10_000 });
  await victim.exec('systemctl', ['start', '--no-block', 'mariadb.service'], { timeoutMs: 10_000 });
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  if (!galera.ok) return `${victim.node.name}'s MariaDB did not rejoin once started again (${showGalera(galera.seen)})`;
  // keepalived may take the VIP back to the victim: rollout starts only on one settled holder.
  const holders = await settledVipHolder(ctx, 6_000, ctx.bounds.vipSettleSeconds * 1000);
  if (holders.length !== 1) return `after MariaDB started again: ${vipProblem(ctx, holders)}`;
  return undefined;
}

/** The second rollout, on a healthy cluster, reboots exactly the nodes left: what it rebooted, or why it failed. */
async function finishRollout(
  ctx: LabContext,
  d: LabDeployment,
  access: ReturnType<typeof labAccess>,
  left: Set<string>,
  problems: string[],
): Promise<{ finished: string } | string> {
  try {
    const again = await labRollout(ctx, d, access);
    const finished = again.rebooted.map((r) => `${r.node} ${r.seconds} s`).join(', ');
    if (again.order.join(',') !== [...left].join(','))
      problems.push(`the second rollout rebooted ${again.order.join(', ')}, not the nodes left: ${[...left].join(', ')}`);
    return { finished };
  } catch (error) {
    return `the second rollout, on a healthy cluster, failed: ${(error as Error).message}`;
  }
}

export async function rolloutMariadbKilled(ctx: LabContext): Promise<ScenarioResult> {
  const s = scenario('rollout-mariadb-killed', Date.now());
  const d = ctx.deployment;
  if (!d) return s.result(false, 'this lab run has no export root to deploy onto (rollout-mariadb-killed runs in the container lab)');
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const work = path.join(ctx.runDir, 'rollout-mariadb-killed');
  await rm(work, { recursive: true, force: true });
  ctx.cleanup.add('the rebuild for rollout-mariadb-killed', () => rm(path.join(work, 'out'), { recursive: true, force: true }));
  // The server rollout reboots second: the first shows the rollout working before it stops.
  const victim = servers(ctx)[1];
  if (!victim) return s.result(false, 'this cluster has fewer than 2 servers: nothing to stop at after a first reboot');
  const unmask = async (): Promise<void> => {
    await victim.exec('systemctl', ['unmask', '--runtime', 'mariadb.service'], { timeoutMs: 10_000 });
  };
  ctx.cleanup.add(`MariaDB masked on ${victim.node.name}`, unmask);
  try {
    const generations = await deployChanged(ctx, d, work);
    if (typeof generations === 'string') return s.result(false, generations);
    const { access, killed } = accessKillingMariadb(ctx, victim);
    const { stopped, stopSeconds } = await rolloutUntilStopped(ctx, d, access);
    const problems: string[] = [];
    const kill = killed();
    if (!kill?.includes('killed and masked')) return s.result(false, kill ?? `rollout never rebooted ${victim.node.name}`);
    if (!stopped) return s.result(false, `rollout went on to the end though ${kill} (rebooted: ${access.reboots.join(', ')})`);
    const name = victim.node.name;
    const { rebooted, left } = stopProblems(ctx, name, stopped, access.reboots, problems);
    await statusAfterStop(ctx, d, access, { deployed: generations, pending: left }, name, problems);

    // Once the cluster is whole again, rollout finishes the rest.
    const unwell = await startMariadbAgain(ctx, victim, unmask);
    if (unwell) return s.result(false, [...problems, unwell].join('; '));
    const second = await finishRollout(ctx, d, access, left, problems);
    if (typeof second === 'string') return s.result(false, [...problems, second].join('; '));
    const story = `rollout stopped at ${stopped.node} after ${stopSeconds} s, saying: ${stopped.problems.join('; ')}; rebooted before: ${rebooted.join(', ')}`;
    if (problems.length) return s.result(false, `${story}; but ${problems.join('; ')}`);
    return s.result(
      true,
      `${story}; the rest left alone and status agreed with the lab; MariaDB started again, a second rollout rebooted ${second.finished}`,
    );
  } finally {
    await unmask().catch(() => undefined);
    await rm(path.join(work, 'out'), { recursive: true, force: true });
  }
}
