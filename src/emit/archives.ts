/**
 * How a build writes the archives of the nodes it packs (emit/rootfs.ts): the
 * shared base from the cache, or packed into it once (packed.ts), then every
 * node's archives from it, together (artifact.ts). The tests of the archives
 * go through here too, so they test what a build does.
 */
import type { BaseIndex } from '../base/open.js';
import { silentReporter, type Reporter } from '../progress.js';
import { writeNodeArtifacts, type ArtifactNode, type NodeArtifact } from './artifact.js';
import { packedBase } from './packed.js';
import type { PackOptions } from './shared-base.js';
import type { Rollback } from './staging.js';

export interface PackArtifacts {
  /** The base's identity (and the cluster layer's), which keys its packed chunks in the cache. */
  identity: string;
  cacheDir: string;
  packing: PackOptions;
  reporter?: Reporter;
  /** Hears of each node as its files are in place. */
  written?: (artifact: NodeArtifact) => void;
  /** Lets nodes' previous archives be revised in place, and puts them back if the build fails later. */
  rollback?: Rollback;
}

export async function packArtifacts(
  base: BaseIndex,
  nodes: readonly ArtifactNode[],
  outDir: string,
  how: PackArtifacts,
): Promise<NodeArtifact[]> {
  const step = (how.reporter ?? silentReporter).step('packing the shared base');
  const packed = await packedBase(base, how.identity, how.cacheDir, how.packing);
  step.finish(packed.hit ? 'reused from the cache' : `${packed.shared.chunks.length} chunks`);
  // Together: every untouched chunk of the base is read once for all of them.
  return writeNodeArtifacts(packed.shared, nodes, outDir, how.written, how.rollback);
}
