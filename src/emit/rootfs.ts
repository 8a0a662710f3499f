/**
 * Per-node root filesystems: base + overlay as a tree (rootfs/NODE/) and as a
 * reproducible tar artifact (artifacts/NODE.tar.gz, .tar.zst, SHA256SUMS).
 */
import path from 'node:path';
import type { BuildPlan, PlannedFile } from '../plan/plan.js';
import type { BaseIndex } from '../rootfs/base.js';
import { buildArtifacts, type ArtifactsResult } from '../rootfs/artifact.js';
import { writeNodeTree } from '../rootfs/tree.js';
import type { Reporter } from '../progress.js';

export const OUTPUT_FORMATS = ['tree', 'tar'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface RootfsInputs {
  base: BaseIndex;
  /** The base with the files every node gets the same (the k3s binary), for artifacts: packed once. */
  layered: BaseIndex;
  formats: OutputFormat[];
  /** The same files with their bytes, laid over each tree (which is copied from the base's directory). */
  layerFiles: PlannedFile[];
  sourceDateEpoch: number;
}

export interface RootfsResult {
  trees: string[];
  artifacts?: ArtifactsResult;
}

export async function emitRootfs(staging: string, plan: BuildPlan, inputs: RootfsInputs, reporter: Reporter): Promise<RootfsResult> {
  const result: RootfsResult = { trees: [] };
  if (inputs.formats.includes('tree')) {
    const step = reporter.step('writing node trees', plan.nodes.length, 'nodes');
    for (const [i, { node, files, removes }] of plan.nodes.entries()) {
      const dest = path.join(staging, 'rootfs', node.name);
      await writeNodeTree(inputs.base, [...inputs.layerFiles, ...files], dest, { sourceDateEpoch: inputs.sourceDateEpoch, removes });
      result.trees.push(dest);
      step.update(i + 1);
    }
    step.finish(`${plan.nodes.length} trees`);
  }
  if (inputs.formats.includes('tar')) {
    const step = reporter.step('packing node artifacts', plan.nodes.length, 'nodes');
    result.artifacts = await buildArtifacts(
      inputs.layered,
      plan.nodes.map(({ node, files, removes }) => ({ name: node.name, files, removes })),
      path.join(staging, 'artifacts'),
      { sourceDateEpoch: inputs.sourceDateEpoch },
    );
    step.finish(`${plan.nodes.length} artifacts, base packed in ${(result.artifacts.timings.baseMs / 1000).toFixed(1)} s`);
  }
  return result;
}
