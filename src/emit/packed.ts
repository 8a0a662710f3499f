/**
 * The base's compressed chunks, kept between builds: a rebuild after a
 * template change packs only the chunks the change touches, never the base.
 * Keyed by everything the chunk bytes depend on (the base's identity, the
 * cluster layer, SOURCE_DATE_EPOCH, formats and levels), so a hit is exact.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { compressors, resolveFormats } from './compressors.js';
import { ARCHIVE_LAYOUT } from './artifact.js';
import { prepareSharedBase, type Chunk, type PackOptions, type SharedBase } from './shared-base.js';
import type { BaseIndex } from '../base/open.js';
import { stageIntoCache } from '../cache.js';
import { BufferPool, type Format } from './tar-bytes.js';

/** Bumped whenever the packing changes what bytes a chunk holds. */
export const PACKING = 'chunks-1';

interface Stored {
  formats: Format[];
  epoch: number;
  levels: { gz: number; zst: number };
  chunks: { start: number; end: number; firstPath: string; files: Partial<Record<Format, string>> }[];
  endOfArchive: Partial<Record<Format, string>>;
}

export async function packedBase(
  base: BaseIndex,
  identity: string,
  cacheDir: string,
  options: PackOptions,
): Promise<{ shared: SharedBase; hit: boolean }> {
  const formats = await resolveFormats(options.formats);
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        PACKING,
        ARCHIVE_LAYOUT,
        identity,
        epoch: options.sourceDateEpoch,
        compressors: await compressors(formats, options),
      }),
    )
    .digest('hex');
  const packs = path.join(cacheDir, 'packed');
  const dir = path.join(packs, key);
  const index = path.join(dir, 'chunks.json');
  if (existsSync(index)) {
    const stored = JSON.parse(await readFile(index, 'utf8')) as Stored;
    const chunks: Chunk[] = stored.chunks.map((c) => ({
      ...c,
      files: Object.fromEntries(Object.entries(c.files).map(([f, name]) => [f, path.join(dir, name!)])),
    }));
    const endOfArchive = Object.fromEntries(Object.entries(stored.endOfArchive).map(([f, b64]) => [f, Buffer.from(b64!, 'base64')]));
    const concurrency = options.concurrency ?? 3;
    return {
      shared: {
        base,
        epoch: stored.epoch,
        formats: stored.formats,
        chunks,
        endOfArchive,
        levels: stored.levels,
        concurrency,
        pool: new BufferPool(),
      },
      hit: true,
    };
  }
  await stageIntoCache(
    dir,
    async (staging) => {
      const shared = await prepareSharedBase(base, staging, { ...options, formats });
      const stored: Stored = {
        formats: shared.formats,
        epoch: shared.epoch,
        levels: shared.levels,
        chunks: shared.chunks.map((c) => ({
          start: c.start,
          end: c.end,
          firstPath: c.firstPath,
          files: Object.fromEntries(Object.entries(c.files).map(([f, file]) => [f, path.basename(file!)])),
        })),
        endOfArchive: Object.fromEntries(Object.entries(shared.endOfArchive).map(([f, b]) => [f, b!.toString('base64')])),
      };
      await writeFile(path.join(staging, 'chunks.json'), JSON.stringify(stored));
    },
    { parentMode: 0o700 },
  );
  return packedBase(base, identity, cacheDir, options).then((r) => ({ ...r, hit: false }));
}
