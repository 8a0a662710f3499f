/**
 * Reproducible per-node tar artifacts (NODE.tar.gz, NODE.tar.zst), built so
 * that a node costs about its overlay, not its base.
 *
 * Design: CHUNKED SHARED BASE, FULLY SORTED OUTPUT.
 * - The base's entries, sorted by path, are cut into chunks of ~chunkBytes of
 *   tar data (cut only between entries; the cut depends on the base alone).
 *   Each chunk's tar bytes are compressed ONCE into its own gzip member and
 *   zstd frame. A gzip file may consist of several members and a zstd file of
 *   several frames; decompressors output their concatenation. A tar body is
 *   just a sequence of 512-byte blocks, so the concatenation of the chunks'
 *   tar bytes is the tar body of the whole base, and the end-of-archive blocks
 *   are one more member/frame of their own.
 * - For a node, every overlay path (and every missing parent directory it
 *   needs) falls into the chunk whose range of paths covers it. Chunks that no
 *   overlay path touches are copied compressed, byte for byte; touched chunks
 *   are rebuilt with the node's entries merged in at their sorted place (the
 *   base version of a replaced path is left out, not shadowed) and compressed
 *   anew. Per-node cost: compress the touched chunks (overlays gather in
 *   etc/, so one to a few chunks) and copy the rest.
 * - So the archive is sorted by path and holds each path once: extraction
 *   order does not matter, nothing relies on "later entries win", and hard
 *   links always follow the file they link to (the holder is the first path
 *   of its group). Reproducible: the bytes depend only on the index, the
 *   overlay, SOURCE_DATE_EPOCH, the chunk size and the compressor versions
 *   (Node's zlib, the zstd CLI); not on time, directory, order of nodes or
 *   concurrency.
 *
 * Entries: names `./path` (`./` for the root), numeric uid/gid with empty
 * uname/gname; a base file's own mtime (an input like its bytes), and
 * SOURCE_DATE_EPOCH for what netroot writes (default: the base's newest
 * mtime, see sourceDateEpoch()); no atime or ctime, xattrs (file capabilities) as pax `SCHILY.xattr.*` records, hard
 * links as hard links, device nodes and fifos as such. Extract with
 *   tar --xattrs --xattrs-include='*' --numeric-owner -xpf NODE.tar.gz -C DEST
 * (GNU tar restores only user.* xattrs without --xattrs-include).
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { findProgram, requirePrograms } from '../tools.js';
import { BufferPool, compress, PIECE, tarBytes, type Format } from './tar-bytes.js';
import { sha256, type PlannedFile } from '../plan/plan.js';
import type { BaseIndex } from '../base/open.js';
import type { EntryTable } from '../base/entry-table.js';
import { sweepStaleTemporaries, temporaryName } from '../cache.js';
import { RootfsError } from '../rootfs/errors.js';
import { writeAll } from '../rootfs/io.js';
import { mergeOverlay, type NodeEntry, type OverlayMerge } from './overlay.js';
import { comparePaths } from '../rootfs/paths.js';
import { BLOCK, END_OF_ARCHIVE, padding } from '../rootfs/tarformat.js';

export type { Format } from './tar-bytes.js';

/**
 * Bumped whenever the same inputs give other archive bytes (2: base mtimes kept, no longer clamped), so packed
 * chunks and nodes reused from an earlier build made the old way are made again.
 */
export const ARCHIVE_LAYOUT = 'archive-2';

export interface ArtifactOptions {
  /** mtime of what netroot writes (overlay files, new directories); default sourceDateEpoch(base). */
  sourceDateEpoch?: number;
  /** Default: gz, plus zst when the zstd CLI is installed. */
  formats?: Format[];
  /** Target uncompressed size of a shared base chunk; default 4 MiB. */
  chunkBytes?: number;
  gzipLevel?: number;
  zstdLevel?: number;
  /** Chunks compressed at once; default: CPU count + 1. */
  concurrency?: number;
}

export interface ArtifactNode {
  name: string;
  files: readonly PlannedFile[];
  /** Base paths this node must not have (patterns, see matchRemovals). */
  removes?: readonly string[];
}

export interface ArtifactFile {
  name: string;
  sha256: string;
  bytes: number;
}

export interface NodeArtifact {
  node: string;
  files: ArtifactFile[];
  /** Entries in the archive, the root included. */
  entries: number;
  /** Base chunks rebuilt for this node, of `chunks`. */
  rebuiltChunks: number;
  chunks: number;
  manifest: Record<string, unknown>;
}

export interface ArtifactsResult {
  dir: string;
  nodes: NodeArtifact[];
  /** Every file written except SHA256SUMS itself, in `sha256sum` format. */
  sha256sums: string;
  /** Packing the base, and writing every node (together, so not per node). */
  timings: { baseMs: number; nodesMs: number };
}

export interface Chunk {
  /** Index range [start, end) in base.entries. */
  start: number;
  end: number;
  firstPath: string;
  /** Compressed bytes on disk, per format. */
  files: Partial<Record<Format, string>>;
}

/** A base prepared for many nodes: its chunks compressed once. */
export interface SharedBase {
  base: BaseIndex;
  epoch: number;
  formats: Format[];
  chunks: Chunk[];
  endOfArchive: Partial<Record<Format, Buffer>>;
  levels: { gz: number; zst: number };
  concurrency: number;
  /** The buffers every compression of this build fills, reused (see tar-bytes.ts). */
  pool: BufferPool;
}

/** $SOURCE_DATE_EPOCH when it is set. */
export function epochFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new RootfsError(`SOURCE_DATE_EPOCH must be a number of seconds, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** The mtime of the base's newest entry (0 for an empty base). */
export function newestMtime(base: Pick<BaseIndex, 'entries'>): number {
  let newest = 0;
  for (let i = 0; i < base.entries.length; i++) newest = Math.max(newest, base.entries.mtime(i));
  return newest;
}

/**
 * The date of the files netroot writes: $SOURCE_DATE_EPOCH, else the base's
 * newest mtime. Both are inputs, so the same inputs give the same bytes, and a
 * node's files are never dated 1970 nor before the base they were written for.
 */
export function sourceDateEpoch(base: Pick<BaseIndex, 'entries'>, env: NodeJS.ProcessEnv = process.env): number {
  return epochFromEnv(env) ?? newestMtime(base);
}

export async function zstdAvailable(): Promise<boolean> {
  return findProgram('zstd') !== undefined;
}

// ---------------------------------------------------------------------------
// Shared base

/** Deterministic: an estimate from the index alone, so the same base always cuts the same way. */
function estimate(entries: EntryTable, i: number): number {
  const size = entries.type(i) === 'file' ? entries.size(i) : 0;
  return BLOCK + size + padding(size) + (entries.hasXattrs(i) ? BLOCK * 2 : 0);
}

function planChunks(entries: EntryTable, chunkBytes: number): Chunk[] {
  const chunks: Chunk[] = [];
  let start = 0;
  let size = 0;
  for (let i = 0; i < entries.length; i++) {
    size += estimate(entries, i);
    if (size >= chunkBytes || i === entries.length - 1) {
      chunks.push({ start, end: i + 1, firstPath: entries.path(start), files: {} });
      start = i + 1;
      size = 0;
    }
  }
  return chunks;
}

async function mapLimit<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export async function resolveFormats(requested: Format[] | undefined): Promise<Format[]> {
  if (requested) {
    if (requested.includes('zst')) requirePrograms([{ program: 'zstd', why: '.tar.zst artifacts (--compress zst)' }]);
    return [...new Set(requested)];
  }
  return (await zstdAvailable()) ? ['gz', 'zst'] : ['gz'];
}

/** Compresses every chunk of the base once, into `workDir`. */
export async function prepareSharedBase(base: BaseIndex, workDir: string, options: ArtifactOptions = {}): Promise<SharedBase> {
  const epoch = options.sourceDateEpoch ?? sourceDateEpoch(base);
  const formats = await resolveFormats(options.formats);
  const levels = { gz: options.gzipLevel ?? 6, zst: options.zstdLevel ?? 3 };
  const chunks = planChunks(base.entries, options.chunkBytes ?? 4 << 20);
  const pool = new BufferPool();
  await mkdir(workDir, { recursive: true });
  const jobs = chunks.flatMap((chunk, i) => formats.map((format) => ({ chunk, i, format })));
  // One more job than CPUs: the main thread generates tar bytes while the others compress.
  const concurrency = options.concurrency ?? os.availableParallelism() + 1;
  await mapLimit(jobs, concurrency, async ({ chunk, i, format }) => {
    const file = path.join(workDir, `chunk-${String(i).padStart(6, '0')}.${format}`);
    const out = fsSync.openSync(file, 'w', 0o600);
    try {
      await compress(
        format,
        levels[format],
        tarBytes(base.entries.range(chunk.start, chunk.end), pool),
        (piece) => writeAll(out, piece),
        pool,
      );
    } finally {
      fsSync.closeSync(out);
    }
    chunk.files[format] = file;
  });
  const endOfArchive: Partial<Record<Format, Buffer>> = {};
  for (const format of formats) {
    const pieces: Buffer[] = [];
    if (format === 'gz') pieces.push(gzipSync(END_OF_ARCHIVE, { level: levels.gz }));
    else await compress('zst', levels.zst, [END_OF_ARCHIVE], (piece) => pieces.push(piece), pool);
    endOfArchive[format] = Buffer.concat(pieces);
  }
  return { base, epoch, formats, chunks, endOfArchive, levels, concurrency, pool };
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

/** Chunk index → the overlay entries that go into it; touched chunks have a key even with none. */
function touchedChunks(shared: SharedBase, merge: OverlayMerge): Map<number, NodeEntry[]> {
  const touched = new Map<number, NodeEntry[]>();
  const touch = (p: string) => {
    const i = chunkFor(shared.chunks, p);
    let list = touched.get(i);
    if (!list) touched.set(i, (list = []));
    return list;
  };
  for (const entry of merge.entries) touch(entry.path).push(entry);
  for (const p of merge.replaced) touch(p);
  for (const p of merge.relinked.keys()) touch(p);
  return touched;
}

/** A chunk's base entries with the node's changes, merged in sorted order. */
function* nodeChunkEntries(shared: SharedBase, chunk: Chunk, added: readonly NodeEntry[], merge: OverlayMerge): Generator<NodeEntry> {
  let a = 0;
  const entries = shared.base.entries;
  for (let i = chunk.start; i < chunk.end; i++) {
    const p = entries.path(i);
    while (a < added.length && comparePaths(added[a]!.path, p) < 0) yield added[a++]!;
    if (merge.replaced.has(p)) continue;
    yield merge.relinked.get(p) ?? entries.at(i);
  }
  while (a < added.length) yield added[a++]!;
}

/** Writes to a file while hashing it; the name appears only when it is committed. */
class Output {
  private readonly fd: number;
  private readonly hash = createHash('sha256');
  private readonly temp: string;
  private bytes = 0;
  private closed = false;
  constructor(private readonly file: string) {
    this.temp = temporaryName(file);
    // The archive holds the node's secrets (keys, tokens): readable by its owner only.
    this.fd = fsSync.openSync(this.temp, 'w', 0o600);
  }
  write(piece: Buffer): void {
    writeAll(this.fd, piece);
    this.hash.update(piece);
    this.bytes += piece.length;
  }
  private close(): void {
    if (!this.closed) fsSync.closeSync(this.fd);
    this.closed = true;
  }
  /** Closes the complete file, still under its temporary name. */
  end(): ArtifactFile {
    this.close();
    return { name: path.basename(this.file), sha256: this.hash.digest('hex'), bytes: this.bytes };
  }
  async commit(): Promise<void> {
    await rename(this.temp, this.file);
  }
  async abandon(): Promise<void> {
    this.close();
    await rm(this.temp, { force: true });
  }
}

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkNames(nodes: readonly ArtifactNode[]): void {
  const names = new Set<string>();
  for (const node of nodes) {
    if (!NODE_NAME.test(node.name)) throw new RootfsError(`node name ${JSON.stringify(node.name)} cannot name an artifact file`);
    if (names.has(node.name)) throw new RootfsError(`node ${node.name} is listed twice`);
    names.add(node.name);
  }
}

/** A node on its way into its archives. */
interface NodeWrite {
  node: ArtifactNode;
  merge: OverlayMerge;
  touched: Map<number, NodeEntry[]>;
  /** The node's own compressed chunks, keyed `format:index`. */
  rebuilt: Map<string, Buffer>;
  files: ArtifactFile[];
}

/** Compresses the touched chunks of every node, all formats, `shared.concurrency` at a time. */
async function rebuildChunks(shared: SharedBase, writes: readonly NodeWrite[]): Promise<void> {
  const jobs = writes.flatMap((write) => shared.formats.flatMap((format) => [...write.touched.keys()].map((i) => ({ write, format, i }))));
  await mapLimit(jobs, shared.concurrency, async ({ write, format, i }) => {
    const pieces: Buffer[] = [];
    const entries = nodeChunkEntries(shared, shared.chunks[i]!, write.touched.get(i)!, write.merge);
    await compress(format, shared.levels[format], tarBytes(entries, shared.pool), (piece) => pieces.push(piece), shared.pool);
    write.rebuilt.set(`${format}:${i}`, Buffer.concat(pieces));
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
 * Every node's archive of one format, in one pass over the chunks: untouched chunks copied as compressed,
 * each node's rebuilt ones in their place, then the end marker. The outputs are left complete but uncommitted.
 */
function writeFormat(shared: SharedBase, format: Format, writes: readonly NodeWrite[], outputs: readonly Output[]): void {
  const buffer = Buffer.allocUnsafe(PIECE);
  for (const [i, chunk] of shared.chunks.entries()) {
    const copying: Output[] = [];
    writes.forEach((write, n) => {
      const mine = write.rebuilt.get(`${format}:${i}`);
      if (mine) outputs[n]!.write(mine);
      else copying.push(outputs[n]!);
    });
    if (copying.length) copyInto(copying, chunk.files[format]!, buffer);
  }
  for (const out of outputs) out.write(shared.endOfArchive[format]!);
}

/**
 * Writes a batch of nodes' archives together, so each untouched chunk is read once for all of them. No
 * archive appears unless every one of the batch is complete; a failure leaves no temporary file behind.
 */
async function writeArchives(shared: SharedBase, writes: readonly NodeWrite[], outDir: string): Promise<void> {
  await rebuildChunks(shared, writes);
  const outputs: Output[] = [];
  try {
    for (const format of shared.formats) {
      const mine: Output[] = [];
      for (const write of writes) {
        const out = new Output(path.join(outDir, `${write.node.name}.tar.${format}`));
        outputs.push(out); // abandoned on failure, even if the next one cannot be opened
        mine.push(out);
      }
      writeFormat(shared, format, writes, mine);
      mine.forEach((out, n) => writes[n]!.files.push(out.end()));
      // The rebuilt chunks of this format are written: let them go.
      for (const write of writes) for (const i of write.touched.keys()) write.rebuilt.delete(`${format}:${i}`);
    }
    for (const out of outputs) await out.commit();
  } catch (error) {
    await Promise.all(outputs.map((out) => out.abandon()));
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
    rebuiltChunks: write.touched.size,
    chunks: shared.chunks.length,
    manifest,
  };
}

/**
 * Nodes written together: each untouched chunk is read once per batch. Bounded because a batch holds its
 * nodes' rebuilt chunks in memory and an open file per node.
 */
const BATCH = 8;

/**
 * Writes NODE.tar.gz (and NODE.tar.zst) and NODE.manifest.json into outDir for each node, in batches
 * (see writeArchives); `written` hears of each node as its files are in place. Results in the order given.
 */
export async function writeNodeArtifacts(
  shared: SharedBase,
  nodes: readonly ArtifactNode[],
  outDir: string,
  written: (artifact: NodeArtifact) => void = () => undefined,
): Promise<NodeArtifact[]> {
  checkNames(nodes);
  const results: NodeArtifact[] = [];
  for (let at = 0; at < nodes.length; at += BATCH) {
    const writes = nodes.slice(at, at + BATCH).map((node): NodeWrite => {
      const merge = mergeOverlay(shared.base, node.files, { mtime: shared.epoch, removes: node.removes ?? [] });
      return { node, merge, touched: touchedChunks(shared, merge), rebuilt: new Map(), files: [] };
    });
    await writeArchives(shared, writes, outDir);
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

/** Everything for a cluster: the base compressed once, then the nodes, then SHA256SUMS. */
export async function buildArtifacts(
  base: BaseIndex,
  nodes: readonly ArtifactNode[],
  outDir: string,
  options: ArtifactOptions = {},
): Promise<ArtifactsResult> {
  checkNames(nodes); // before the base is packed
  await mkdir(outDir, { recursive: true });
  await sweepStaleTemporaries(outDir); // chunks and half-written archives of killed runs
  const work = temporaryName(path.join(outDir, 'base-chunks'));
  try {
    let started = performance.now();
    const shared = await prepareSharedBase(base, work, options);
    const baseMs = performance.now() - started;
    started = performance.now();
    const results = await writeNodeArtifacts(shared, nodes, outDir);
    const nodesMs = performance.now() - started;
    const sums = sha256sums(results.flatMap((r) => r.files));
    await writeFile(path.join(outDir, 'SHA256SUMS'), sums, { mode: 0o644 });
    return { dir: outDir, nodes: results, sha256sums: sums, timings: { baseMs, nodesMs } };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
