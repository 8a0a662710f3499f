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
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';
import { deployTo, labAccess, labRollout, labStatus, rebuildChanged, statusProblems } from './rolling-redeploy.js';

/** Kills MariaDB's main process, and masks the unit for this boot so that systemd does not restart it. */
const KILL = [
  'systemctl mask --runtime mariadb.service',
  'pid=$(systemctl show --property=MainPID --value mariadb.service)',
  '[ "$pid" -gt 0 ] && kill -KILL "$pid"',
].join(' && ');

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
  let killed: string | undefined;
  const unmask = async (): Promise<void> => {
    await victim.exec('systemctl', ['unmask', '--runtime', 'mariadb.service'], { timeoutMs: 10_000 });
  };
  ctx.cleanup.add(`MariaDB masked on ${victim.node.name}`, unmask);
  try {
    const marker = `# rollout-mariadb-killed ${Date.now()}`;
    await rebuildChanged(d, work, marker);
    const deployed = await deployTo(d, path.join(work, 'out'), work, path.join(work, 'overlays'));
    const pending = new Set(deployed.nodes.filter((n) => n.reboot).map((n) => n.node));
    if (pending.size !== ctx.machines.length)
      return s.result(false, `the deploy said only ${[...pending].join(', ')} must reboot; the changed /etc/hosts is on every node`);
    const generations = new Map(deployed.nodes.map((n) => [n.node, n.generation]));

    // Once the victim is back and its MariaDB started, it is killed and kept down.
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

    const t = Date.now();
    let stopped: RolloutStoppedError | undefined;
    try {
      await labRollout(ctx, d, access);
    } catch (error) {
      if (!(error instanceof RolloutStoppedError)) throw error;
      stopped = error;
    }
    const stopSeconds = elapsed(t);
    const problems: string[] = [];
    if (!killed?.includes('killed and masked')) return s.result(false, killed ?? `rollout never rebooted ${victim.node.name}`);
    if (!stopped) return s.result(false, `rollout went on to the end though ${killed} (rebooted: ${access.reboots.join(', ')})`);
    const name = victim.node.name;
    if (stopped.node !== name) problems.push(`rollout stopped at ${stopped.node}, not at ${name}`);
    if (!stopped.problems.some((p) => p.startsWith(`${name}: mariadb`)))
      problems.push(`rollout did not say that ${name}'s MariaDB is why: ${stopped.problems.join('; ')}`);
    const order = [...servers(ctx), ...ctx.machines.filter((m) => !m.node.isServer)].map((m) => m.node.name);
    const expectedReboots = order.slice(0, order.indexOf(name) + 1);
    const rebooted = access.reboots.map((r) => r.split(' ')[0]);
    if (rebooted.join(',') !== expectedReboots.join(','))
      problems.push(
        `rollout rebooted ${rebooted.join(', ')}; it should have rebooted ${expectedReboots.join(', ')} and left the rest alone`,
      );

    // status: what the lab sees; the nodes after the victim still have their reboot pending.
    const left = new Set(order.filter((n) => !rebooted.includes(n)));
    const seen = await statusProblems(ctx, await labStatus(ctx, d, access), { deployed: generations, pending: left });
    if (seen.length) problems.push(`status after the stop: ${seen.join('; ')}`);
    const row = (await labStatus(ctx, d, access)).nodes.find((n) => n.node === name);
    if (row?.galera || !['failed', 'inactive'].includes(row?.mariadb ?? ''))
      problems.push(`status shows ${name}'s MariaDB as ${row?.mariadb ?? '?'}${row?.galera ? `, Galera ${row.galera.state}` : ''}`);

    // The operator lets MariaDB start again; once the cluster is whole, rollout finishes the rest.
    await unmask();
    await victim.exec('systemctl', ['reset-failed', 'mariadb.service'], { timeoutMs: 10_000 });
    await victim.exec('systemctl', ['start', '--no-block', 'mariadb.service'], { timeoutMs: 10_000 });
    const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
    if (!galera.ok)
      return s.result(
        false,
        `${[...problems, `${name}'s MariaDB did not rejoin once started again (${showGalera(galera.seen)})`].join('; ')}`,
      );
    // keepalived may take the VIP back to the victim: rollout starts only on one settled holder.
    const holders = await settledVipHolder(ctx, 6_000, ctx.bounds.vipSettleSeconds * 1000);
    if (holders.length !== 1) return s.result(false, [...problems, `after MariaDB started again: ${vipProblem(ctx, holders)}`].join('; '));
    let finished: string;
    try {
      const again = await labRollout(ctx, d, access);
      finished = again.rebooted.map((r) => `${r.node} ${r.seconds} s`).join(', ');
      if (again.order.join(',') !== [...left].join(','))
        problems.push(`the second rollout rebooted ${again.order.join(', ')}, not the nodes left: ${[...left].join(', ')}`);
    } catch (error) {
      return s.result(false, [...problems, `the second rollout, on a healthy cluster, failed: ${(error as Error).message}`].join('; '));
    }
    const story = `rollout stopped at ${stopped.node} after ${stopSeconds} s, saying: ${stopped.problems.join('; ')}; rebooted before: ${rebooted.join(', ')}`;
    if (problems.length) return s.result(false, `${story}; but ${problems.join('; ')}`);
    return s.result(
      true,
      `${story}; the rest left alone and status agreed with the lab; MariaDB started again, a second rollout rebooted ${finished}`,
    );
  } finally {
    await unmask().catch(() => undefined);
    await rm(path.join(work, 'out'), { recursive: true, force: true });
  }
}
