/**
 * The shared base of every node's archive (see artifact.ts): the base's
 * entries, sorted by path, cut into chunks of ~chunkBytes of tar data (cut
 * only between entries; the cut depends on the base alone), each compressed
 * once per format into its own gzip member or zstd frame. packed.ts keeps
 * them between builds.
 */
import * as fsSync from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { BaseIndex } from '../base/open.js';
import type { EntryTable } from '../base/entry-table.js';
import { writeAll } from '../entries/io.js';
import { BLOCK, END_OF_ARCHIVE, padding } from '../entries/tarformat.js';
import { PACKING_DEFAULTS, resolveFormats, type Packing } from './compressors.js';
import { sourceDateEpoch } from './epoch.js';
import { BufferPool, compress, tarBytes, type Format } from './tar-bytes.js';

export interface PackOptions extends Packing {
  /** mtime of what netroot writes (overlay files, new directories); default sourceDateEpoch(base). */
  sourceDateEpoch?: number;
  /** Default: gz, plus zst when the zstd CLI is installed. */
  formats?: Format[];
  /** Chunks compressed at once; default: CPU count + 1. */
  concurrency?: number;
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

/** Runs `work` on every item, `limit` at a time. */
export async function mapLimit<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** Compresses every chunk of the base once, into `workDir`. */
export async function prepareSharedBase(base: BaseIndex, workDir: string, options: PackOptions = {}): Promise<SharedBase> {
  const epoch = options.sourceDateEpoch ?? sourceDateEpoch(base);
  const formats = await resolveFormats(options.formats);
  const levels = { gz: options.gzipLevel ?? PACKING_DEFAULTS.gzipLevel, zst: options.zstdLevel ?? PACKING_DEFAULTS.zstdLevel };
  const chunks = planChunks(base.entries, options.chunkBytes ?? PACKING_DEFAULTS.chunkBytes);
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
