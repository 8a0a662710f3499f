/** What `plan`, `deploy` and `rollback` print: per node what changes and whether it needs a reboot, then the boot server's files. */
import type { DeployPlan, DeployResult, RollbackResult } from './options.js';
import type { NodeChanges } from './plan.js';
import type { RolloutResult, StatusResult } from './rollout.js';

function list(sign: string, paths: string[], limit: number): string[] {
  const shown = paths.slice(0, limit).map((p) => `    ${sign} /${p}`);
  if (paths.length > limit) shown.push(`    ${sign} … and ${paths.length - limit} more (--json lists them all)`);
  return shown;
}

function nodeSummary(n: NodeChanges): string {
  const counts = `${n.added.length} added, ${n.changed.length} changed, ${n.removed.length} removed`;
  return `${n.node}: ${counts}${n.seeded.length ? `, ${n.seeded.length} state path(s) seeded` : ''}; ${n.reboot ? `needs a reboot (${n.reboot})` : 'unchanged, no reboot'}`;
}

export function formatNodes(nodes: NodeChanges[], limit: number): string[] {
  const out: string[] = [];
  for (const n of nodes) {
    out.push(nodeSummary(n));
    if (limit > 0) {
      out.push(...list('+', n.added, limit), ...list('~', n.changed, limit), ...list('-', n.removed, limit));
      out.push(...n.seeded.map((s) => `    = /${s} (node state: seeded from the image, once)`));
      out.push(...n.kept.map((s) => `    = /${s} (node state: kept)`));
    }
  }
  return out;
}

export function formatPlan(plan: DeployPlan, limit = 50): string {
  const out = [`${plan.cluster} → ${plan.target} (build ${plan.build.dir}${plan.build.builtAt ? ` of ${plan.build.builtAt}` : ''})`];
  out.push(...plan.notes.map((n) => `note: ${n}`));
  out.push(...formatNodes(plan.nodes, limit));
  for (const b of plan.boot) out.push(`${b.what} ${b.path}: ${b.status}`);
  return out.join('\n');
}

export function formatDeploy(result: DeployResult): string {
  const out = [formatPlan(result, 0)];
  if (result.rebuilt) out.push(`rebuilt ${result.build.dir} first: ${result.rebuilt.join('; ')}`);
  out.push(
    result.deployed.length
      ? `deployed ${result.deployed.join(', ')}; the previous generation is kept (build-images rollback)`
      : 'every node was already up to date',
  );
  if (result.exportfs === 'ran') out.push('exportfs -ra: done');
  if (result.boot.some((b) => b.what === 'dnsmasq' && b.status !== 'unchanged'))
    out.push('dnsmasq reads its files at start: restart it (systemctl restart dnsmasq)');
  if (result.boot.some((b) => b.what === 'ganesha' && b.status !== 'unchanged'))
    out.push('nfs-ganesha: %include the file from ganesha.conf and reload it');
  const reboot = result.nodes.filter((n) => n.reboot).map((n) => n.node);
  if (reboot.length)
    out.push(
      `${reboot.join(', ')} must reboot to run what was deployed: build-images rollout reboots them one at a time, servers first, each back healthy before the next`,
    );
  return out.join('\n');
}

export function formatRollback(result: RollbackResult): string {
  const { undid } = result;
  const out = [`undid the ${undid.kind} of ${undid.at} on ${result.target}, which had changed ${undid.nodes.join(', ') || 'no node'}`];
  out.push(...formatNodes(result.nodes, 0));
  if (result.untouched.length)
    out.push(
      `${result.untouched.join(', ')}: not changed by that ${undid.kind}, left as ${result.untouched.length === 1 ? 'it is' : 'they are'}`,
    );
  out.push(...result.boot.map((b) => `${b.what ?? 'boot server file'} ${b.path}: ${b.status === 'restored' ? 'put back' : 'removed'}`));
  if (result.exportfs === 'ran') out.push('exportfs -ra: done');
  if (result.boot.some((b) => b.what === 'dnsmasq')) out.push('dnsmasq reads its files at start: restart it (systemctl restart dnsmasq)');
  const reboot = result.nodes.filter((n) => n.reboot).map((n) => n.node);
  out.push(
    reboot.length
      ? `${reboot.join(', ')} must reboot to run what was put back: build-images rollout reboots them one at a time`
      : 'no node needs a reboot',
    'a second rollback redoes what this one undid',
  );
  return out.join('\n');
}

/** `status`: one row a node, padded into columns; a node that does not answer says so in its row. */
export function formatStatus(s: StatusResult): string {
  const header = ['NODE', 'ROLE', 'DEPLOYED', 'BOOTED', 'REBOOT', 'MARIADB/GALERA', 'POSITION', 'KEEPALIVED', 'VIP', 'K3S'];
  const rows = s.nodes.map((n) => {
    const head = [n.node, n.role, String(n.deployed)];
    if (!n.answered) return [...head, '?', '?', `does not answer: ${n.error ?? 'no reply'}`];
    const server = n.role === 'server';
    const galera = n.galera ? `${n.galera.state}, ${n.galera.status} ${n.galera.size}` : `${n.mariadb ?? '?'}, no answer`;
    return [
      ...head,
      n.booted === undefined ? '?' : String(n.booted),
      n.rebootPending ? 'pending' : 'no',
      server ? galera : '-',
      server ? String(n.galera?.position ?? '-') : '-',
      server ? (n.keepalived === 'active' ? (n.holdsVip ? 'MASTER' : 'BACKUP') : (n.keepalived ?? '?')) : '-',
      n.holdsVip ? 'held' : '-',
      n.k3s ?? '?',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length > i + 1).map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const holders = s.vipHolders.length === 0 ? 'no node holds it' : `held by ${s.vipHolders.join(', ')}`;
  return [`${s.cluster} on ${s.target}; VIP ${s.vip} ${holders}`, line(header), ...rows.map(line)].join('\n');
}

export function formatRollout(r: RolloutResult): string {
  if (r.order.length === 0) return `nothing to reboot: every node of ${r.cluster} runs the generation deployed to it`;
  if (r.dryRun)
    return `rollout would reboot, one at a time, waiting for each to come back healthy:\n${r.order.map((n, i) => `  ${i + 1}. ${n}`).join('\n')}`;
  return `rebooted ${r.rebooted.map((x) => `${x.node} (back healthy in ${x.seconds} s)`).join(', ')}; every node runs its deployed generation`;
}
