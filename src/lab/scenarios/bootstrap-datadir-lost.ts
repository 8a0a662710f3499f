/** bootstrap-datadir-lost: the bootstrap node boots alone with an empty datadir. */
import { rm } from 'node:fs/promises';
import type { LabContext, ScenarioResult } from '../context.js';
import { servers, powerLoss, bootstrappers, powerOnAll, rowsOn } from '../cluster-checks.js';
import { begin, staysAlone, recovered } from '../recovery.js';

/** The bootstrap node's datadir is lost and it boots alone; the others come back later: no new cluster, every row kept. */
export async function bootstrapDatadirLost(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'bootstrap-datadir-lost', 25);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const node = servers(ctx).find((m) => m.node.name === ctx.bootstrapNode)!;
  // What a rebuilt tree or a swapped disk leaves: an empty datadir.
  await rm(node.pathInRoot('var/lib/mysql'), { recursive: true, force: true });
  ctx.log(`bootstrap-datadir-lost: ${node.node.name}'s datadir emptied; powering it on alone`);
  await ctx.powerOn(node);
  const alone = await staysAlone(ctx, node, /waiting|not bootstrapping|new one starts only once/, 15_000);
  if ('problem' in alone) return s.result(false, `${alone.problem} (its datadir empty)`);
  const { said } = alone;
  const othersOn = Date.now();
  const order = await powerOnAll(
    ctx,
    servers(ctx).filter((m) => m !== node),
  );
  const result = await recovered(
    ctx,
    s,
    othersOn,
    phase,
    25,
    `${node.node.name} booted alone with an empty datadir and waited ("${said}"); then ${order.join(', ')} powered on`,
  );
  if (!result.pass) return result;
  if ((await bootstrappers(ctx, [node])).length) return s.result(false, `${result.detail}; but ${node.node.name} bootstrapped`);
  const there = await rowsOn(ctx, node, phase);
  if (there !== 25) return s.result(false, `${result.detail}; but ${node.node.name} itself holds ${there} of the 25 rows`);
  return s.result(true, `${result.detail}; ${node.node.name} joined with a state transfer and holds all 25`);
}
