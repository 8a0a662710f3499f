/**
 * The pure half of `status` and `rollout`: from the export root's history of
 * each node (which generation was committed when, and whether it needs a
 * reboot) and what each node says of itself (when it booted, Galera, the VIP,
 * its units), which generation a node booted, which reboot is pending, whether
 * the cluster is healthy, and what a rollout does next. Nothing here reads,
 * waits or reboots; rollout.ts does, and asks decideRollout at every turn.
 */

/** One commit of a node's generation on the export root (ROOT/.netroot/nodes/NODE/history). */
export interface Commit {
  generation: number;
  /** When it was committed: seconds since the epoch, on the export root's host. */
  at: number;
  /** Whether the node must reboot to run it (a deploy that changed nothing in its root says no). */
  reboot: boolean;
}

/** `G EPOCH reboot|same` lines; anything else is skipped (a history cut short by a power cut, say). */
export function parseHistory(text: string): Commit[] {
  const commits: Commit[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\d+) (reboot|same)$/.exec(line.trim());
    if (m) commits.push({ generation: Number(m[1]), at: Number(m[2]), reboot: m[3] === 'reboot' });
  }
  return commits;
}

export interface NodeGenerations {
  /** The live generation on the export root (0: never deployed by netroot). */
  deployed: number;
  /** The generation the node runs: the last one committed before it booted, or after it without a reboot. Undefined when unknown. */
  booted?: number;
  /** A generation that needs a reboot was committed after the node booted (or the boot time is unknown and one is recorded). */
  rebootPending: boolean;
}

/**
 * What a node runs, from the export root's commits of it and its boot time. Commits of
 * generations above `deployed` are ignored (a deploy cut short, or one that a rollback undid
 * and whose number the next deploy reuses: the last commit of a number is the one that counts).
 */
export function generationsOf(history: readonly Commit[], deployed: number, bootedAt: number | undefined): NodeGenerations {
  // The commits that lead to the live generation, in order: the last commit of each number, up to the live one.
  const lastOf = new Map<number, Commit>();
  for (const c of history) if (c.generation <= deployed) lastOf.set(c.generation, c);
  const chain = [...lastOf.values()].sort((a, b) => a.at - b.at || a.generation - b.generation);
  if (bootedAt === undefined) return { deployed, rebootPending: false };
  // Booted before netroot's first commit: what was there before it (generation 0); before a history that begins later: unknown.
  let booted: number | undefined = (chain.length ? chain[0]!.generation === 1 : deployed === 0) ? 0 : undefined;
  let pending = false;
  for (const c of chain) {
    if (c.at < bootedAt) booted = c.generation;
    // Committed since the boot without changing what the node runs: it runs this generation too.
    else if (!c.reboot && !pending) booted = c.generation;
    else pending = true;
  }
  return { deployed, ...(booted !== undefined ? { booted } : {}), rebootPending: pending };
}

/** What one node said of itself (the probe in health.ts), or that it did not answer. */
export interface NodeReading {
  node: string;
  answered: boolean;
  /** Why it did not answer (ssh's or the probe's last words). */
  error?: string;
  /** When its init started: seconds since the epoch. */
  bootedAt?: number;
  /** systemd's `is-system-running`. */
  system?: string;
  /** `systemctl is-active` of mariadb, keepalived, k3s and k3s-agent. */
  units: Record<string, string>;
  /** Galera's wsrep status, where MariaDB answered. */
  galera?: { state: string; status: string; size: number; position?: number; uuid?: string };
  /** The VIP is on one of its interfaces. */
  holdsVip: boolean;
}

export interface ClusterShape {
  servers: string[];
  agents: string[];
}

/** The unit that runs k3s on the node. */
export const k3sUnit = (shape: ClusterShape, node: string): string => (shape.servers.includes(node) ? 'k3s' : 'k3s-agent');

/**
 * What is wrong with the cluster now, one line a problem; empty when healthy: every server
 * Synced in one Primary component of all servers, the VIP on exactly one server (and no agent),
 * and k3s active on every node in `k3sOn` (k3s's unit is Type=notify: active once k3s said it is ready).
 */
export function clusterProblems(shape: ClusterShape, readings: readonly NodeReading[], k3sOn: readonly string[]): string[] {
  const by = new Map(readings.map((r) => [r.node, r]));
  const problems: string[] = [];
  const size = shape.servers.length;
  const uuids = new Set<string>();
  for (const name of shape.servers) {
    const r = by.get(name);
    if (!r?.answered) {
      problems.push(`${name} does not answer${r?.error ? ` (${r.error})` : ''}`);
      continue;
    }
    const g = r.galera;
    if (!g) problems.push(`${name}: MariaDB does not answer (mariadb ${r.units.mariadb ?? 'unknown'})`);
    else if (g.state !== 'Synced' || g.status !== 'Primary' || g.size !== size)
      problems.push(`${name}: Galera ${g.state}, ${g.status}, ${g.size} of ${size} servers (wanted Synced, Primary, ${size} of ${size})`);
    else if (g.uuid) uuids.add(g.uuid);
  }
  if (uuids.size > 1)
    problems.push(`the servers are in ${uuids.size} different Galera clusters (cluster state UUIDs ${[...uuids].join(', ')})`);
  const holders = readings.filter((r) => r.answered && r.holdsVip).map((r) => r.node);
  const agentHolders = holders.filter((n) => !shape.servers.includes(n));
  if (agentHolders.length)
    problems.push(`the VIP is on ${agentHolders.join(', ')}, which ${agentHolders.length === 1 ? 'is an agent' : 'are agents'}`);
  else if (holders.length === 0) problems.push('no server holds the VIP');
  else if (holders.length > 1) problems.push(`${holders.length} servers hold the VIP at once (${holders.join(', ')})`);
  for (const name of k3sOn) {
    const r = by.get(name);
    if (!r?.answered) {
      if (!shape.servers.includes(name)) problems.push(`${name} does not answer${r?.error ? ` (${r.error})` : ''}`);
      continue;
    }
    const unit = k3sUnit(shape, name);
    if (r.units[unit] !== 'active') problems.push(`${name}: ${unit} is ${r.units[unit] ?? 'unknown'}`);
  }
  return problems;
}

/**
 * Units that will not come back by waiting: `failed` (systemd gave up restarting it), or
 * `inactive` once the node's boot finished (nothing is queued to start it; a unit waiting to be
 * restarted is `activating`).
 */
export function failedUnits(shape: ClusterShape, readings: readonly NodeReading[]): string[] {
  const out: string[] = [];
  for (const r of readings) {
    if (!r.answered) continue;
    const booted = r.system === 'running' || r.system === 'degraded';
    const wanted = shape.servers.includes(r.node) ? ['mariadb', 'keepalived', 'k3s'] : ['k3s-agent'];
    for (const unit of wanted) {
      const state = r.units[unit];
      if (state === 'failed') out.push(`${r.node}: ${unit} failed`);
      else if (state === 'inactive' && booted) out.push(`${r.node}: ${unit} inactive though its boot finished (${r.system})`);
    }
  }
  return out;
}

/** The nodes to reboot, in order: the servers (profile order), then the agents; only those with a reboot pending. */
export function rolloutOrder(shape: ClusterShape, pending: readonly string[]): string[] {
  return [...shape.servers, ...shape.agents].filter((n) => pending.includes(n));
}

/** How long a rollout waits for a node to come back healthy, from the profile. */
export interface RolloutBounds {
  serverSeconds: number;
  agentSeconds: number;
}

/**
 * A board boots (PXE, kernel, NFS root) in a minute or two; a server then joins Galera and
 * receives what it missed (IST), each server more a little longer, and keepalived takes the VIP
 * back after its health check and a few adverts. An agent waits for its k3s to join.
 */
export function rolloutBounds(profile: { keepalived: { advertInterval: number; checkInterval?: number } }, servers: number): RolloutBounds {
  const vip = 2 * (profile.keepalived.checkInterval ?? 2) + 5 * profile.keepalived.advertInterval;
  return { serverSeconds: 180 + 40 * servers + vip, agentSeconds: 180 + 20 * servers };
}

/** Where a rollout is: the nodes still to reboot, and the one it rebooted last and is waiting for. */
export interface RolloutState {
  shape: ClusterShape;
  /** Still to reboot, in order (rolloutOrder). */
  queue: string[];
  /** The node rebooted last: when the reboot was asked (epoch s), and until when to wait for it. */
  waiting?: { node: string; rebootedAt: number; deadline: number };
  /** The latest reading of every node. */
  readings: NodeReading[];
  /** Seconds since the epoch. */
  now: number;
}

export type RolloutStep =
  | { action: 'reboot'; node: string }
  | { action: 'wait'; node: string; problems: string[] }
  | { action: 'done' }
  | { action: 'stop'; node: string; rebooted: boolean; problems: string[] };

/** A node counts as rebooted when its init started after the reboot was asked (the clocks may differ by this much). */
export const CLOCK_SLACK_SECONDS = 2;

/**
 * What a rollout does next. Before the first reboot the cluster must be healthy (a reboot of a
 * degraded cluster can lose Galera's quorum): otherwise it stops and reboots nothing. After a
 * reboot it waits until the node is back (booted since) and the cluster healthy with k3s active on
 * it, then reboots the next; it stops at once where a unit failed, or at the deadline.
 */
export function decideRollout(s: RolloutState): RolloutStep {
  const all = [...s.shape.servers, ...s.shape.agents];
  if (!s.waiting) {
    const next = s.queue[0];
    if (!next) return { action: 'done' };
    const problems = clusterProblems(s.shape, s.readings, all);
    return problems.length ? { action: 'stop', node: next, rebooted: false, problems } : { action: 'reboot', node: next };
  }
  const { node, rebootedAt, deadline } = s.waiting;
  const r = s.readings.find((x) => x.node === node);
  const problems: string[] = [];
  if (!r?.answered) problems.push(`${node} is not back${r?.error ? ` (${r.error})` : ''}`);
  else if (r.bootedAt === undefined) problems.push(`${node} does not say when it booted`);
  else if (r.bootedAt < rebootedAt - CLOCK_SLACK_SECONDS) problems.push(`${node} has not rebooted yet`);
  const back = problems.length === 0;
  problems.push(...clusterProblems(s.shape, s.readings, all).filter((p) => !(!back && p.startsWith(`${node} does not answer`))));
  if (problems.length === 0) {
    const next = s.queue[0];
    return next ? { action: 'reboot', node: next } : { action: 'done' };
  }
  // A failed unit is final once the node is back: systemd stopped restarting it.
  const failed = back ? failedUnits(s.shape, s.readings) : [];
  if (failed.length) return { action: 'stop', node, rebooted: true, problems: [...failed, ...problems.filter((p) => !failed.includes(p))] };
  if (s.now >= deadline) return { action: 'stop', node, rebooted: true, problems };
  return { action: 'wait', node, problems };
}
