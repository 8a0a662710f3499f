/**
 * Write a cluster's build: out/<cluster>/nodes/<node>/… (overlay trees), tftp/,
 * exports/, dnsmasq/, manifest.json and, with a base, rootfs/ and artifacts/;
 * all of it atomically.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { manifest, type BuildPlan, type PlannedFile } from '../plan/plan.js';
import { silentReporter, type Reporter } from '../progress.js';
import { writeAtomically } from './staging.js';
import { writeTree } from './tree.js';
import { emitRootfs, type RootfsInputs, type RootfsResult } from './rootfs.js';

export interface EmitResult {
  dir: string;
  files: number;
  rootfs?: RootfsResult;
}

export interface EmitOptions {
  /** Boot files taken from the base (kernel, initrd, device tree under tftp/). */
  bootFiles?: PlannedFile[];
  rootfs?: RootfsInputs;
  reporter?: Reporter;
}

export async function emitCluster(plan: BuildPlan, outDir: string, generator: string, options: EmitOptions = {}): Promise<EmitResult> {
  const dir = path.join(outDir, plan.cluster.name);
  const reporter = options.reporter ?? silentReporter;
  let files = 0;
  let rootfs: RootfsResult | undefined;
  await writeAtomically(dir, async (staging) => {
    for (const { node, files: nodeFiles } of plan.nodes) {
      await writeTree(path.join(staging, 'nodes', node.name), nodeFiles);
      files += nodeFiles.length;
    }
    const boot = [...plan.bootServer, ...(options.bootFiles ?? [])];
    await writeTree(staging, boot);
    files += boot.length;
    await writeFile(path.join(staging, 'manifest.json'), `${JSON.stringify(manifest(plan, generator), null, 2)}\n`, { mode: 0o644 });
    if (options.rootfs) rootfs = await emitRootfs(staging, plan, options.rootfs, reporter);
  });
  return { dir, files: files + 1, ...(rootfs ? { rootfs } : {}) };
}
