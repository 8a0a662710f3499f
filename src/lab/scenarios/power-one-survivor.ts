/** power-one-survivor: only one server comes back after a cut. */
import { elapsed, type LabContext, type ScenarioResult } from '../context.js';
import { servers, journals, powerLoss, powerOnAll } from '../cluster-checks.js';
import { galeraStatus } from '../probes.js';
import { begin, staysAlone, recovered } from '../recovery.js';
import { waitFor } from '../run-command.js';

/**
 * Only one server comes back after a cut. Under the majority policy it stays
 * out of any primary component and says why; under the survivor policy it
 * bootstraps once survivorAfter has passed. Then the others return.
 */
export async function powerOneSurvivor(ctx: LabContext): Promise<ScenarioResult> {
  const begun = await begin(ctx, 'power-one-survivor', 10);
  if (!('phase' in begun)) return begun;
  const { s, phase } = begun;
  await Promise.all(servers(ctx).map((m) => powerLoss(m)));
  const [survivor, ...rest] = ctx.shuffle(servers(ctx));
  ctx.log(`power-one-survivor: every server cut; powering only ${survivor!.node.name} on (policy ${ctx.recoveryPolicy})`);
  const poweredOn = Date.now();
  await ctx.powerOn(survivor!);
  const total = servers(ctx).length;
  let story: string;
  if (ctx.recoveryPolicy === 'majority') {
    // Long enough to have bootstrapped if it were going to (the decision polls every 2 s).
    const alone = await staysAlone(ctx, survivor!, /not bootstrapping: 1 of \d+ servers seen/, 20_000);
    if ('problem' in alone) return s.result(false, `${alone.problem} (policy majority)`);
    story = `${survivor!.node.name} alone stayed out of any primary component and said "${alone.said}"`;
  } else {
    const bound = ctx.bounds.survivorAfterSeconds + 120;
    const primary = await waitFor(
      async () => ((await galeraStatus(survivor!))?.status === 'Primary' ? true : undefined),
      bound * 1000,
      2_000,
    );
    if (!primary)
      return s.result(
        false,
        `policy survivor: ${survivor!.node.name} alone did not bootstrap within ${bound} s\n${await journals(ctx, [survivor!.node.name], 'mariadb')}`,
      );
    const after = elapsed(poweredOn);
    if (after < ctx.bounds.survivorAfterSeconds)
      return s.result(
        false,
        `policy survivor: ${survivor!.node.name} bootstrapped after ${after} s, before survivorAfter (${ctx.bounds.survivorAfterSeconds} s)`,
      );
    story = `policy survivor: ${survivor!.node.name} alone bootstrapped ${after} s after power-on (survivorAfter ${ctx.bounds.survivorAfterSeconds} s)`;
  }
  const othersOn = Date.now();
  await powerOnAll(ctx, rest);
  return recovered(ctx, s, othersOn, phase, 10, `${story}; the other ${total - 1} powered on`);
}
