/**
 * Which compressions a build's archives get (gz, plus zst where the zstd program is installed) and how
 * they are described in the keys of packed chunks and kept prefixes: another compressor version may give
 * other bytes.
 */
import { findProgram, requirePrograms, runTool } from '../tools.js';
import type { Format } from './tar-bytes.js';

/** How a base is cut and compressed; every build uses PACKING_DEFAULTS (tests may differ). */
export interface Packing {
  /** Target uncompressed size of a shared base chunk. */
  chunkBytes?: number;
  gzipLevel?: number;
  zstdLevel?: number;
}

export async function zstdAvailable(): Promise<boolean> {
  return findProgram('zstd') !== undefined;
}

/** The packing every build uses: chunk size and compression levels (PackOptions may differ, in tests). */
export const PACKING_DEFAULTS = { chunkBytes: 4 << 20, gzipLevel: 6, zstdLevel: 3 } as const;

/** zstd program path → its version line, asked once per program. */
const zstdVersions = new Map<string, Promise<string>>();

function zstdVersion(): Promise<string> {
  const program = findProgram('zstd') ?? 'zstd';
  let version = zstdVersions.get(program);
  if (!version) zstdVersions.set(program, (version = runTool(program, ['-V'], { why: '.tar.zst artifacts' }).then((r) => r.stdout.trim())));
  return version;
}

/**
 * How the archives of these formats are compressed, as a key: formats, chunk size, levels and the
 * compressors' versions (Node's zlib; the zstd CLI's, asked once), since another version may give other
 * bytes. Cached chunks and kept prefixes are reused only under the same description.
 */
export async function compressors(formats: readonly Format[], options: Packing = {}): Promise<string> {
  const zstd = formats.includes('zst') ? await zstdVersion() : null;
  return JSON.stringify({
    formats,
    chunk: options.chunkBytes ?? PACKING_DEFAULTS.chunkBytes,
    gz: formats.includes('gz') ? { level: options.gzipLevel ?? PACKING_DEFAULTS.gzipLevel, zlib: process.versions.zlib } : null,
    zst: zstd ? { level: options.zstdLevel ?? PACKING_DEFAULTS.zstdLevel, zstd } : null,
  });
}

export async function resolveFormats(requested: Format[] | undefined): Promise<Format[]> {
  if (requested) {
    if (requested.includes('zst')) requirePrograms([{ program: 'zstd', why: '.tar.zst artifacts (--compress zst)' }]);
    return [...new Set(requested)];
  }
  return (await zstdAvailable()) ? ['gz', 'zst'] : ['gz'];
}
