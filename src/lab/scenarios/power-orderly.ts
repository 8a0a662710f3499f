/** power-orderly: the seed article's daily power-off and power-on. */
import type { LabContext, ScenarioResult } from '../context.js';
import { servers, rowsThroughVip, onlyBootstrapper, powerOnAll } from '../cluster-checks.js';
import { begin, recovered, orderlyPowerOff } from '../recovery.js';

/** The seed's daily power-off: two servers, a pause, the last; then every node on at once in random order. */
export async function powerOrderly(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-orderly', 20);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  const off = await orderlyPowerOff(ctx, 'power-orderly', phase);
  if ('problem' in off) return s.result(false, off.problem);
  const { lastOne, firstOnes } = off;
  const poweredOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const story = `${firstOnes.map((m) => m.node.name).join(', ')} shut down, then ${lastOne.node.name}; powered on in the order ${order.join(', ')}`;
  const result = await recovered(ctx, s, poweredOn, `${phase}-alone`, 1, story);
  if (!result.pass) return result;
  const earlier = await rowsThroughVip(ctx, phase);
  if (typeof earlier === 'string' || earlier.count !== 20)
    return s.result(false, `${story}; the 20 rows written before the power-off are not all there`);
  const other = await onlyBootstrapper(ctx, lastOne, 'safe_to_bootstrap');
  if (other) return s.result(false, `${story}; ${other}`);
  return s.result(true, `${result.detail}; ${lastOne.node.name}, the last to leave, bootstrapped`);
}
