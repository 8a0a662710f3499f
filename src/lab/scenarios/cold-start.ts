/**
 * cold-start: every node powered on at once must become the seed article's
 * cluster within the bound: Galera of all servers over TLS, one VIP holder,
 * the k3s database answering through it, every stand-in ready, names
 * resolving, and systemd running with no failed unit on every node.
 */
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';
import { servers, galeraFullWithin, datastoreWithin, showGalera, journals, settledVipHolder, vipProblem } from '../cluster-checks.js';
import { datastoreTls, galeraProviderOptions, galeraTlsProblems, nameProblem, systemState, type SystemState } from '../node-checks.js';
import { standinReady } from '../probes.js';
import { waitFor } from '../run-command.js';

/** How long one VIP holder must stay the only one before the lab believes it. */
const VIP_QUIET_MS = 12_000;

export async function coldStart(ctx: LabContext, started: number): Promise<ScenarioResult> {
  const s = scenario('cold-start', started);
  const deadline = started + ctx.bounds.coldStartSeconds * 1000;
  const left = (): number => Math.max(0, deadline - Date.now());
  const fail = (what: string, more = ''): ScenarioResult => s.result(false, [what, more].filter(Boolean).join('\n'));

  const size = servers(ctx).length;
  const galera = await galeraFullWithin(ctx, left());
  if (!galera.ok) {
    const bad = [...galera.seen].filter(([, st]) => !st || st.size !== size).map(([name]) => name);
    return fail(
      `Galera did not form within ${ctx.bounds.coldStartSeconds} s: wsrep_cluster_size is not ${size} on every server (${showGalera(galera.seen)})`,
      await journals(ctx, bad, 'mariadb'),
    );
  }
  const galeraAt = elapsed(started);

  // A split brain can look like a single holder for a while: a server whose health
  // check has just passed waits rise × interval (4 s), then three missed adverts,
  // before it takes the VIP. One holder must stay the only one longer than that.
  const holders = await settledVipHolder(ctx, VIP_QUIET_MS, Math.min(left(), ctx.bounds.vipSettleSeconds * 1000));
  if (holders.length !== 1)
    return fail(
      vipProblem(ctx, holders),
      await journals(ctx, holders.length ? holders : servers(ctx).map((m) => m.node.name), 'keepalived'),
    );
  const holder = holders[0]!;

  const sql = await datastoreWithin(ctx, left(), 2_000);
  if (!sql.ok)
    return fail(
      `the k3s database ${ctx.datastore.database} does not answer through the VIP as ${ctx.datastore.user}: ${sql.stderr.trim()}`,
      await journals(ctx, [holder], 'netroot-k3s-datastore'),
    );

  const standins = await standinsNotReady(ctx, left());
  if (standins) return fail(standins.problem, standins.more);

  const inside = await insideEveryNode(ctx, started);
  if ('problem' in inside) return fail(inside.problem, inside.more);
  const { session, slowest } = inside;
  const { record } = ctx.dns;
  return s.result(
    true,
    `Galera size ${size} on every server after ${galeraAt} s, over TLS (socket.ssl); VIP on ${holder} only; k3s database and user answer through the VIP (${session.version}, ${session.cipher}); ` +
      `k3s stand-ins ready on ${ctx.machines.length} nodes; ${record.name} resolves to ${record.address} on every node; ` +
      `systemd running with no failed unit on every node, the slowest (${slowest.node}) after ${slowest.seconds} s (bound ${ctx.bounds.systemRunningSeconds} s)`,
  );
}

/** Waits (bounded) for every node's k3s stand-in; the nodes whose stand-in is not ready, with their journals, or undefined. */
async function standinsNotReady(ctx: LabContext, timeoutMs: number): Promise<{ problem: string; more: string } | undefined> {
  let notReady: string[] = [];
  const ready = await waitFor(
    async () => {
      notReady = [];
      for (const machine of ctx.machines) if (!(await standinReady(ctx.topology, machine))) notReady.push(machine.node.name);
      return notReady.length === 0 ? true : undefined;
    },
    timeoutMs,
    2_000,
  );
  if (ready) return undefined;
  const units = await Promise.all(
    notReady.map(async (name) =>
      journals(ctx, [name], ctx.machines.find((m) => m.node.name === name)!.node.isServer ? 'k3s' : 'k3s-agent'),
    ),
  );
  return { problem: `k3s stand-in not ready on ${notReady.join(', ')}`, more: units.join('\n') };
}

/**
 * Inside every node: names through its own resolver, and systemd's verdict on its boot; on the
 * servers, Galera over TLS; and the k3s user's connection encrypted. Every problem is reported at once.
 */
async function insideEveryNode(
  ctx: LabContext,
  started: number,
): Promise<{ session: { version: string; cipher: string }; slowest: SystemState } | { problem: string; more: string }> {
  const problems: string[] = [];
  const more: string[] = [];
  const { record } = ctx.dns;
  const names = (await Promise.all(ctx.machines.map((m) => nameProblem(m, record.name, record.address, ctx.dns.address)))).filter(
    (p): p is string => p !== undefined,
  );
  if (names.length) {
    problems.push(`names: ${names.join('; ')}`);
    more.push(`the lab's DNS server logs every query it gets in ${ctx.dns.log}`);
  }
  const bootBound = ctx.bounds.systemRunningSeconds;
  const states = await Promise.all(ctx.machines.map((m) => systemState(m, Math.max(10_000, bootBound * 1000 - (Date.now() - started)))));
  const badBoot = states.filter(
    (st) => st.state !== 'running' || st.failed.length > 0 || st.timedOut.length > 0 || st.seconds === undefined || st.seconds > bootBound,
  );
  if (badBoot.length) {
    problems.push(`systemd on ${badBoot.map((st) => describeBoot(st, bootBound)).join('; ')}`);
    for (const st of badBoot) for (const unit of st.failed) more.push(await journals(ctx, [st.node], unit, 3));
  }
  const tls: string[] = [];
  for (const machine of servers(ctx)) {
    const options = await galeraProviderOptions(machine);
    const missing = typeof options === 'string' ? [options] : galeraTlsProblems(options);
    if (missing.length) tls.push(`${machine.node.name}: ${missing.join(', ')}`);
  }
  if (tls.length) problems.push(`Galera does not run over TLS (wsrep_provider_options): ${tls.join('; ')}`);
  const session = await datastoreTls(ctx.topology, ctx.datastore);
  if (typeof session === 'string') problems.push(session);
  if (problems.length || typeof session === 'string') return { problem: problems.join('\n'), more: more.filter(Boolean).join('\n') };
  const slowest = states.reduce((a, b) => ((b.seconds ?? 0) > (a.seconds ?? 0) ? b : a));
  return { session, slowest };
}

function describeBoot(st: SystemState, bound: number): string {
  const parts = [`${st.node} is ${st.state}`];
  if (st.seconds === undefined) parts.push(`its startup not finished within ${bound} s`);
  else if (st.seconds > bound) parts.push(`its startup took ${st.seconds} s, more than ${bound} s`);
  if (st.failed.length) parts.push(`failed: ${st.failed.join(', ')}`);
  if (st.jobs.length) parts.push(`still waiting: ${st.jobs.slice(0, 5).join(' / ')}`);
  if (st.timedOut.length) parts.push(`timed out: ${st.timedOut.slice(0, 3).join(' / ')}`);
  return parts.join(', ');
}
