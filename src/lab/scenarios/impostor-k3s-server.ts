/**
 * A host on the LAN takes the VIP, which agents join through (VRRP's clear-text password guards
 * it), and answers on k3s's port with a CA of its own. With the secure token
 * (`K10<CA hash>::node:…`), an agent fetches /cacerts without verification, hashes it and sends
 * its credentials only on a match (docs.k3s.io, "k3s token"): it must refuse the impostor, never
 * ask it to join, and join the real servers by itself once the VIP is theirs again.
 *
 * The impostor takes a free VIP (keepalived stopped on every server), not a held one: fighting
 * VRRP for it by ARP would make the test a race. It is Python's http.server in a namespace of its
 * own on the lab bridge, serving its CA bundle at /cacerts and logging every request it gets.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Cleanup } from '../cleanup.js';
import type { Machine } from '../machine.js';
import { addLabMachine } from '../network.js';
import { standinReady, vipHolders } from '../probes.js';
import { netnsPath, run, tryInNet, waitFor } from '../run-command.js';
import { startTool } from '../../tools.js';
import { ensureWhole, servers, settledVipHolder, vipProblem } from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';

export const NAME = 'impostor-k3s-server';
/** k3s's supervisor and API port, where agents fetch /cacerts and join. */
const K3S_PORT = 6443;
/** The stand-in's words, as k3s's (pkg/clientaccess/token.go): a refused CA, and an accepted one. */
const REFUSED = 'token CA hash does not match the Cluster CA certificate hash';
const ACCEPTED = "matches the token's CA hash";

/** The agent's k3s-agent journal lines since `since` (epoch seconds) that match `grep`. */
async function agentSaid(agent: Machine, since: number, grep: string): Promise<string[]> {
  const result = await agent.exec('journalctl', ['--no-pager', '-o', 'cat', '-u', 'k3s-agent', `--since=@${since}`, `--grep=${grep}`], {
    timeoutMs: 10_000,
  });
  return result.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('-- '));
}

/** The impostor's request lines from http.server's log: `ADDRESS - - [date] "GET /path HTTP/1.1" 200 -`. */
export function requestsIn(log: string): { from: string; path: string }[] {
  return [...log.matchAll(/^(\S+) - - \[[^\]]*\] "[A-Z]+ (\S+) HTTP\/[\d.]+"/gm)].map((m) => ({ from: m[1]!, path: m[2]! }));
}

/** Where the impostor keeps its files and its network namespace. */
interface Impostor {
  dir: string;
  ns: string;
  /** http.server's log: one line a request. */
  log: string;
}

/** The cleanup that takes the impostor away again, registered with the lab's should it stop midway. */
function impostorCleanup(ctx: LabContext, impostor: Impostor): Cleanup {
  const undo = new Cleanup();
  ctx.cleanup.add('the impostor k3s server', async () => void (await undo.run(ctx.log)));
  // Undone last: the servers' keepalived takes the VIP back once the impostor is gone.
  undo.add('keepalived on the servers', async () => {
    for (const server of servers(ctx)) await server.exec('systemctl', ['start', 'keepalived'], { timeoutMs: 30_000 });
  });
  undo.add('impostor files', () => rm(impostor.dir, { recursive: true, force: true }));
  return undo;
}

// Every machine that spoke to the VIP may still have the impostor's MAC for it.
async function forgetVipNeighbour(ctx: LabContext): Promise<void> {
  for (const space of [ctx.topology.bridgeNs, ...ctx.machines.map((m) => m.node.ns)])
    await run('ip', ['-n', space, 'neigh', 'flush', 'to', ctx.topology.vip], { timeoutMs: 10_000 });
}

/** Stops keepalived on every server and waits for nobody to hold the VIP. */
async function freeVip(ctx: LabContext): Promise<string | undefined> {
  ctx.log(`${NAME}: stopping keepalived on every server, so the VIP ${ctx.topology.vip} is free for the impostor`);
  for (const server of servers(ctx)) {
    const stopped = await server.exec('systemctl', ['stop', 'keepalived'], { timeoutMs: 30_000 });
    if (!stopped.ok) return `could not stop keepalived on ${server.node.name}: ${stopped.stderr.trim()}`;
  }
  let holders: string[] = [];
  const freed = await waitFor(
    async () => ((holders = await vipHolders(ctx.topology, ctx.machines)).length === 0 ? true : undefined),
    30_000,
    500,
  );
  if (!freed) return `the VIP stayed on ${holders.join(', ')} 30 s after keepalived stopped there`;
  return undefined;
}

/** The impostor on the VIP: a CA of its own, served at /cacerts on k3s's port, answering from the bridge. */
async function startImpostor(ctx: LabContext, { dir, ns, log }: Impostor, undo: Cleanup): Promise<string | undefined> {
  const { vip } = ctx.topology;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await run(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2']
      .concat(['-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cacerts'), '-subj', '/CN=netroot lab impostor CA'])
      .concat(['-addext', `subjectAltName=IP:${vip}`]),
    { timeoutMs: 30_000 },
  );
  await addLabMachine(ctx.topology, { ns, port: 'impostor', address: vip }, undo);
  const impostor = startTool(
    'nsenter',
    [`--net=${netnsPath(ns)}`, '--', 'python3', '-m', 'http.server', '--bind', vip, '--directory', dir, String(K3S_PORT)],
    { stdoutFile: `${log}.out`, stderrFile: log },
  );
  undo.add('the impostor', () => impostor.stop(5_000, 'SIGTERM'));
  await forgetVipNeighbour(ctx);
  const serving = await waitFor(
    async () =>
      (
        await tryInNet(ctx.topology.bridgeNs, 'curl', ['-sf', '--max-time', '2', `http://${vip}:${K3S_PORT}/cacerts`], {
          timeoutMs: 5_000,
        })
      ).ok
        ? true
        : undefined,
    15_000,
    500,
  );
  if (!serving) return `the impostor does not answer at ${vip}:${K3S_PORT}: ${(await readFile(log, 'utf8').catch(() => '')).trim()}`;
  return undefined;
}

/** How the agent met the impostor: its refusals, what it asked of it, and how long refusing took. */
interface Refusal {
  refusals: string[];
  fromAgent: { from: string; path: string }[];
  refusedAfter: number;
}

/** The agent joins again (as after a reboot) while the impostor holds the VIP: it must refuse, and ask for nothing but /cacerts. */
async function agentRefusesImpostor(ctx: LabContext, agent: Machine, { log }: Impostor): Promise<Refusal | string> {
  const since = Math.floor(Date.now() / 1000);
  const shown = Date.now();
  ctx.log(`${NAME}: an impostor with a CA of its own holds ${ctx.topology.vip}; restarting ${agent.node.name}'s agent`);
  const restarted = await agent.exec('systemctl', ['--no-block', 'restart', 'k3s-agent'], { timeoutMs: 15_000 });
  if (!restarted.ok) return `could not restart k3s-agent on ${agent.node.name}: ${restarted.stderr.trim()}`;
  // Two refusals: the agent keeps trying, as k3s does, and never sends its token.
  let refusals: string[] = [];
  await waitFor(async () => ((refusals = await agentSaid(agent, since, REFUSED)).length >= 2 ? true : undefined), 60_000, 1_000);
  const requests = requestsIn(await readFile(log, 'utf8').catch(() => ''));
  const fromAgent = requests.filter((r) => r.from === agent.node.ip);
  const beyondCa = fromAgent.filter((r) => r.path !== '/cacerts');
  const joinedImpostor = await agentSaid(agent, since, 'joined');
  if (refusals.length < 2)
    return `${agent.node.name}'s agent did not refuse the impostor's CA twice within 60 s (${refusals.length} refusals); it asked the impostor for ${fromAgent.map((r) => r.path).join(', ') || 'nothing'}\n${await agent.journal('k3s-agent', 6)}`;
  if (!fromAgent.some((r) => r.path === '/cacerts'))
    return `${agent.node.name}'s agent refused, but the impostor's log has no request of it: ${requests.length} requests from others`;
  if (beyondCa.length || joinedImpostor.length)
    return `${agent.node.name}'s agent went past /cacerts with the impostor: it asked for ${beyondCa.map((r) => r.path).join(', ') || '(nothing more)'}${joinedImpostor.length ? `, and logged "${joinedImpostor[0]}"` : ''}`;
  return { refusals, fromAgent, refusedAfter: elapsed(shown) };
}

/** The impostor goes, the servers take the VIP back, and the agent, still retrying, joins them by itself: the VIP's holder and how long it took. */
async function agentRejoinsServers(
  ctx: LabContext,
  agent: Machine,
  undo: Cleanup,
  { refusals }: Refusal,
): Promise<{ holder: string; seconds: number } | string> {
  ctx.log(`${NAME}: taking the impostor away and starting keepalived on the servers again`);
  const back = Math.floor(Date.now() / 1000);
  const returned = Date.now();
  const left = await undo.run(ctx.log);
  if (left.length) return `could not undo the impostor: ${left.join('; ')}`;
  const holder = await settledVipHolder(ctx, 0, ctx.bounds.vipSettleSeconds * 1000);
  if (holder.length !== 1) return `after the impostor left: ${vipProblem(ctx, holder)}`;
  await forgetVipNeighbour(ctx);
  // No restart: the agent, still retrying, joins the real servers by itself.
  const rejoined = await waitFor(
    async () => ((await agentSaid(agent, back, ACCEPTED)).length > 0 && (await standinReady(ctx.topology, agent)) ? true : undefined),
    90_000,
    2_000,
  );
  if (!rejoined)
    return `the impostor refused (${refusals.length} times, only /cacerts asked of it), but ${agent.node.name}'s agent did not join the real servers within 90 s of the VIP's return to ${holder[0]}\n${await agent.journal('k3s-agent', 6)}`;
  return { holder: holder[0]!, seconds: elapsed(returned) };
}

export async function impostorK3sServer(ctx: LabContext): Promise<ScenarioResult> {
  const s = scenario(NAME, Date.now());
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const agent = ctx.machines.find((m) => !m.node.isServer);
  if (!agent) return s.result(false, 'the profile has no agent to join through the VIP');
  const { vip } = ctx.topology;
  const joinedAtBoot = await agent.journal('k3s-agent', 3, ACCEPTED);
  if (!joinedAtBoot)
    return s.result(false, `${agent.node.name}'s agent did not log that the servers' CA matched its token's hash when it joined at boot`);

  const dir = path.resolve(ctx.runDir, 'impostor');
  const impostor: Impostor = { dir, ns: `${ctx.topology.prefix}-impostor`, log: path.join(dir, 'requests.log') };
  const undo = impostorCleanup(ctx, impostor);
  try {
    const busy = await freeVip(ctx);
    if (busy) return s.result(false, busy);
    const absent = await startImpostor(ctx, impostor, undo);
    if (absent) return s.result(false, absent);
    const refused = await agentRefusesImpostor(ctx, agent, impostor);
    if (typeof refused === 'string') return s.result(false, refused);
    const rejoined = await agentRejoinsServers(ctx, agent, undo, refused);
    if (typeof rejoined === 'string') return s.result(false, rejoined);
    const { refusals, fromAgent, refusedAfter } = refused;
    return s.result(
      true,
      `with an impostor (CA of its own) on the VIP ${vip}, ${agent.node.name}'s agent refused its CA ${refusals.length} times within ${refusedAfter} s ("${REFUSED}") and asked it for nothing but /cacerts (${fromAgent.length} requests); ` +
        `once the VIP was back on ${rejoined.holder}, the agent accepted the servers' CA and joined by itself ${rejoined.seconds} s later`,
    );
  } catch (error) {
    return s.result(false, `could not run the impostor: ${(error as Error).message}`);
  } finally {
    await undo.run(ctx.log);
  }
}
