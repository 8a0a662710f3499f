/**
 * The digests a deploy compares node trees by, left by the build that copies
 * the trees from the base. The build knows what it wrote: the base's files
 * (whose digests are taken once per base and kept, keyed like a deploy's, by
 * inode, size, mtime and ctime) and the overlay's bytes. So a deploy of a
 * build into a fresh output (the lab's rebuild) reads no file back; without
 * this it read every file of every tree once, a minute a node.
 */
import { createHash } from 'node:crypto';
import type { BaseIndex } from '../base/open.js';
import { baseDigestsFile, loadHashCache, readManifest, saveHashCache, treeDigestsFile, type Manifest } from '../entries/manifest.js';
import type { PlannedFile } from '../plan/plan.js';

/** The base's digests, by path: read once per base directory, then from the cache beside a deploy's. */
export async function baseDigests(base: BaseIndex, cacheDir: string): Promise<Manifest> {
  const file = baseDigestsFile(cacheDir, base.root);
  const cache = await loadHashCache(file);
  const manifest = await readManifest(base.root, [], cache);
  await saveHashCache(file, cache);
  return manifest;
}

/**
 * Leave the digests of `tree`, just copied from `base` and overlaid with `files`, where a deploy of the
 * output at `clusterDir` looks for them. A file the overlay wrote has its bytes' digest; any other file
 * is the base's copy at the same path, checked by its size; anything else is read.
 */
export async function recordTreeDigests(
  tree: string,
  files: readonly PlannedFile[],
  base: Manifest,
  clusterDir: string,
  cacheDir: string,
  node: string,
): Promise<void> {
  const written = new Map(
    files.filter((f) => f.type === 'file').map((f) => [f.path, { s: f.content!.length, h: contentDigest(f.content!) }]),
  );
  const cache = new Map<string, string>();
  await readManifest(tree, [], cache, (relative, size) => {
    const known = written.get(relative) ?? base[relative];
    return known?.s === size ? known.h : undefined;
  });
  await saveHashCache(treeDigestsFile(cacheDir, clusterDir, node), cache);
}

const digests = new WeakMap<Buffer, string>();

/** sha256 of a planned file's bytes, taken once per buffer (the same buffers go to every node). */
export function contentDigest(content: Buffer): string {
  let h = digests.get(content);
  if (h === undefined) {
    h = createHash('sha256').update(content).digest('hex');
    digests.set(content, h);
  }
  return h;
}
