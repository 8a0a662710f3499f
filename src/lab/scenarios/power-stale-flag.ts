/** power-stale-flag: a safe_to_bootstrap flag gone stale must not win. */
import type { LabContext, ScenarioResult } from '../context.js';
import { servers, galeraFullWithin, showGalera, writeRowsWithin, onlyBootstrapper, powerOnAll } from '../cluster-checks.js';
import { begin, staysAlone, recovered, orderlyPowerOff, withoutTheLastLeaver, rejoinedAfresh } from '../recovery.js';

/**
 * Sequence 2 of issue 18: a server's safe_to_bootstrap flag goes stale. After an orderly power-off
 * with `stale` last, the others come back without it and bootstrap anyway (a person chooses one under
 * policy majority, survivorAfter under survivor), take new rows and are powered off in order. Then
 * every server comes on at once: the newest history bootstraps, not the stale flag, and `stale`
 * rejoins with a full state transfer.
 */
export async function powerStaleFlag(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-stale-flag', 10);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-stale-flag', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne: stale, firstOnes } = off;
  const poweredOn = Date.now();
  await powerOnAll(ctx, firstOnes);
  let story: string;
  if (ctx.recoveryPolicy === 'majority') {
    const alone = await staysAlone(ctx, firstOnes[0]!, /left after them and holds writes they lack/, 0);
    if ('problem' in alone) return s.result(false, alone.problem);
    const chosen = firstOnes[0]!;
    const chose = await chosen.exec('touch', ['/run/netroot/galera-bootstrap-here'], { timeoutMs: 10_000 });
    if (!chose.ok) return s.result(false, `could not choose ${chosen.node.name}: ${chose.stderr.trim()}`);
    story = `${firstOnes.map((m) => m.node.name).join(', ')} waited for ${stale.node.name} ("${alone.said}"); a person chose ${chosen.node.name}`;
  } else {
    const without = await withoutTheLastLeaver(ctx, firstOnes, stale, poweredOn);
    if ('problem' in without) return s.result(false, without.problem);
    story = without.said;
  }
  const formed = await galeraFullWithin(ctx, ctx.bounds.recoverySeconds * 1000, firstOnes.length);
  if (!formed.ok)
    return s.result(false, `${story}; the servers without ${stale.node.name} formed no primary component (${showGalera(formed.seen)})`);
  const newer = `${phase}-newer`;
  const wrote = await writeRowsWithin(ctx, newer, 15, 90_000);
  if (!wrote) return s.result(false, `${story}; could not write through the VIP`);
  // A second orderly power-off: the newest history now ends on a server with a flag of its own.
  const again = await orderlyPowerOff(ctx, 'power-stale-flag', newer);
  if ('problem' in again) return s.result(false, again.problem);
  const allOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const result = await recovered(
    ctx,
    s,
    allOn,
    `${newer}-alone`,
    1,
    `${story}; 15 rows written, ${again.lastOne.node.name} shut down last; all powered on in the order ${order.join(', ')}`,
  );
  if (!result.pass) return result;
  const other = await onlyBootstrapper(ctx, again.lastOne, 'the newest history');
  if (other) return s.result(false, `${result.detail}; ${other}`);
  const rejoined = await rejoinedAfresh(ctx, stale, newer, `${phase}-alone`);
  if ('problem' in rejoined) return s.result(false, `${result.detail}; ${rejoined.problem}`);
  return s.result(
    true,
    `${result.detail}; ${again.lastOne.node.name} bootstrapped, not the stale flag of ${stale.node.name}, which rejoined with a full state transfer; every server holds the 15 newer rows`,
  );
}
