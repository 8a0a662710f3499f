/**
 * What a build does with each node's root filesystem, given what the previous
 * build left: a pure decision from explicit inputs, which emit/rootfs.ts only
 * carries out and build.ts reads to know whether the base must be read at all.
 *
 * - tree `move`: the node's inputs are unchanged (same key) and its previous
 *   tree is there: it is renamed into the new output, nothing is written.
 * - tree `revise`: the previous tree was made from the same base with the same
 *   privileges: it is moved and only what the overlay changed is written.
 * - tree `rebuild`: the tree is copied from the base and the overlay laid on it.
 * - artifacts `link`: unchanged inputs and every previous archive is there:
 *   hard-linked. `revise`: the previous archives have the same prefix (same
 *   base, same paths written and removed, see artifact.ts): moved, and only
 *   their tail written again (after emit has checked the prefix's digest).
 *   `pack`: written from the base's packed chunks.
 *
 * Before any of that, decideBaseReading says whether the previous build's
 * record can stand in for reading the base while the build is planned.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { OutputFormat } from './formats.js';
import { readState, recordedFacts, type BuildState } from './state.js';
import type { BaseFacts } from '../plan/context.js';

export type TreeAction = 'move' | 'revise' | 'rebuild';
export type ArtifactAction = 'link' | 'revise' | 'pack';

export interface NodeDecision {
  /** Absent when no tree is made. */
  tree?: TreeAction;
  /** Absent when no archive is made. */
  artifacts?: ArtifactAction;
  /** Every output of the node is taken from the previous build. */
  reused: boolean;
}

/** What the previous build's output holds, as found on disk. */
export interface PreviousOutput {
  state: BuildState;
  /** Nodes whose rootfs/NODE is there. */
  trees: ReadonlySet<string>;
  /** Names of the files in artifacts/. */
  artifacts: ReadonlySet<string>;
  /** The cluster-relative paths among the wanted boot files (tftp/…) that are there. */
  bootFiles: ReadonlySet<string>;
}

/** What this build wants. */
export interface Wanted {
  formats: readonly OutputFormat[];
  /** The base's (and the cluster layer's) identity, see build.ts. */
  baseIdentity: string;
  /** The board paths the boot files come from. */
  bootSources: string;
  /** The boot files (tftp/…) the nodes boot from. */
  bootFiles: readonly string[];
  /** Per node, the key of its inputs (see state.ts). */
  nodeKeys: ReadonlyMap<string, string>;
  /** Per node, the key of its archives' prefix (see state.ts); without it archives are never revised. */
  prefixKeys?: ReadonlyMap<string, string>;
  privileged: boolean;
}

export interface RebuildDecision {
  nodes: Map<string, NodeDecision>;
  /**
   * Every node and boot file comes from the previous build, so the base need
   * not be read (and its boot files are linked from the previous output).
   */
  reuseEverything: boolean;
}

/** What the previous build recorded of its base, standing in for reading it. */
export interface RecordedBase {
  arch: string;
  facts: BaseFacts;
  /** The base's newest mtime (SOURCE_DATE_EPOCH's default); absent in an older state. */
  newestMtime?: number;
}

export interface BaseReading {
  /** The previous build was made from this base and recorded every fact the plan needs of it. */
  recorded?: RecordedBase;
  /** Read the base before planning: nothing recorded stands in for it, or for the date netroot's files get. */
  readFirst: boolean;
}

/**
 * Whether the base must be read before the build is planned: only when the previous build was not made from
 * this base (`knownIdentity`, known without reading it, see build-inputs.ts), did not record what the plan needs
 * of it, or (without SOURCE_DATE_EPOCH) its newest mtime, which dates what netroot writes.
 */
export function decideBaseReading(
  previous: BuildState | undefined,
  wanted: { knownIdentity: string | undefined; explicitEpoch: number | undefined },
): BaseReading {
  // The recorded identity is the base's, then the cluster layer's (`BASE|k3s:…`).
  const sameBase =
    wanted.knownIdentity !== undefined && previous !== undefined && previous.baseIdentity.startsWith(`${wanted.knownIdentity}|`);
  const facts = sameBase ? recordedFacts(previous) : undefined;
  const recorded = facts
    ? { arch: previous!.arch, facts, ...(previous!.baseNewestMtime !== undefined ? { newestMtime: previous!.baseNewestMtime } : {}) }
    : undefined;
  const dated = wanted.explicitEpoch !== undefined || recorded?.newestMtime !== undefined;
  return { ...(recorded ? { recorded } : {}), readFirst: !(recorded && dated) };
}

export function decideRebuild(previous: PreviousOutput | undefined, wanted: Wanted): RebuildDecision {
  const tree = wanted.formats.includes('tree');
  const tar = wanted.formats.includes('tar');
  // Revising a tree is only right when it was made from the same base, with the same privileges.
  const sameBase =
    previous !== undefined && previous.state.baseIdentity === wanted.baseIdentity && previous.state.privileged === wanted.privileged;
  const nodes = new Map<string, NodeDecision>();
  for (const [name, key] of wanted.nodeKeys) {
    const prev = previous?.state.nodes[name];
    const treeThere = prev?.tree !== undefined && previous!.trees.has(name);
    const artifactsThere = prev !== undefined && prev.artifacts.length > 0 && prev.artifacts.every((a) => previous!.artifacts.has(a.name));
    const reused = prev?.key === key && (!tree || treeThere) && (!tar || artifactsThere);
    const archives = prev?.artifacts.filter((a) => /\.tar\.[a-z]+$/.test(a.name)) ?? [];
    const samePrefix =
      archives.length > 0 && archives.every((a) => a.prefix !== undefined && a.prefix.key === wanted.prefixKeys?.get(name));
    nodes.set(name, {
      ...(tree ? { tree: reused ? 'move' : sameBase && treeThere ? 'revise' : 'rebuild' } : {}),
      ...(tar ? { artifacts: reused ? 'link' : artifactsThere && samePrefix ? 'revise' : 'pack' } : {}),
      reused,
    });
  }
  const reuseEverything =
    previous !== undefined &&
    previous.state.baseIdentity === wanted.baseIdentity &&
    previous.state.bootSources === wanted.bootSources &&
    wanted.formats.every((f) => previous.state.formats.includes(f)) &&
    wanted.bootFiles.every((f) => previous.state.bootFiles.includes(f) && previous.bootFiles.has(f)) &&
    [...nodes.values()].every((n) => n.reused);
  return { nodes, reuseEverything };
}

/** What the previous build of the cluster in `clusterDir` left there, for decideRebuild. */
export async function readPreviousOutput(
  clusterDir: string,
  nodes: readonly string[],
  bootFiles: readonly string[],
): Promise<PreviousOutput | undefined> {
  const state = await readState(clusterDir);
  if (!state) return undefined;
  const there = (relative: string): boolean => existsSync(path.join(clusterDir, relative));
  const artifacts = nodes.flatMap((n) => state.nodes[n]?.artifacts ?? []).map((a) => a.name);
  return {
    state,
    trees: new Set(nodes.filter((n) => there(path.join('rootfs', n)))),
    artifacts: new Set(artifacts.filter((a) => there(path.join('artifacts', a)))),
    bootFiles: new Set(bootFiles.filter(there)),
  };
}
