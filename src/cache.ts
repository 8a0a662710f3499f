/**
 * The cache (~/.cache/netroot): extracted bases, decompressed disk images,
 * debootstrapped tarballs, packed chunks, k3s binaries. Each entry lives at a
 * path derived from a key; it is produced under a temporary name in the same
 * directory and renamed into place (stageIntoCache), so a reader never sees
 * half an entry and two concurrent builds of the same key both succeed.
 * Temporaries left by a killed run are removed by the next run that finds them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

const TEMP = /^\.(.+)\.tmp-(\d+)-[0-9a-f]+$/;

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** sha256 of a file's bytes, streamed so a multi-gigabyte image is not read into memory. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether a process still runs (EPERM: it exists but belongs to someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The `.NAME.tmp-PID-…` temporaries in `dir`: what each is for (NAME) and which process writes it. */
async function temporariesIn(dir: string): Promise<{ entry: string; target: string; pid: number }[]> {
  const found: { entry: string; target: string; pid: number }[] = [];
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    const match = TEMP.exec(entry);
    if (match) found.push({ entry, target: match[1]!, pid: Number(match[2]) });
  }
  return found;
}

/** Removes `.NAME.tmp-PID-…` entries whose process is gone; a live build's temporary is left alone. */
export async function sweepStaleTemporaries(dir: string): Promise<void> {
  for (const { entry, pid } of await temporariesIn(dir)) {
    if (!alive(pid)) await rm(path.join(dir, entry), { recursive: true, force: true });
  }
}

export function temporaryName(final: string): string {
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

export interface StageOptions {
  /** Mode of the directories made above the entry (0o700 where it holds a base's setuid files and devices). */
  parentMode?: number;
  /** Told when another process put the entry there first, so what `build` returned does not describe it. */
  onKeptTheirs?: () => void;
}

/**
 * Makes the cache entry `final` (a file or a directory): `build` writes it at
 * the temporary path it is given, which is then renamed into place. When
 * another process put the same entry there first, theirs is kept. Whatever
 * happens, the temporary is gone afterwards. Returns what `build` returns.
 */
export async function stageIntoCache<T>(final: string, build: (staging: string) => Promise<T>, options: StageOptions = {}): Promise<T> {
  const parent = path.dirname(final);
  await mkdir(parent, { recursive: true, ...(options.parentMode !== undefined ? { mode: options.parentMode } : {}) });
  await sweepStaleTemporaries(parent); // left by killed runs
  const staging = temporaryName(final);
  try {
    const built = await build(staging);
    await rename(staging, final).catch((error: NodeJS.ErrnoException) => {
      // A directory cannot be renamed over another: the same entry, made by another process first.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      options.onKeptTheirs?.();
    });
    return built;
  } finally {
    // rm does not follow symlinks: a hostile `etc -> /` in a staged base is removed, not its target.
    await rm(staging, { recursive: true, force: true });
  }
}

/** The pid of another live process building `final` now (its temporary sits beside it), if any. */
async function otherBuilder(final: string): Promise<number | undefined> {
  const other = (await temporariesIn(path.dirname(final))).find(
    (t) => t.target === path.basename(final) && t.pid !== process.pid && alive(t.pid),
  );
  return other?.pid;
}

export interface CachedFileOptions {
  /** Told when another process is building the same file and this one waits for it instead. */
  onWait?: (pid: number) => void;
  /** How long to wait for that process (default 2 hours); then this one builds. */
  waitMs?: number;
  pollMs?: number;
}

/**
 * The cached file at `final`, building it first when absent. `build` writes
 * to the path it is given; if it throws, the temporary is removed and the
 * error propagates. While another process builds the same file (a CI job that
 * prepared the base in the background, a second terminal), this one waits for
 * its result rather than spend the same half hour; if that process dies
 * without one, this one builds.
 */
export async function cachedFile(
  final: string,
  build: (temporary: string) => Promise<void>,
  options: CachedFileOptions = {},
): Promise<{ path: string; built: boolean }> {
  const exists = (): Promise<boolean> =>
    stat(final).then(
      (s) => s.isFile(),
      () => false,
    );
  if (await exists()) return { path: final, built: false };
  await mkdir(path.dirname(final), { recursive: true });
  await sweepStaleTemporaries(path.dirname(final));
  const other = await otherBuilder(final);
  if (other !== undefined) {
    options.onWait?.(other);
    const until = Date.now() + (options.waitMs ?? 2 * 3600_000);
    while (Date.now() < until && (await otherBuilder(final)) !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 2_000));
    }
    if (await exists()) return { path: final, built: false };
  }
  await stageIntoCache(final, build);
  return { path: final, built: true };
}

/**
 * sha256 of a file, remembered by its identity (device, inode, size, mtime and
 * ctime), so that an unchanged rebuild does not read a multi-gigabyte base
 * again. ctime catches bytes rewritten with the size and mtime put back.
 */
export async function rememberedDigest(file: string, cacheDir: string): Promise<string> {
  const { readFile, writeFile } = await import('node:fs/promises');
  const info = await stat(file, { bigint: true });
  const key = `${path.resolve(file)}|${info.dev}|${info.ino}|${info.size}|${info.mtimeNs}|${info.ctimeNs}`;
  const store = path.join(cacheDir, 'digests.json');
  const known = (await readFile(store, 'utf8').then(
    (t) => JSON.parse(t) as Record<string, string>,
    () => ({}),
  )) as Record<string, string>;
  const hit = known[key];
  if (hit && /^[0-9a-f]{64}$/.test(hit)) return hit;
  const digest = await sha256File(file);
  known[key] = digest;
  await stageIntoCache(store, (temporary) => writeFile(temporary, JSON.stringify(known)));
  return digest;
}
