/**
 * Per-node root filesystems: base + overlay as a tree (rootfs/NODE/) and as a
 * reproducible tar artifact (artifacts/NODE.tar.gz, .tar.zst, SHA256SUMS).
 * Nodes whose inputs did not change since the previous build are taken from
 * it (trees moved, artifacts hard-linked: no copy); the others are packed from the cached chunks of
 * the base, so only what changed is re-packed.
 */
import { existsSync } from 'node:fs';
import { link, mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BuildPlan, PlannedFile } from '../plan/plan.js';
import type { BaseIndex } from '../base/open.js';
import { sha256sums, type ArtifactNode, type Format } from './artifact.js';
import { packArtifacts } from './archives.js';
import { overlayRecord, reviseNodeTree, writeNodeTree } from './export-tree.js';
import { baseDigests, recordTreeDigests } from './tree-digests.js';
import type { Manifest } from '../entries/manifest.js';
import { TreeJournal } from '../entries/place.js';
import { InternalError } from '../errors.js';
import type { Reporter } from '../progress.js';
import type { ArtifactRecord, BuildState } from './state.js';
import { Rollback } from './staging.js';
import { throwIfStopped } from '../stop.js';
import type { NodeDecision } from './rebuild.js';
import type { OutputFormat } from './formats.js';
import type { BaseFacts } from '../plan/context.js';

export interface RootfsInputs {
  formats: OutputFormat[];
  /** The board paths the boot files come from (see build.ts). */
  bootSources: string;
  /** Archive compressions (default: gz, plus zst where the zstd program is installed). */
  compress?: Format[];
  sourceDateEpoch: number;
  /** The base's newest mtime (SOURCE_DATE_EPOCH's default), kept so a rebuild from the same base need not read it. */
  baseNewestMtime?: number;
  cacheDir: string;
  baseIdentity: string;
  arch: string;
  /** What rendered files depend on in the base (its MariaDB version, resolver, NTP client). */
  facts: BaseFacts;
  /** Running as root: trees get owners, devices and capabilities (decided once, by the build). */
  privileged: boolean;
  /** Per node, the key of its inputs (see state.ts). */
  nodeKeys: Map<string, string>;
  /** Per node, the key of its archives' prefix (see state.ts), recorded so a later build can revise them. */
  prefixKeys: Map<string, string>;
  /** Per node, whether its outputs are moved, revised, linked or made anew (see rebuild.ts). */
  decisions: ReadonlyMap<string, NodeDecision>;
  /** The base; absent when every node is reused from the previous build. */
  base?: BaseIndex;
  /** The base with the files every node gets the same (the k3s binary), for artifacts: packed once. */
  layered?: BaseIndex;
  /** The same files with their bytes, laid over each tree (which is copied from the base's directory). */
  layerFiles: PlannedFile[];
  /** The previous build of this cluster, when its output is still there. */
  previous?: { dir: string; state: BuildState };
  /** Where the output lands: a deploy of it finds the digests of the trees copied from the base under this name. */
  clusterDir: string;
}

export interface RootfsResult {
  trees: string[];
  artifacts: ArtifactRecord[];
  reused: string[];
  rebuilt: string[];
  state: Pick<BuildState, 'nodes'>;
}

/**
 * An unchanged node's tree is moved from the previous output, not copied or
 * hard-linked: a rename costs the same for any base, where linking 50 000
 * entries costs seconds (and deleting the old links as much again). If the
 * build fails, the rollback moves it back, so the previous output is whole.
 */
async function moveTree(from: string, to: string, rollback: Rollback): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  // Stopped (Ctrl-C): nothing more is taken from the previous output.
  throwIfStopped();
  await rename(from, to);
  rollback.add(async () => {
    if (!existsSync(from)) await rename(to, from);
  });
}

/** One build's root filesystems: where they go, what they are made from, and what undoes them. */
interface RootfsJob {
  staging: string;
  plan: BuildPlan;
  inputs: RootfsInputs;
  reporter: Reporter;
  rollback: Rollback;
}

export async function emitRootfs(
  staging: string,
  plan: BuildPlan,
  inputs: RootfsInputs,
  reporter: Reporter,
  rollback: Rollback = new Rollback(),
): Promise<RootfsResult> {
  const job: RootfsJob = { staging, plan, inputs, reporter, rollback };
  const result: RootfsResult = { trees: [], artifacts: [], reused: [], rebuilt: [], state: { nodes: {} } };
  const trees = inputs.formats.includes('tree') ? await writeTrees(job, result) : {};
  if (inputs.formats.includes('tar')) await writeArtifacts(job, result);
  for (const { node } of plan.nodes) {
    result.state.nodes[node.name] ??= { key: inputs.nodeKeys.get(node.name)!, artifacts: [] };
    if (trees[node.name]) result.state.nodes[node.name]!.tree = trees[node.name]!;
    (decision(inputs, node.name).reused ? result.reused : result.rebuilt).push(node.name);
  }
  return result;
}

function needBase(inputs: RootfsInputs, what: 'copy' | 'pack'): BaseIndex {
  if (!inputs.base || !inputs.layered) throw new InternalError(`the base is needed to ${what} but was not read`);
  return what === 'pack' ? inputs.layered : inputs.base;
}

function decision(inputs: RootfsInputs, node: string): NodeDecision {
  const decided = inputs.decisions.get(node);
  if (!decided) throw new InternalError(`no rebuild decision for node ${node}`);
  return decided;
}

/** What the previous build made of a node the decision takes from it. */
function previousNode(inputs: RootfsInputs, node: string): { dir: string; record: BuildState['nodes'][string] } {
  const record = inputs.previous?.state.nodes[node];
  if (!inputs.previous || !record) throw new InternalError(`node ${node} is taken from a previous build that has no record of it`);
  return { dir: inputs.previous.dir, record };
}

function previousTree(inputs: RootfsInputs, node: string): { dir: string; overlay: string[]; removed: string[] } {
  const { dir, record } = previousNode(inputs, node);
  if (!record.tree) throw new InternalError(`the tree of node ${node} is taken from a previous build that has no record of it`);
  return { dir: path.join(dir, 'rootfs', node), ...record.tree };
}

type TreeRecords = Record<string, { overlay: string[]; removed: string[] }>;

/** rootfs/NODE for every node: moved from the previous build, revised in place, or copied from the base. */
async function writeTrees({ staging, plan, inputs, reporter, rollback }: RootfsJob, result: RootfsResult): Promise<TreeRecords> {
  const trees: TreeRecords = {};
  let baseManifest: Manifest | undefined;
  const step = reporter.step('writing node trees', plan.nodes.length, 'nodes');
  for (const [i, { node, files, removes }] of plan.nodes.entries()) {
    throwIfStopped();
    const dest = path.join(staging, 'rootfs', node.name);
    const action = decision(inputs, node.name).tree;
    if (action === 'move') {
      const { dir, ...record } = previousTree(inputs, node.name);
      await moveTree(dir, dest, rollback);
      trees[node.name] = record;
    } else {
      const all = [...inputs.layerFiles, ...files];
      const options = { sourceDateEpoch: inputs.sourceDateEpoch, removes, privileged: inputs.privileged };
      let written;
      if (action === 'revise') {
        // Same base as last time: the previous tree is moved here and only what this node's overlay
        // changed is written; the journal keeps what it replaced, so a failed build can put it back.
        const prev = previousTree(inputs, node.name);
        await moveTree(prev.dir, dest, rollback);
        const journal = new TreeJournal(path.join(inputs.previous!.dir, `.netroot-undo-${node.name}`));
        rollback.add(async () => journal.undo());
        written = await reviseNodeTree(
          needBase(inputs, 'copy'),
          all,
          dest,
          { dir: dest, overlay: prev.overlay, removes: prev.removed },
          { ...options, journal },
        );
      } else {
        const base = needBase(inputs, 'copy');
        written = await writeNodeTree(base, all, dest, options);
        baseManifest ??= await baseDigests(base, inputs.cacheDir);
        await recordTreeDigests(dest, all, baseManifest, inputs.clusterDir, inputs.cacheDir, node.name);
      }
      trees[node.name] = { overlay: all.map(overlayRecord), removed: written.removed ?? [] };
    }
    result.trees.push(dest);
    step.update(i + 1);
  }
  step.finish(`${plan.nodes.length} trees`);
  return trees;
}

/** artifacts/: each node's archives linked from the previous build, or packed (revised in place where they can be), and SHA256SUMS. */
async function writeArtifacts({ staging, plan, inputs, reporter, rollback }: RootfsJob, result: RootfsResult): Promise<void> {
  const artifactsDir = path.join(staging, 'artifacts');
  const step = reporter.step('packing node artifacts', plan.nodes.length, 'nodes');
  let revised = 0;
  await mkdir(artifactsDir, { recursive: true });
  const records = new Map<string, ArtifactRecord[]>();
  const packing: ArtifactNode[] = [];
  for (const { node, files, removes } of plan.nodes) {
    const action = decision(inputs, node.name).artifacts;
    if (action === 'link') {
      const linked = previousNode(inputs, node.name).record.artifacts;
      for (const r of linked) await link(path.join(inputs.previous!.dir, 'artifacts', r.name), path.join(artifactsDir, r.name));
      records.set(node.name, linked);
      step.update(records.size);
      continue;
    }
    const previous =
      action === 'revise'
        ? { dir: path.join(inputs.previous!.dir, 'artifacts'), files: previousNode(inputs, node.name).record.artifacts }
        : undefined;
    packing.push({ name: node.name, files, removes, ...(previous ? { previous } : {}) });
  }
  if (packing.length) {
    const key = (node: string) => inputs.prefixKeys.get(node)!;
    const written = await packArtifacts(needBase(inputs, 'pack'), packing, artifactsDir, {
      identity: inputs.baseIdentity,
      cacheDir: inputs.cacheDir,
      packing: { sourceDateEpoch: inputs.sourceDateEpoch, ...(inputs.compress ? { formats: inputs.compress } : {}) },
      reporter,
      written: (artifact) => {
        // The prefix is recorded with the key of what it was made from, so a later build knows it can keep it.
        const files = artifact.files.map(({ prefix, ...f }) => (prefix ? { ...f, prefix: { ...prefix, key: key(artifact.node) } } : f));
        records.set(artifact.node, files);
        step.update(records.size);
      },
      rollback,
    });
    revised = written.filter((a) => a.revised).length;
  }
  for (const { node } of plan.nodes) {
    const mine = records.get(node.name)!;
    result.artifacts.push(...mine);
    result.state.nodes[node.name] = { key: inputs.nodeKeys.get(node.name)!, artifacts: mine };
  }
  await writeFile(path.join(artifactsDir, 'SHA256SUMS'), sha256sums(result.artifacts), { mode: 0o644 });
  step.finish(`${plan.nodes.length} artifacts${revised ? `, ${revised} revised in place` : ''}`);
}
