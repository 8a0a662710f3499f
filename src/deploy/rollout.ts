/**
 * `status` and `rollout`: what every node runs and how it is, and the rolling
 * reboot after a deploy. The export root says which generation each node has
 * and when each was committed (apply.ts's history); the nodes say when they
 * booted and how they are (health.ts); rollout-plan.ts decides, and this file
 * reads, reboots and waits, within bounds taken from the profile.
 */
import { RolloutStoppedError } from '../errors.js';
import { loadProfile } from '../profile/load.js';
import type { ClusterNode } from '../profile/resolve.js';
import { silentReporter, type Reporter } from '../progress.js';
import { META } from './apply.js';
import { readCommitLogs } from './target-commands.js';
import { readNode, sshAccess, type NodeAccess } from './health.js';
import {
  generationsOf,
  k3sUnit,
  parseHistory,
  decideRollout,
  rolloutBounds,
  rolloutOrder,
  type ClusterShape,
  type Commit,
  type NodeReading,
  type RolloutState,
} from './rollout-plan.js';
import { openTarget, parseTarget, type Target } from './target.js';

export interface OperateOptions {
  profile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The export root the nodes run from: a directory, or `[user@]host:/dir`. */
  to: string;
  /** How to reach the export root's host (default: ssh). */
  ssh?: string[];
  /** How to reach the nodes over SSH (default: ssh; as the profile's ssh.user). */
  nodeSsh?: string[];
  /** Reboot with this command here (NODE and NODE_IP set) instead of `systemctl reboot` over SSH. */
  rebootCommand?: string;
  /** How nodes are read and rebooted, when not over SSH (the lab's way into its nodes). */
  access?: NodeAccess;
  reporter?: Reporter;
}

export interface NodeStatus {
  node: string;
  role: 'server' | 'agent';
  /** The live generation on the export root (0: never deployed by netroot). */
  deployed: number;
  /** The generation it booted; undefined where it does not answer or its history does not say. */
  booted?: number;
  /** Undefined where the node does not answer: what it booted is not known. */
  rebootPending?: boolean;
  answered: boolean;
  /** Why it does not answer. */
  error?: string;
  /** systemd's is-system-running. */
  system?: string;
  /** The mariadb unit, and Galera's state, component, size and position (wsrep_last_committed). */
  mariadb?: string;
  galera?: NodeReading['galera'];
  keepalived?: string;
  holdsVip: boolean;
  /** k3s's unit (k3s on servers, k3s-agent on agents): active once k3s said it is ready. */
  k3s?: string;
}

export interface StatusResult {
  cluster: string;
  target: string;
  vip: string;
  /** The nodes with the VIP on an interface: exactly one server when healthy. */
  vipHolders: string[];
  nodes: NodeStatus[];
}

interface Opened {
  nodes: ClusterNode[];
  shape: ClusterShape;
  vip: string;
  cluster: string;
  target: Target;
  root: string;
  access: NodeAccess;
  bounds: ReturnType<typeof rolloutBounds>;
}

async function open(options: OperateOptions): Promise<Opened> {
  const { cluster, profile } = await loadProfile(options.profile, options);
  const spec = parseTarget(options.to, options.cwd ?? process.cwd());
  const target = openTarget(spec, options.ssh);
  return {
    nodes: cluster.nodes,
    shape: { servers: cluster.servers.map((n) => n.name), agents: cluster.agents.map((n) => n.name) },
    vip: profile.network.vip,
    cluster: cluster.name,
    target,
    root: spec.dir,
    access:
      options.access ??
      sshAccess({
        user: profile.ssh.user,
        ...(options.nodeSsh ? { ssh: options.nodeSsh } : {}),
        ...(options.rebootCommand ? { rebootCommand: options.rebootCommand } : {}),
      }),
    bounds: rolloutBounds(profile, cluster.servers.length),
  };
}

/** Every node's live generation and its commits, in one round trip to the export root. */
async function readDeployed(o: Opened): Promise<Map<string, { deployed: number; history: Commit[] }>> {
  const out = new Map<string, { deployed: number; history: Commit[] }>();
  for (const [name, logs] of await readCommitLogs(
    o.target,
    `${o.root}/${META}/nodes`,
    o.nodes.map((n) => n.name),
  ))
    out.set(name, { deployed: Number(logs.current) || 0, history: parseHistory(logs.history) });
  return out;
}

const readAll = (o: Opened): Promise<NodeReading[]> => Promise.all(o.nodes.map((n) => readNode(o.access, n, o.vip)));

function statusOf(o: Opened, deployed: Map<string, { deployed: number; history: Commit[] }>, readings: NodeReading[]): StatusResult {
  const nodes = o.nodes.map((node): NodeStatus => {
    const r = readings.find((x) => x.node === node.name)!;
    const d = deployed.get(node.name) ?? { deployed: 0, history: [] };
    const g = generationsOf(d.history, d.deployed, r.answered ? r.bootedAt : undefined);
    const k3s = r.units[k3sUnit(o.shape, node.name)];
    return {
      node: node.name,
      role: node.isServer ? 'server' : 'agent',
      deployed: g.deployed,
      ...(g.booted !== undefined && r.answered ? { booted: g.booted } : {}),
      ...(r.answered ? { rebootPending: g.rebootPending } : {}),
      answered: r.answered,
      ...(r.error ? { error: r.error } : {}),
      ...(r.system ? { system: r.system } : {}),
      ...(node.isServer && r.units.mariadb ? { mariadb: r.units.mariadb } : {}),
      ...(r.galera ? { galera: r.galera } : {}),
      ...(node.isServer && r.units.keepalived ? { keepalived: r.units.keepalived } : {}),
      holdsVip: r.holdsVip,
      ...(k3s ? { k3s } : {}),
    };
  });
  return {
    cluster: o.cluster,
    target: o.target.shown,
    vip: o.vip,
    vipHolders: nodes.filter((n) => n.holdsVip).map((n) => n.node),
    nodes,
  };
}

/** One row a node: generations deployed and booted, reboot pending, Galera, keepalived and the VIP, k3s. */
export async function status(options: OperateOptions): Promise<StatusResult> {
  const o = await open(options);
  try {
    const [deployed, readings] = await Promise.all([readDeployed(o), readAll(o)]);
    return statusOf(o, deployed, readings);
  } finally {
    await o.target.close();
  }
}

export interface RolloutOptions extends OperateOptions {
  /** Print the order; reboot nothing. */
  dryRun?: boolean;
  /** Instead of the profile's bounds: how long to wait for each node to come back healthy. */
  waitSeconds?: number;
  /** Between two readings while waiting (default 3000). */
  pollMs?: number;
}

export interface RolloutResult {
  cluster: string;
  /** The nodes with a reboot pending, in the order rollout reboots them. */
  order: string[];
  /** Rebooted and back healthy, with the seconds each took. */
  rebooted: { node: string; seconds: number }[];
  dryRun: boolean;
  /** The cluster as it was left. */
  status: StatusResult;
}

const nowSeconds = (): number => Date.now() / 1000;

/** Reboots the nodes whose deploy needs it, one at a time, servers first; stops at the first that does not come back healthy. */
export async function rollout(options: RolloutOptions): Promise<RolloutResult> {
  const reporter = options.reporter ?? silentReporter;
  const o = await open(options);
  try {
    const deployed = await readDeployed(o);
    let readings = await readAll(o);
    const before = statusOf(o, deployed, readings);
    const unknown = before.nodes.filter((n) => n.answered && n.booted === undefined && n.deployed > 0 && !n.rebootPending);
    if (unknown.length)
      reporter.info(`${unknown.map((n) => n.node).join(', ')}: the export root's history does not say what they booted; not rebooted`);
    // A node that does not answer may or may not run what was deployed: no order is known without it.
    const silent = before.nodes.filter((n) => !n.answered);
    if (silent.length)
      throw new RolloutStoppedError(
        `rollout cannot tell which nodes need a reboot: ${silent.map((n) => `${n.node} does not answer (${n.error ?? 'no reply'})`).join('; ')}. Nothing was rebooted; build-images status shows every node.`,
        silent[0]!.node,
        silent.map((n) => `${n.node} does not answer${n.error ? ` (${n.error})` : ''}`),
      );
    const order = rolloutOrder(
      o.shape,
      before.nodes.filter((n) => n.rebootPending).map((n) => n.node),
    );
    if (options.dryRun) return { cluster: o.cluster, order, rebooted: [], dryRun: true, status: before };
    const state: RolloutState = { shape: o.shape, queue: [...order], readings, now: nowSeconds() };
    const rebooted: RolloutResult['rebooted'] = [];
    let step = order.length ? reporter.step('checking the cluster before the first reboot') : { finish: () => undefined };
    for (;;) {
      const next = decideRollout(state);
      if (next.action === 'wait') {
        await new Promise((r) => setTimeout(r, options.pollMs ?? 3_000));
        readings = await readAll(o);
        Object.assign(state, { readings, now: nowSeconds() });
        continue;
      }
      step.finish();
      if (state.waiting && next.action !== 'stop')
        rebooted.push({ node: state.waiting.node, seconds: Math.round(nowSeconds() - state.waiting.rebootedAt) });
      if (next.action === 'done') {
        const after = statusOf(o, await readDeployed(o), readings);
        return { cluster: o.cluster, order, rebooted, dryRun: false, status: after };
      }
      if (next.action === 'stop') {
        const left = state.queue.filter((n) => n !== next.node);
        const done = rebooted.length ? `; rebooted and healthy before it: ${rebooted.map((r) => r.node).join(', ')}` : '';
        const rest = next.rebooted ? left : [next.node, ...left];
        throw new RolloutStoppedError(
          `rollout stopped at ${next.node}: ${next.rebooted ? `it did not come back healthy${state.now >= state.waiting!.deadline ? ` within ${Math.round(state.waiting!.deadline - state.waiting!.rebootedAt)} s` : ''}` : 'the cluster is not healthy, so it was not rebooted'}:\n${next.problems.map((p) => `  ${p}`).join('\n')}\n` +
            `${rest.length ? `not rebooted: ${rest.join(', ')} (left alone; run rollout again once the cluster is healthy)` : 'no node is left to reboot'}${done}`,
          next.node,
          next.problems,
        );
      }
      const node = o.nodes.find((n) => n.name === next.node)!;
      const wait = options.waitSeconds ?? (node.isServer ? o.bounds.serverSeconds : o.bounds.agentSeconds);
      const rebootedAt = nowSeconds();
      state.queue = state.queue.filter((n) => n !== node.name);
      state.waiting = { node: node.name, rebootedAt, deadline: rebootedAt + wait };
      reporter.step(`rebooting ${node.name}`).finish();
      await o.access.reboot(node);
      step = reporter.step(`waiting up to ${wait} s for ${node.name} to come back healthy`);
      // Never judged by readings from before the reboot: a node read then says it booted earlier, but not by much.
      readings = await readAll(o);
      Object.assign(state, { readings, now: nowSeconds() });
    }
  } finally {
    await o.target.close();
  }
}
