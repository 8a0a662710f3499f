/** power-stale-node: a server that missed writes must not bootstrap after a cut. */
import { scenario, type LabContext, type ScenarioResult } from '../context.js';
import { servers, ensureWhole, powerLoss, writeRowsWithin, bootstrappers, powerOnAll } from '../cluster-checks.js';
import { vipHolders } from '../probes.js';
import { recovered } from '../recovery.js';

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
