/** mariadb-down: MariaDB dies on the VIP's holder while its node stays up. */
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';
import {
  servers,
  galeraFullWithin,
  datastoreWithin,
  showGalera,
  journals,
  settledVipHolder,
  vipProblem,
  ensureWhole,
} from '../cluster-checks.js';
import { vipHolders } from '../probes.js';
import { waitFor } from '../run-command.js';

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
