/**
 * Write a cluster's build: out/<cluster>/nodes/<node>/… (overlay trees), tftp/,
 * exports/, dnsmasq/ and manifest.json, atomically.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { manifest, type BuildPlan } from '../plan/plan.js';
import { writeAtomically } from './staging.js';
import { writeTree } from './tree.js';

export interface EmitResult {
  dir: string;
  files: number;
}

export async function emitCluster(plan: BuildPlan, outDir: string, generator: string): Promise<EmitResult> {
  const dir = path.join(outDir, plan.cluster.name);
  let files = 0;
  await writeAtomically(dir, async (staging) => {
    for (const { node, files: nodeFiles } of plan.nodes) {
      await writeTree(path.join(staging, 'nodes', node.name), nodeFiles);
      files += nodeFiles.length;
    }
    await writeTree(staging, plan.bootServer);
    files += plan.bootServer.length;
    await writeFile(path.join(staging, 'manifest.json'), `${JSON.stringify(manifest(plan, generator), null, 2)}\n`, { mode: 0o644 });
  });
  return { dir, files: files + 1 };
}
