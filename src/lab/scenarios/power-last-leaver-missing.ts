/** power-last-leaver-missing: the others come back without the server that left last. */
import type { LabContext, ScenarioResult } from '../context.js';
import { rowsThroughVip, onlyBootstrapper, powerOnAll } from '../cluster-checks.js';
import { begin, recovered, orderlyPowerOff, withoutTheLastLeaver, newestHistoryWins } from '../recovery.js';

/**
 * Sequence 1 of issue 18: an orderly power-off with one server last (it alone holds the last row),
 * then the others come back without it. They never bootstrap without it under policy majority,
 * and it bootstraps when it returns, every row there. Under policy survivor they bootstrap after
 * survivorAfter, take new rows, and the old last leaver rejoins them with a full state transfer:
 * the newest history wins, every row of it on every server.
 */
export async function powerLastLeaverMissing(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-last-leaver-missing', 20);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-last-leaver-missing', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne, firstOnes } = off;
  const poweredOn = Date.now();
  await powerOnAll(ctx, firstOnes);
  const without = await withoutTheLastLeaver(ctx, firstOnes, lastOne, poweredOn);
  if ('problem' in without) return s.result(false, without.problem);
  const backOn = Date.now();
  if (ctx.recoveryPolicy === 'majority') {
    await ctx.powerOn(lastOne);
    const result = await recovered(ctx, s, backOn, `${phase}-alone`, 1, `${without.said}; then ${lastOne.node.name} powered on`);
    if (!result.pass) return result;
    const other = await onlyBootstrapper(ctx, lastOne, 'the last to leave');
    if (other) return s.result(false, `${result.detail}; ${other}`);
    const earlier = await rowsThroughVip(ctx, phase);
    if (typeof earlier === 'string' || earlier.count !== 20)
      return s.result(false, `${result.detail}; the 20 rows written before the power-off are not all there`);
    return s.result(true, `${result.detail}; ${lastOne.node.name}, the last to leave, bootstrapped`);
  }
  return newestHistoryWins(ctx, s, phase, lastOne, without.said);
}
