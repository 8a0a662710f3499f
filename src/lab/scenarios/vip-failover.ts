/**
 * vip-failover: the VIP's holder loses power; the VIP must move within the
 * bound, the datastore answer through it, and the server rejoin Galera once
 * it is powered on again.
 */
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';
import {
  servers,
  datastoreWithin,
  showGalera,
  journals,
  settledVipHolder,
  vipProblem,
  ensureWhole,
  rejoin,
  powerLoss,
} from '../cluster-checks.js';

export async function vipFailover(ctx: LabContext): Promise<ScenarioResult> {
  const { result } = scenario('vip-failover', Date.now());
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
