/**
 * Write a cluster's build: out/<cluster>/nodes/<node>/… (overlay trees), tftp/,
 * exports/, dnsmasq/, manifest.json and, with a base, rootfs/ and artifacts/;
 * all of it atomically.
 */
import { link, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { manifest, type BuildPlan, type PlannedFile } from '../plan/plan.js';
import { silentReporter, type Reporter } from '../progress.js';
import { writeAtomically } from './staging.js';
import { writeTree } from './tree.js';
import { emitRootfs, type RootfsInputs, type RootfsResult } from './rootfs.js';
import type { OutputFormat } from './formats.js';
import { STATE_FILE, type BuildState } from './state.js';
import { OWNER_FILE, readOutputRecord, type OutputRecord } from './owner.js';
import type { SecretsFingerprint } from '../profile/store.js';
import type { BuildInputs } from '../build-inputs.js';

export interface EmitResult {
  dir: string;
  files: number;
  rootfs?: RootfsResult;
}

export interface EmitOptions {
  /** Running as root: files get their planned owners (decided once, by the build). */
  privileged: boolean;
  /** Boot files taken from the base (kernel, initrd, device tree under tftp/). */
  bootFiles?: PlannedFile[];
  /** Boot files of the previous build to keep as they are (the base did not change): paths under it. */
  reuseBootFiles?: { dir: string; paths: string[] };
  rootfs?: RootfsInputs;
  reporter?: Reporter;
  /** The fingerprint of the secrets the build was made with, kept in its owner record. */
  secrets?: SecretsFingerprint;
  /** What the build was made from, and its formats: kept in its owner record for deploy. */
  inputs?: BuildInputs;
  formats?: OutputFormat[];
  /** How many entries the base has, kept in the state for a rebuild that does not read it. */
  baseEntries?: number;
}

export async function emitCluster(plan: BuildPlan, outDir: string, generator: string, options: EmitOptions): Promise<EmitResult> {
  const dir = path.join(outDir, plan.cluster.name);
  const reporter = options.reporter ?? silentReporter;
  // Only an output netroot wrote may be replaced whole.
  await readOutputRecord(dir, dir);
  let files = 0;
  let rootfs: RootfsResult | undefined;
  await writeAtomically(dir, async (staging, rollback) => {
    for (const { node, files: nodeFiles } of plan.nodes) {
      await writeTree(path.join(staging, 'nodes', node.name), nodeFiles, options.privileged);
      files += nodeFiles.length;
    }
    const boot = [...plan.bootServer, ...(options.bootFiles ?? [])];
    await writeTree(staging, boot, options.privileged);
    files += boot.length;
    const record: OutputRecord = {
      kind: 'netroot-output',
      generator,
      cluster: plan.cluster.name,
      builtAt: new Date().toISOString(),
      ...(options.secrets ? { secrets: options.secrets } : {}),
      ...(options.inputs ? { inputs: options.inputs } : {}),
      ...(options.formats ? { formats: options.formats } : {}),
    };
    // Fingerprints only, no secret: still owner-only, like the state file.
    await writeFile(path.join(staging, OWNER_FILE), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    await writeFile(path.join(staging, 'manifest.json'), `${JSON.stringify(manifest(plan, generator), null, 2)}\n`, { mode: 0o644 });
    const reused = options.reuseBootFiles?.paths ?? [];
    for (const p of reused) {
      await mkdir(path.dirname(path.join(staging, p)), { recursive: true });
      await link(path.join(options.reuseBootFiles!.dir, p), path.join(staging, p));
    }
    // Kept from the previous build, they are in this output as much as written ones: a no-op rebuild counts what a build counts.
    files += reused.length;
    if (options.rootfs) {
      const inputs = options.rootfs;
      rootfs = await emitRootfs(staging, plan, inputs, reporter, rollback);
      const state: BuildState = {
        version: 1,
        generator,
        baseIdentity: inputs.baseIdentity,
        arch: inputs.arch,
        ...inputs.facts,
        formats: inputs.formats,
        ...(options.baseEntries !== undefined ? { baseEntries: options.baseEntries } : {}),
        sourceDateEpoch: inputs.sourceDateEpoch,
        baseNewestMtime: inputs.baseNewestMtime,
        nodes: rootfs.state.nodes,
        bootFiles: [...(options.bootFiles ?? []).map((f) => f.path), ...reused].sort(),
        bootSources: inputs.bootSources,
        privileged: inputs.privileged,
      };
      // It holds digests of secret-bearing files: owner only.
      await writeFile(path.join(staging, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    }
  });
  return { dir, files: files + 1, ...(rootfs ? { rootfs } : {}) };
}
