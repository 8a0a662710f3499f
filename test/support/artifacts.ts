/**
 * Node archives written the way a build writes them (emit/rootfs.ts through emit/archives.ts): the shared
 * base packed into a cache of this output's own, the nodes written from it together, then SHA256SUMS.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BaseIndex } from '../../src/base/open.js';
import { packArtifacts } from '../../src/emit/archives.js';
import { sha256sums, type ArtifactNode, type NodeArtifact } from '../../src/emit/artifact.js';
import type { PackOptions } from '../../src/emit/shared-base.js';

export async function writeArtifacts(
  base: BaseIndex,
  nodes: readonly ArtifactNode[],
  outDir: string,
  packing: PackOptions = {},
): Promise<{ nodes: NodeArtifact[]; sha256sums: string }> {
  await mkdir(outDir, { recursive: true });
  // Beside the output, not in it: a test lists what the output holds.
  const artifacts = await packArtifacts(base, nodes, outDir, { identity: `test ${outDir}`, cacheDir: `${outDir}.cache`, packing });
  const sums = sha256sums(artifacts.flatMap((a) => a.files));
  await writeFile(path.join(outDir, 'SHA256SUMS'), sums, { mode: 0o644 });
  return { nodes: artifacts, sha256sums: sums };
}
