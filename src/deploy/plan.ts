/**
 * The pure half of a deploy: from the new build's manifests and what the
 * target recorded at its last deploy, what each node gains, changes and loses,
 * which node state is kept or seeded, and what the boot server's files become.
 * Nothing here reads or writes; apply.ts carries the result out and `plan`
 * prints it.
 */
import { sameEntry, underAny, type Manifest, type ManifestEntry } from '../entries/manifest.js';
import type { BootFileKind } from '../plan/boot-server-files.js';

/**
 * What the nodes write into their own roots and a deploy must never overwrite
 * or delete: the Galera datadir, k3s's state and node password, Longhorn's
 * replicas, the local-storage image, logs. Seeded from the image once.
 */
export const STATE_PATHS = [
  'var/lib/mysql',
  'var/lib/rancher',
  'etc/rancher/node',
  'var/lib/longhorn',
  'var/lib/netroot',
  'var/log',
] as const;

/** The state paths plus the profile's `persist:` list (absolute paths), relative and without duplicates. */
export function statePaths(persist: readonly string[] = []): string[] {
  const all = [...STATE_PATHS, ...persist.map((p) => p.replace(/^\/+|\/+$/g, ''))].filter(Boolean);
  // A path below another state path is already kept with it.
  return [...new Set(all)].filter((p, _, list) => !list.some((q) => q !== p && p.startsWith(`${q}/`))).sort();
}

/** What the target holds for one node, as read before a deploy. */
export interface NodeTarget {
  /** The live generation (0: never deployed by netroot). */
  generation: number;
  /** Its manifest, as recorded when it was deployed. */
  current?: Manifest;
  /** The generation before it, for rollback. */
  previous?: Manifest;
  /** A deploy that was cut short: the generation it was writing and its manifest. */
  pending?: { generation: number; manifest: Manifest };
  /** State paths that exist in the node's live tree. */
  stateRoots: string[];
  /**
   * Without a recorded manifest: what the live tree already holds of the new build's paths, read
   * from the tree itself (a tree another tool copied). Files are compared by content, not listed as changed.
   */
  existing?: Manifest;
}

export interface NodeChanges {
  node: string;
  /** The generation the deploy makes. */
  generation: number;
  added: string[];
  changed: string[];
  removed: string[];
  /** Node state already on the target: left as it is. */
  kept: string[];
  /** Node state the target lacks: copied from the image, once. */
  seeded: string[];
  /** Written by a deploy that was cut short, in neither the live nor the new generation: removed. */
  orphans: string[];
  /** Why the node needs a reboot to run what was deployed; undefined when nothing changed. */
  reboot?: string;
}

export function diffNode(
  node: string,
  source: Manifest,
  sourceState: string[],
  target: NodeTarget,
  state: string[],
  bootChanged: boolean,
): NodeChanges {
  const current = target.current ?? {};
  const existing = target.existing ?? {};
  const inState = underAny(state);
  const added: string[] = [];
  const changed: string[] = [];
  for (const [p, entry] of Object.entries(source)) {
    if (inState(p)) continue;
    const was = current[p];
    if (!was) {
      const there = existing[p];
      if (!there) added.push(p);
      else if (!sameEntry(there, entry)) changed.push(p);
    } else if (!sameEntry(was, entry)) changed.push(p);
  }
  const removed = Object.keys(current).filter((p) => !source[p] && !inState(p));
  const pending = target.pending?.manifest ?? {};
  const orphans = Object.keys(pending).filter((p) => !current[p] && !source[p] && !inState(p));
  const kept = state.filter((s) => target.stateRoots.includes(s));
  const seeded = state.filter((s) => !target.stateRoots.includes(s) && sourceState.includes(s));
  const count = added.length + changed.length + removed.length + seeded.length;
  const reasons = [
    ...(count ? [`${count} path${count === 1 ? '' : 's'} in its root changed`] : []),
    ...(bootChanged ? ['its PXE or boot files changed'] : []),
  ];
  return {
    node,
    // A deploy that was cut short is finished under its own generation number.
    generation: target.pending ? target.pending.generation : target.generation + 1,
    added,
    changed,
    removed,
    kept,
    seeded,
    orphans,
    ...(reasons.length ? { reboot: reasons.join('; ') } : {}),
  };
}

/** A rollback: the generation before the live one, from the files the live one replaced (`undo`). */
export interface NodeRollback extends NodeChanges {
  /** Paths to copy back from the kept files (and directories to make). */
  restore: string[];
  /** Directories to make, and paths whose content is the same but whose mode or owner changed: set in place. */
  attrs: { path: string; t: ManifestEntry['t']; m: number; u: number; g: number }[];
}

export function planRollback(
  node: string,
  target: NodeTarget,
  undo: readonly string[],
  state: string[],
): NodeRollback | { node: string; problem: string } {
  if (!target.current || target.generation === 0) return { node, problem: 'it was never deployed by netroot' };
  if (target.pending)
    return { node, problem: `a deploy of generation ${target.pending.generation} was cut short; run deploy again to finish it first` };
  if (!target.previous)
    return { node, problem: `generation ${target.generation} is the first one netroot deployed there; there is nothing before it` };
  const { current, previous } = target;
  const inState = underAny(state);
  const kept = new Set(undo);
  const restore: string[] = [];
  const attrs: NodeRollback['attrs'] = [];
  const missing: string[] = [];
  for (const [p, entry] of Object.entries(previous)) {
    if (inState(p)) continue;
    const now = current[p];
    if (now && sameEntry(now, entry)) continue;
    const attr = { path: p, t: entry.t, m: entry.m, u: entry.u, g: entry.g };
    if (entry.t === 'd' || (now && now.t === entry.t && now.h === entry.h && now.l === entry.l && now.r === entry.r)) attrs.push(attr);
    else if (kept.has(p)) restore.push(p);
    else missing.push(p);
  }
  if (missing.length)
    return {
      node,
      problem: `the previous generation's ${missing
        .slice(0, 3)
        .map((p) => `/${p}`)
        .join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''} were not kept`,
    };
  const removed = Object.keys(current).filter((p) => !previous[p] && !inState(p));
  const count = restore.length + attrs.length + removed.length;
  return {
    node,
    generation: target.generation + 1,
    added: [...restore, ...attrs.map((a) => a.path)].filter((p) => !current[p]),
    changed: [...restore, ...attrs.map((a) => a.path)].filter((p) => current[p]),
    removed,
    kept: state.filter((s) => target.stateRoots.includes(s)),
    seeded: [],
    orphans: [],
    restore,
    attrs,
    ...(count ? { reboot: `${count} path${count === 1 ? '' : 's'} in its root changed` } : {}),
  };
}

/**
 * One deploy or rollback, as the target records it: the nodes it changed, each
 * from the generation it found to the one it made. Its number counts the
 * cluster's operations on the export root; the boot server files it replaced
 * are kept under that number.
 */
export interface Operation {
  kind: 'deploy' | 'rollback';
  op: number;
  at: string;
  nodes: Record<string, { from: number; to: number }>;
}

const isGeneration = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0;

/** An operation as read back from the target, or undefined when `value` is not one. */
export function parseOperation(value: unknown): Operation | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const o = value as Partial<Operation>;
  if ((o.kind !== 'deploy' && o.kind !== 'rollback') || !isGeneration(o.op) || o.op < 1 || typeof o.at !== 'string') return undefined;
  if (typeof o.nodes !== 'object' || o.nodes === null || Array.isArray(o.nodes)) return undefined;
  for (const g of Object.values(o.nodes)) if (!isGeneration(g?.from) || !isGeneration(g?.to)) return undefined;
  return { kind: o.kind, op: o.op, at: o.at, nodes: o.nodes };
}

export const NOTHING_RECORDED = 'no deploy is recorded there';

export interface RollbackInput {
  /** The last operation that finished (from the cluster's record). */
  last?: Operation;
  /** A deploy or rollback that was cut short (its journal). */
  unfinished?: Operation;
  /** What the target holds for each node these operations name, with the files its live generation kept in undo/. */
  nodes: Record<string, NodeTarget & { undo: string[] }>;
  state: string[];
  now: string;
}

export type RollbackDecision =
  | { action: 'nothing'; reason: string }
  | { action: 'refuse'; problems: string[] }
  | {
      action: 'undo';
      /** The operation undone. */
      undoing: Operation;
      /** The rollback itself, an operation like a deploy (so a second rollback redoes what this one undid). */
      operation: Operation;
      /** The nodes still to roll back (a rollback cut short left the others done). */
      nodes: NodeRollback[];
      resumed: boolean;
    };

/**
 * What a rollback does: undo exactly the last operation, on the nodes it
 * changed and no others; finish a rollback that was cut short; refuse while a
 * deploy is unfinished, or when any node cannot go back (all nodes or none).
 */
export function decideRollback(input: RollbackInput): RollbackDecision {
  const { last, unfinished, state } = input;
  if (unfinished?.kind === 'deploy')
    return { action: 'refuse', problems: ['a deploy was cut short here; run deploy again to finish it, then roll back'] };
  if (!last) return { action: 'nothing', reason: NOTHING_RECORDED };
  const problems: string[] = [];
  const nodes: NodeRollback[] = [];
  const made: Operation['nodes'] = {};
  for (const [node, { to }] of Object.entries(unfinished?.nodes ?? last.nodes)) {
    const t = input.nodes[node] ?? { generation: 0, stateRoots: [], undo: [] };
    // This rollback, resumed: its generation for the node is `to`; a node already there is done.
    if (unfinished) {
      if (t.generation >= to) continue;
    } else if (t.generation !== to) {
      problems.push(`${node}: the last ${last.kind} left it at generation ${to}, but it is at ${t.generation} now; deploy again instead`);
      continue;
    }
    const { pending, ...settled } = t;
    const r = planRollback(node, unfinished && pending?.generation === to ? settled : t, t.undo, state);
    if ('problem' in r) problems.push(`${node}: ${r.problem}`);
    else {
      nodes.push(r);
      made[node] = { from: t.generation, to: r.generation };
    }
  }
  if (problems.length) return { action: 'refuse', problems };
  const operation = unfinished ?? { kind: 'rollback' as const, op: last.op + 1, at: input.now, nodes: made };
  return { action: 'undo', undoing: last, operation, nodes, resumed: unfinished !== undefined };
}

/** One file the boot server reads: TFTP, the exports, dnsmasq. */
export interface BootFile {
  what: BootFileKind;
  /** Absolute path on the target host. */
  path: string;
  sha256: string;
}

export interface BootFileChange extends Omit<BootFile, 'sha256'> {
  status: 'added' | 'changed' | 'removed' | 'unchanged';
}

/**
 * Each desired file against the digest found on the target; files an earlier
 * deploy wrote that are no longer wanted are removed (never any other file).
 */
export function diffBootFiles(
  desired: BootFile[],
  found: Record<string, string | undefined>,
  deployedBefore: BootFile[],
): BootFileChange[] {
  const wanted = new Set(desired.map((f) => f.path));
  return [
    ...desired.map((f): BootFileChange => ({
      what: f.what,
      path: f.path,
      status: found[f.path] === undefined ? 'added' : found[f.path] === f.sha256 ? 'unchanged' : 'changed',
    })),
    ...deployedBefore
      .filter((f) => !wanted.has(f.path) && found[f.path] !== undefined)
      .map((f): BootFileChange => ({ what: f.what, path: f.path, status: 'removed' })),
  ];
}
