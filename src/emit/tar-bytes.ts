/**
 * Tar bytes of entries, compressed as one gzip member or zstd frame, through a
 * few reused 1 MiB buffers.
 *
 * Why reused: packing a 2 GB base allocated every MiB twice (a read, then a
 * concatenation) and a fresh block for every header; V8 frees such buffers
 * only after ~64 MiB of them pile up, and the process kept that high-water
 * mark. Here the tar bytes are written straight into a buffer of the pool
 * (headers, file contents read into place, padding), handed to the
 * compressor, and taken back once the compressor says it has consumed them
 * (a write's callback), so packing needs 3 buffers a job whatever the base's
 * size. The compressor's output is the only allocation left.
 *
 * Deflate and zstd output does not depend on how the input is cut into
 * writes, so the bytes are the same as when they were fed in other pieces.
 */
import { constants } from 'node:fs';
import * as fsSync from 'node:fs';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import type { Writable } from 'node:stream';
import { RootfsError } from '../entries/errors.js';
import { encodeHeader, padding, type TarHeader } from '../entries/tarformat.js';
import { startTool } from '../tools.js';
import type { NodeEntry } from '../entries/place.js';

export type Format = 'gz' | 'zst';

/** The size of a piece handed to a compressor, and of the compressor's output slices. */
export const PIECE = 1 << 20;

/** Pieces handed to a compressor and not yet consumed, per job: one compressing, one queued. */
const IN_FLIGHT = 2;

/** Free 1 MiB buffers. A piece is given back when its compressor has consumed it, never before. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly made = new WeakSet<ArrayBufferLike>();

  take(): Buffer {
    const reused = this.free.pop();
    if (reused) return reused;
    const fresh = Buffer.allocUnsafeSlow(PIECE);
    this.made.add(fresh.buffer);
    return fresh;
  }

  /** Takes back a piece of a buffer this pool made (a last piece may be shorter); anything else is left alone. */
  give(piece: Buffer): void {
    if (this.made.has(piece.buffer)) this.free.push(Buffer.from(piece.buffer, 0, PIECE));
  }
}

/** Every entry keeps the mtime it has: the base's own, or SOURCE_DATE_EPOCH for what netroot writes (mergeOverlay). */
function tarHeader(entry: NodeEntry): TarHeader {
  return { ...entry, size: entry.type === 'file' ? entry.size : 0, mtime: Math.max(0, entry.mtime) };
}

const ZEROS = Buffer.alloc(512);
const probe = Buffer.alloc(1);

/**
 * The tar bytes of entries in full pieces of the pool (the last one shorter).
 * Synchronous reads on purpose: files come from the page cache, and the
 * compressor works on the thread pool meanwhile. A base file is opened
 * without following a symlink in its place, and one whose size changed since
 * it was indexed stops the archive.
 */
export function* tarBytes(entries: Iterable<NodeEntry>, pool: BufferPool): Generator<Buffer> {
  let piece = pool.take();
  let at = 0;
  /** Hands on the piece once it is full, and starts the next. */
  function* ifFull(): Generator<Buffer> {
    if (at < PIECE) return;
    yield piece;
    piece = pool.take();
    at = 0;
  }
  /** Copies bytes in, yielding each piece that fills up. */
  function* put(bytes: Buffer): Generator<Buffer> {
    for (let from = 0; from < bytes.length;) {
      const copied = bytes.copy(piece, at, from);
      at += copied;
      from += copied;
      yield* ifFull();
    }
  }
  function* readInto(entry: NodeEntry): Generator<Buffer> {
    const fd = fsSync.openSync(entry.content!, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let left = entry.size;
      while (left > 0) {
        const read = fsSync.readSync(fd, piece, at, Math.min(left, PIECE - at), null);
        if (read === 0) break;
        left -= read;
        at += read;
        yield* ifFull();
      }
      if (left !== 0 || fsSync.readSync(fd, probe, 0, 1, null) !== 0)
        throw new RootfsError(`base file ${entry.path} changed size while the artifact was written (indexed ${entry.size} bytes)`);
    } finally {
      fsSync.closeSync(fd);
    }
  }
  for (const entry of entries) {
    yield* put(encodeHeader(tarHeader(entry)));
    if (entry.type !== 'file') continue;
    if (entry.data) yield* put(entry.data);
    else yield* readInto(entry);
    yield* put(ZEROS.subarray(0, padding(entry.size)));
  }
  if (at) yield piece.subarray(0, at);
  else pool.give(piece);
}

/**
 * Writes pieces to a compressor's input, at most IN_FLIGHT unconsumed at a
 * time, giving each back to the pool when its write completes. Stops at the
 * first failure, of the pieces (a base file that changed) or of the input.
 */
async function feed(input: Writable, pieces: Iterable<Buffer>, pool: BufferPool): Promise<void> {
  const writes: Promise<void>[] = [];
  const failed = once(input, 'error').then(([error]) => Promise.reject(error as Error));
  failed.catch(() => {});
  try {
    for (const piece of pieces) {
      writes.push(
        new Promise<void>((resolve, reject) =>
          input.write(piece, (error) => {
            pool.give(piece);
            if (error) reject(error);
            else resolve();
          }),
        ),
      );
      if (writes.length >= IN_FLIGHT) await Promise.race([writes.shift()!, failed]);
    }
    await Promise.race([Promise.all(writes), failed]);
    input.end();
  } catch (error) {
    input.destroy(error as Error);
    throw error;
  } finally {
    for (const write of writes) write.catch(() => {});
  }
}

/** Compresses the pieces as one gzip member or zstd frame, handing the output to `sink` in order. */
export async function compress(
  format: Format,
  level: number,
  pieces: Iterable<Buffer>,
  sink: (output: Buffer) => void,
  pool: BufferPool,
): Promise<void> {
  if (format === 'gz') {
    // 1 MiB output slices: fewer round trips between the thread pool and the main thread than the default 16 KiB.
    const gzip = createGzip({ level, chunkSize: PIECE });
    gzip.on('data', sink);
    const ended = once(gzip, 'end');
    ended.catch(() => {});
    await feed(gzip, pieces, pool);
    await ended;
    return;
  }
  const { child, done } = startTool('zstd', ['-q', '-c', `-${level}`], {
    stdin: 'pipe',
    streamStdout: true,
    what: 'compressing an artifact with zstd',
    why: '.tar.zst artifacts',
  });
  const drain = (async () => {
    for await (const output of child.stdout as AsyncIterable<Buffer>) sink(output);
  })();
  drain.catch(() => {});
  // On a failure of the pieces, stdin is closed and zstd ends by itself; its status comes first, as its own complaint says more.
  const [fed] = await Promise.allSettled([feed(child.stdin!, pieces, pool)]);
  await done();
  if (fed.status === 'rejected') throw fed.reason;
  await drain;
}
