/**
 * Reproducible per-node tar artifacts (NODE.tar.gz, NODE.tar.zst), built so
 * that a node costs about its overlay, not its base.
 *
 * Design: CHUNKED SHARED BASE, THEN THE NODE'S OWN ENTRIES. The chunks are
 * shared-base.ts's (kept between builds by packed.ts), an archive revised in
 * place is revision.ts's, and archives.ts is how a build calls on all of them.
 * - The base's entries, sorted by path, are cut into chunks of ~chunkBytes of
 *   tar data (cut only between entries; the cut depends on the base alone).
 *   Each chunk's tar bytes are compressed ONCE into its own gzip member and
 *   zstd frame. A gzip file may consist of several members and a zstd file of
 *   several frames; decompressors output their concatenation. A tar body is
 *   just a sequence of 512-byte blocks, so the concatenation of the chunks'
 *   tar bytes is the tar body of the whole base, and the end-of-archive blocks
 *   are one more member/frame of their own.
 * - A node's archive is two parts. The PREFIX is the base without the paths
 *   the node changes (the base paths its overlay replaces or removes, and the
 *   hard links relinked because their holder was replaced): chunks holding
 *   none of those are copied compressed, byte for byte; the few that do
 *   (overlays gather in etc/) are packed again without them. The TAIL is one
 *   more member/frame: the node's own entries (overlay files, the directories
 *   they need, relinked hard links), sorted by path. Then the end marker.
 * - Why the node's entries come last: the prefix depends on the base and on
 *   which paths the node changes, not on what it writes there. A template
 *   change leaves every prefix as it was, so a rebuild keeps the previous
 *   archive's prefix bytes (checked against the digest recorded when they were
 *   written) and writes only the new tail after it: kilobytes, not the base.
 * - Each path is in the archive once, and every entry comes after its parent
 *   directory and after the file it hard-links to, so extraction order does
 *   not matter and nothing relies on "later entries win". Reproducible: the
 *   bytes depend only on the index, the overlay, SOURCE_DATE_EPOCH, the chunk
 *   size and the compressor versions (Node's zlib, the zstd CLI); not on time,
 *   directory, order of nodes, concurrency or whether the archive was revised.
 *
 * Entries: names `./path` (`./` for the root), numeric uid/gid with empty
 * uname/gname; a base file's own mtime (an input like its bytes), and
 * SOURCE_DATE_EPOCH for what netroot writes (default: the base's newest
 * mtime, see sourceDateEpoch()); no atime or ctime, xattrs (file capabilities) as pax `SCHILY.xattr.*` records, hard
 * links as hard links, device nodes and fifos as such. Extract with
 *   tar --xattrs --xattrs-include='*' --numeric-owner -xpf NODE.tar.gz -C DEST
 * (GNU tar restores only user.* xattrs without --xattrs-include).
 */
import * as fsSync from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { compress, PIECE, tarBytes, type Format } from './tar-bytes.js';
import { sha256, type PlannedFile } from '../plan/plan.js';
import { InternalError } from '../errors.js';
import type { Rollback } from './staging.js';
import { mergeOverlay, type OverlayMerge } from './overlay.js';
import type { NodeEntry } from '../entries/place.js';
import { comparePaths } from '../entries/paths.js';
import { throwIfStopped } from '../stop.js';
import { mapLimit, type Chunk, type SharedBase } from './shared-base.js';
import { checkPrevious, Output, type ArtifactFile, type PreviousArchives, type Revision } from './revision.js';

export type { Format } from './tar-bytes.js';

/**
 * Bumped whenever the same inputs give other archive bytes (2: base mtimes kept, no longer clamped; 3: the
 * node's own entries after the base), so packed chunks and nodes reused from an earlier build made the old way
 * are made again.
 */
export const ARCHIVE_LAYOUT = 'archive-3';

export interface ArtifactNode {
  name: string;
  files: readonly PlannedFile[];
  /** Base paths this node must not have (patterns, see matchRemovals). */
  removes?: readonly string[];
  /**
   * The node's archives in a previous output, written from the same base and changing the same paths (so
   * with the same prefix, see rebuild.ts): each is moved here and revised in place, its prefix kept, when the
   * prefix still has the digest it was written with and nothing else links to the file. Otherwise the node is
   * written anew.
   */
  previous?: PreviousArchives;
}

export interface NodeArtifact {
  node: string;
  files: ArtifactFile[];
  /** Entries in the archive, the root included. */
  entries: number;
  /** Base chunks packed again for this node, of `chunks` (none when its previous archives were revised). */
  rebuiltChunks: number;
  chunks: number;
  /** The previous archives were revised in place: only the tail was written. */
  revised: boolean;
  manifest: Record<string, unknown>;
}

// ---------------------------------------------------------------------------
// One node

/** The chunk whose range of paths holds `p`: the last one starting at or before it. */
function chunkFor(chunks: readonly Chunk[], p: string): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (comparePaths(chunks[mid]!.firstPath, p) <= 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Base paths the node's prefix leaves out: replaced or removed, and hard links relinked because their
 * holder was replaced (a relinked group goes to the tail whole, so no link in the prefix points into it).
 */
function leftOut(merge: OverlayMerge): Set<string> {
  return new Set([...merge.replaced, ...merge.relinked.keys()]);
}

/** A touched chunk's base entries, without those the node leaves out. */
function* prefixEntries(shared: SharedBase, chunk: Chunk, out: ReadonlySet<string>): Generator<NodeEntry> {
  const entries = shared.base.entries;
  for (let i = chunk.start; i < chunk.end; i++) if (!out.has(entries.path(i))) yield entries.at(i);
}

/** The node's own entries, sorted: a made parent directory and a new link holder come before what needs them. */
function tailEntries(merge: OverlayMerge): NodeEntry[] {
  return [...merge.entries, ...merge.relinked.values()].sort((a, b) => comparePaths(a.path, b.path));
}

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkNames(nodes: readonly ArtifactNode[]): void {
  const names = new Set<string>();
  for (const node of nodes) {
    if (!NODE_NAME.test(node.name)) throw new InternalError(`node name ${JSON.stringify(node.name)} cannot name an artifact file`);
    if (names.has(node.name)) throw new InternalError(`node ${node.name} is listed twice`);
    names.add(node.name);
  }
}

/** A node on its way into its archives. */
interface NodeWrite {
  node: ArtifactNode;
  merge: OverlayMerge;
  /** Base paths its prefix leaves out, and the chunks they are in. */
  out: Set<string>;
  touched: Set<number>;
  /** Its previous archives, being revised; absent when it is written anew. */
  revisions?: Revision[];
  /** The node's own compressed parts, keyed `format:index` for a chunk, `format:tail` for its entries. */
  packed: Map<string, Buffer>;
  files: ArtifactFile[];
}

/** Compresses the touched chunks (of nodes written anew) and the tail of every node, all formats, `shared.concurrency` at a time. */
async function packNodeParts(shared: SharedBase, writes: readonly NodeWrite[]): Promise<void> {
  const jobs = writes.flatMap((write) =>
    shared.formats.flatMap((format) => [
      ...(write.revisions ? [] : [...write.touched].map((i) => ({ write, format, part: i }))),
      { write, format, part: 'tail' as const },
    ]),
  );
  await mapLimit(jobs, shared.concurrency, async ({ write, format, part }) => {
    const entries = part === 'tail' ? tailEntries(write.merge) : [...prefixEntries(shared, shared.chunks[part]!, write.out)];
    // A chunk of nothing but left-out paths is left out whole; so is an empty tail.
    if (!entries.length) return void write.packed.set(`${format}:${part}`, Buffer.alloc(0));
    const pieces: Buffer[] = [];
    await compress(format, shared.levels[format], tarBytes(entries, shared.pool), (piece) => pieces.push(piece), shared.pool);
    write.packed.set(`${format}:${part}`, Buffer.concat(pieces));
  });
}

/**
 * Appends a chunk file to every output that copies it, reading it once: reading it again for each node took
 * a third as long as writing it. Pieces of 1 MiB, read synchronously (no thread-pool round trip per piece):
 * whole-chunk pieces (~2 MiB) cost twice the system time per byte written.
 */
function copyInto(outputs: readonly Output[], file: string, buffer: Buffer): void {
  const fd = fsSync.openSync(file, 'r');
  try {
    for (let read; (read = fsSync.readSync(fd, buffer, 0, buffer.length, null)) > 0;) {
      const piece = buffer.subarray(0, read);
      for (const out of outputs) out.write(piece);
    }
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * The prefix of every new archive of one format, in one pass over the chunks: untouched chunks copied as
 * compressed, each node's packed ones in their place.
 */
function writePrefixes(shared: SharedBase, format: Format, writes: readonly NodeWrite[], outputs: readonly Output[]): void {
  const buffer = Buffer.allocUnsafe(PIECE);
  for (const [i, chunk] of shared.chunks.entries()) {
    const copying: Output[] = [];
    writes.forEach((write, n) => {
      if (write.touched.has(i)) outputs[n]!.write(write.packed.get(`${format}:${i}`)!);
      else copying.push(outputs[n]!);
    });
    if (copying.length) copyInto(copying, chunk.files[format]!, buffer);
  }
  for (const out of outputs) out.endPrefix();
}

/**
 * Writes a batch of nodes' archives together, so each untouched chunk is read once for all of them: new
 * archives prefix and all, revised ones from their prefix on. No archive appears unless every one of the batch
 * is complete; a failure leaves no temporary file behind, and puts revised archives back as they were.
 */
async function writeArchives(shared: SharedBase, writes: readonly NodeWrite[], outDir: string, rollback?: Rollback): Promise<void> {
  await packNodeParts(shared, writes);
  throwIfStopped();
  const outputs: Output[] = [];
  try {
    for (const format of shared.formats) {
      const mine = writes.map((write) => {
        const out = new Output(
          path.join(outDir, `${write.node.name}.tar.${format}`),
          write.revisions?.find((r) => r.format === format),
        );
        outputs.push(out); // abandoned on failure, even if the next one cannot be opened
        // A revised archive goes back if the build fails or is stopped, now or after this batch.
        if (out.revised) rollback!.add(() => out.abandon());
        return out;
      });
      const fresh = writes.map((write, n) => ({ write, out: mine[n]! })).filter(({ write }) => !write.revisions);
      writePrefixes(
        shared,
        format,
        fresh.map((f) => f.write),
        fresh.map((f) => f.out),
      );
      writes.forEach((write, n) => {
        mine[n]!.write(write.packed.get(`${format}:tail`)!);
        mine[n]!.write(shared.endOfArchive[format]!);
        write.files.push(mine[n]!.end());
        // This format's parts are written: let them go.
        for (const key of write.packed.keys()) if (key.startsWith(`${format}:`)) write.packed.delete(key);
      });
    }
    for (const out of outputs) await out.commit();
  } catch (error) {
    // Every output is put back or removed, whatever one of them meets; the error that stopped the write is the one told.
    await Promise.allSettled(outputs.map((out) => out.abandon()));
    throw error;
  }
}

function overlayManifest(merge: OverlayMerge): Record<string, unknown>[] {
  return merge.entries.map((e) => ({
    path: e.path,
    type: e.type,
    mode: e.mode.toString(8).padStart(4, '0'),
    owner: `${e.uid}:${e.gid}`,
    // A digest of a file that holds a secret would let anyone brute-force the secret offline.
    ...(e.type === 'file' ? (e.mode & 0o077 ? { size: e.size, sha256: sha256(e.data!) } : { private: true }) : {}),
    ...(e.type === 'symlink' ? { target: e.linkname } : {}),
  }));
}

/** The node's manifest, written beside its archives; returns what the node's artifacts are. */
async function writeManifest(shared: SharedBase, write: NodeWrite, outDir: string): Promise<NodeArtifact> {
  const { node, merge, files } = write;
  const added = merge.entries.filter((e) => !merge.replaced.has(e.path)).length;
  const entries = shared.base.entries.length + added - merge.removed.length;
  const manifest = {
    node: node.name,
    base: {
      kind: shared.base.kind,
      ...(shared.base.digest ? { sha256: shared.base.digest } : {}),
      ...(shared.base.netboot ? { initrdRegenerated: shared.base.netboot } : {}),
      entries: shared.base.entries.length,
    },
    sourceDateEpoch: shared.epoch,
    entries,
    artifacts: Object.fromEntries(files.map((f) => [f.name, { sha256: f.sha256, bytes: f.bytes }])),
    overlay: overlayManifest(merge),
    replaced: [...merge.replaced].sort(comparePaths),
    removed: merge.removed,
    extract: `tar --xattrs --xattrs-include='*' --numeric-owner -xpf ${node.name}.tar.gz -C DEST`,
  };
  const manifestFile = path.join(outDir, `${node.name}.manifest.json`);
  const text = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(manifestFile, text, { mode: 0o644 });
  return {
    node: node.name,
    files: [...files, { name: path.basename(manifestFile), sha256: sha256(text), bytes: text.length }],
    entries,
    rebuiltChunks: write.revisions ? 0 : write.touched.size,
    revised: write.revisions !== undefined,
    chunks: shared.chunks.length,
    manifest,
  };
}

/**
 * Nodes written together: each untouched chunk is read once per batch. Bounded because a batch holds its
 * nodes' packed parts in memory and an open file per node.
 */
const BATCH = 8;

/**
 * Writes NODE.tar.gz (and NODE.tar.zst) and NODE.manifest.json into outDir for each node, in batches
 * (see writeArchives); `written` hears of each node as its files are in place. Results in the order given.
 * A node's `previous` archives are revised in place only with a `rollback`, which puts them back as they were
 * if the build fails later.
 */
export async function writeNodeArtifacts(
  shared: SharedBase,
  nodes: readonly ArtifactNode[],
  outDir: string,
  written: (artifact: NodeArtifact) => void = () => undefined,
  rollback?: Rollback,
): Promise<NodeArtifact[]> {
  checkNames(nodes);
  const results: NodeArtifact[] = [];
  for (let at = 0; at < nodes.length; at += BATCH) {
    const writes = nodes.slice(at, at + BATCH).map((node): NodeWrite => {
      const merge = mergeOverlay(shared.base, node.files, { mtime: shared.epoch, removes: node.removes ?? [] });
      const out = leftOut(merge);
      const revisions = rollback ? checkPrevious(node.name, node.previous, shared.formats) : undefined;
      return {
        node,
        merge,
        out,
        touched: new Set([...out].map((p) => chunkFor(shared.chunks, p))),
        ...(revisions ? { revisions } : {}),
        packed: new Map(),
        files: [],
      };
    });
    try {
      await writeArchives(shared, writes, outDir, rollback);
    } finally {
      // A failure before a checked archive was opened for its revision leaves it open here.
      for (const write of writes) for (const r of write.revisions ?? []) if (!r.taken) fsSync.closeSync(r.fd);
    }
    for (const write of writes) {
      const artifact = await writeManifest(shared, write, outDir);
      results.push(artifact);
      written(artifact);
    }
  }
  return results;
}

/** GNU `sha256sum` text format, sorted by file name. */
export function sha256sums(files: readonly ArtifactFile[]): string {
  return [...files]
    .sort((a, b) => comparePaths(a.name, b.name))
    .map((f) => `${f.sha256}  ${f.name}\n`)
    .join('');
}
