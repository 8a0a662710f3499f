/** mariadb-restart-bootstrap: MariaDB killed on the server that bootstrapped the cluster. */
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';
import { servers, galeraFullWithin, showGalera, ensureWhole, bootstrappers } from '../cluster-checks.js';
import { galeraStatus } from '../probes.js';
import { waitFor } from '../run-command.js';

/**
 * MariaDB killed (no reboot) on the server that bootstrapped the cluster: its
 * next start must join, not bootstrap again ("It may not be safe to bootstrap").
 */
export async function mariadbRestartBootstrap(ctx: LabContext): Promise<ScenarioResult> {
  const start = Date.now();
  const s = scenario('mariadb-restart-bootstrap', start);
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const named = await bootstrappers(ctx);
  const victim = servers(ctx).find((m) => m.node.name === (named[0] ?? ctx.bootstrapNode))!;
  const why = named.length
    ? 'which bootstrapped the cluster in this boot'
    : `the bootstrap node (the cluster formed through pc.recovery in this boot, so none bootstrapped)`;
  ctx.log(`mariadb-restart-bootstrap: killing MariaDB on ${victim.node.name}, ${why}`);
  const killed = await victim.exec(
    'bash',
    ['-c', 'pid=$(systemctl show --property=MainPID --value mariadb.service) && [ "$pid" -gt 0 ] && kill -KILL "$pid"'],
    { timeoutMs: 10_000 },
  );
  if (!killed.ok) return s.result(false, `could not kill MariaDB on ${victim.node.name}: ${killed.stderr.trim()}`);
  const cut = Date.now();
  // Wait until it is really gone from the cluster, then for its return.
  await waitFor(async () => ((await galeraStatus(victim)) === undefined ? true : undefined), 20_000, 250);
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  const log = await victim.journal('mariadb', 60);
  if (!galera.ok)
    return s.result(
      false,
      `MariaDB on ${victim.node.name} did not come back into the cluster within ${ctx.bounds.rejoinSeconds} s (${showGalera(galera.seen)})\n${log.split('\n').slice(-8).join(' / ')}`,
    );
  s.primary(elapsed(cut));
  if (/may not be safe to bootstrap/i.test(log))
    return s.result(
      false,
      `${victim.node.name} tried to bootstrap again: ${log.split('\n').filter((l) => /safe to bootstrap/i.test(l))[0]}`,
    );
  const joined = log
    .split('\n')
    .filter((l) => l.includes('joining the primary component'))
    .pop();
  return s.result(
    true,
    `MariaDB killed on ${victim.node.name} (${why}) restarted by itself${joined ? ` ("${joined.trim()}")` : ''}; all servers primary again ${elapsed(cut)} s after the kill (bound ${ctx.bounds.rejoinSeconds} s)`,
  );
}
