/**
 * galera-node-loss: a server without the VIP loses power while rows are
 * written through the VIP; powered on again, it rejoins and holds them all.
 */
import { scenario, type LabContext, type ScenarioResult } from '../context.js';
import { TABLE, runningServers, showGalera, journals, settledVipHolder, ensureWhole, rejoin, powerLoss } from '../cluster-checks.js';
import { sqlThroughVip } from '../probes.js';

export async function galeraNodeLoss(ctx: LabContext): Promise<ScenarioResult> {
  const { result } = scenario('galera-node-loss', Date.now());
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
