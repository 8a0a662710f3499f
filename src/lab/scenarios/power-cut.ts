/** power-cut: every server loses power at once. */
import type { LabContext, ScenarioResult } from '../context.js';
import { servers, powerLoss, bootstrappers, powerOnAll } from '../cluster-checks.js';
import { begin, recovered, modelDisagrees } from '../recovery.js';

/** Every server loses power at once, then all come back. */
export async function powerCut(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-cut', 50);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  ctx.log('power-cut: pulling the power of every server at once');
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const model = await modelDisagrees(servers(ctx), () => ({ clean: false, view: servers(ctx).length }));
  if (model) return s.result(false, model);
  const poweredOn = Date.now();
  const order = await powerOnAll(ctx, servers(ctx));
  const result = await recovered(ctx, s, poweredOn, phase, 50, `all servers cut at once; powered on in the order ${order.join(', ')}`);
  if (!result.pass) return result;
  const who = await bootstrappers(ctx);
  return s.result(
    true,
    `${result.detail}; ${who.length ? `${who.join(', ')} bootstrapped` : "nobody bootstrapped: Galera's pc.recovery restored the last view"}`,
  );
}
