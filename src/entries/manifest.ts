/**
 * What a node's deployed tree holds, file by file: type, mode, owner and, for
 * files, size and sha256. A deploy compares the new build's manifest with the
 * one recorded on the target at the last deploy, so nothing on the target is
 * read back or hashed, and a file is counted as changed by its content, never
 * by an mtime (base files keep the base's, netroot's own get SOURCE_DATE_EPOCH).
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from '../tools.js';

export interface ManifestEntry {
  /** f file, l symlink, d directory, o anything else (device, fifo, socket). */
  t: 'f' | 'l' | 'd' | 'o';
  /** Permission bits with setuid/setgid/sticky. */
  m: number;
  u: number;
  g: number;
  s?: number;
  h?: string;
  l?: string;
  /** Device number, for device nodes. */
  r?: number;
}

/** Relative path (no leading "/") → entry. */
export type Manifest = Record<string, ManifestEntry>;

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `inside(p, roots)`: p is one of the roots or below one. */
export function under(p: string, roots: readonly string[]): boolean {
  return underAny(roots)(p);
}

/** `under` for one list of roots and many paths (every entry of a node tree): one regular expression, made once. */
export function underAny(roots: readonly string[]): (p: string) => boolean {
  if (roots.length === 0) return () => false;
  const re = new RegExp(`^(?:${roots.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})(?:/|$)`);
  return (p) => re.test(p);
}

/**
 * Digests already computed, by path: a file whose inode, size, mtime and ctime
 * are unchanged has the same bytes (any write changes its ctime, which no one
 * can set back), so an unchanged or revised-in-place node tree is not re-read.
 */
export type HashCache = Map<string, string>;

/** The path, and find's size, inode, mtime and ctime (seconds with their fraction, as find prints them). */
const cacheKey = (p: string, stamp: string): string => `${p}\0${stamp}`;

/**
 * The cache file is a flat JSON array, key, digest, key, digest…: a tree's 50 000 keys parse in a
 * third of the time an object of them takes. Anything else (an older object form, a damaged file) is
 * an empty cache: it only costs reading the files again.
 */
export async function loadHashCache(file: string): Promise<HashCache> {
  const cache: HashCache = new Map();
  try {
    const flat = JSON.parse(await readFile(file, 'utf8')) as unknown;
    if (!Array.isArray(flat)) return cache;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (typeof flat[i] === 'string' && typeof flat[i + 1] === 'string') cache.set(flat[i] as string, flat[i + 1] as string);
    }
  } catch {
    // missing or unreadable: empty
  }
  return cache;
}

/** How many files a cache file may miss, or hold stale, and still not be rewritten. */
const FEW = 32;

/**
 * Caches whose file is worth rewriting: readManifest found more than a few digests missing or stale.
 * A few files read again (the templates a deploy changed) cost less than rewriting the cache of a whole
 * tree, and a stale entry never matches.
 */
const worthSaving = new WeakSet<HashCache>();

/**
 * Where a deploy keeps the digests of a node's tree in a build output (`clusterDir`), and where the build
 * that writes the tree leaves them.
 */
export function treeDigestsFile(cacheDir: string, clusterDir: string, node: string): string {
  return path.join(cacheDir, 'deploy', pathKey(clusterDir), `${node}.json`);
}

/** Where a build keeps the digests of a base directory it copies node trees from. */
export function baseDigestsFile(cacheDir: string, baseRoot: string): string {
  return path.join(cacheDir, 'base-digests', `${pathKey(baseRoot)}.json`);
}

/** A directory's path as a short file name in the cache. */
const pathKey = (dir: string): string => createHash('sha256').update(dir).digest('hex').slice(0, 16);

export async function saveHashCache(file: string, cache: HashCache): Promise<void> {
  if (!worthSaving.has(cache)) return;
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify([...cache].flat()));
  await rename(tmp, file);
}

/**
 * The digest of the file at a relative path, where the caller knows what it wrote there (the build: the
 * base's file it has just copied, an overlay's bytes); `size` is the file's, as a check.
 */
export type KnownDigest = (relative: string, size: number) => string | undefined;

/**
 * Every entry under `root`, except the subtrees in `skip` (relative paths); never follows a symlink.
 * With a cache, digests are taken from it where the file is unchanged, and it is left holding this tree's only.
 * `known` gives the digests of files the caller has just written, so they are not read back. The cache
 * may still be loading: the tree is listed meanwhile.
 * One `find` reads the tree: a node tree is tens of thousands of entries, and find lists them in a
 * fraction of the time Node's lstat takes, one call at a time.
 */
export async function readManifest(
  root: string,
  skip: readonly string[] = [],
  cacheLoading?: HashCache | Promise<HashCache>,
  known?: KnownDigest,
): Promise<Manifest> {
  const used: HashCache = new Map();
  const out: Manifest = {};
  const unhashed: { p: string; key: string }[] = [];
  /** Digests not taken from the cache: known to the caller, or read. */
  let added = 0;
  // NUL-separated: type, mode (octal, with setuid/setgid/sticky), owner, size, inode, mtime, ctime, path; then the link's target.
  const listing = runTool('find', ['.', '-mindepth', '1', '-printf', '%y %m %U %G %s %i %T@ %C@ %P\\0%l\\0'], {
    cwd: root,
    maxBuffer: 1 << 30,
    what: `listing ${root}`,
  });
  // find runs while a cache still loading is parsed (several trees are read at once); its failure is
  // thrown below, once awaited, and is not an unhandled rejection meanwhile.
  listing.catch(() => undefined);
  const cache = await cacheLoading;
  const { stdout } = await listing;
  const fields = stdout.split('\0');
  const skipped = underAny(skip);
  for (let i = 0; i + 1 < fields.length; i += 2) {
    // Eight words, then the path (which may hold spaces): split by hand, a regular expression a line was
    // most of the time. The cache key is the path and one slice, size to ctime: no word is joined again.
    const line = fields[i]!;
    const ends: number[] = [];
    for (let w = 0, at = 0; w < 8; w++) {
      const space = line.indexOf(' ', at);
      if (space < 0) throw new Error(`${root}: find printed ${JSON.stringify(line)}, which is not an entry`);
      ends.push(space);
      at = space + 1;
    }
    const p = line.slice(ends[7]! + 1);
    if (!p) throw new Error(`${root}: find printed ${JSON.stringify(line)}, which is not an entry`);
    if (skipped(p)) continue;
    if (p.includes('\n')) throw new Error(`${path.join(root, p)}: a file name with a newline cannot be deployed`);
    const type = line.slice(0, ends[0]);
    const m = parseInt(line.slice(ends[0]! + 1, ends[1]), 8);
    const u = Number(line.slice(ends[1]! + 1, ends[2]));
    const g = Number(line.slice(ends[2]! + 1, ends[3]));
    if (type === 'd') out[p] = { t: 'd', m, u, g };
    else if (type === 'l') out[p] = { t: 'l', m, u, g, l: fields[i + 1]! };
    else if (type === 'f') {
      const size = Number(line.slice(ends[3]! + 1, ends[4]));
      const key = cacheKey(p, line.slice(ends[3]! + 1, ends[7]));
      const cached = cache?.get(key);
      const h = cached ?? known?.(p, size);
      out[p] = h ? { t: 'f', m, u, g, s: size, h } : { t: 'f', m, u, g, s: size };
      if (!h) unhashed.push({ p, key });
      else {
        used.set(key, h);
        if (!cached) added++;
      }
    } else out[p] = { t: 'o', m, u, g, r: Number(lstatSync(path.join(root, p), { bigint: true }).rdev) };
  }
  for (const { p, key } of unhashed) {
    const h = await hashFile(path.join(root, p));
    used.set(key, h);
    out[p]!.h = h;
    added++;
  }
  if (cache) {
    const fromCache = used.size - added;
    const stale = cache.size - fromCache;
    // A cache that held none of this tree (none yet, or another tree's) is written whatever its size.
    if (added > FEW || stale > FEW || (fromCache === 0 && added > 0)) worthSaving.add(cache);
    else worthSaving.delete(cache);
    if (added || stale) {
      cache.clear();
      for (const [k, v] of used) cache.set(k, v);
    }
  }
  return out;
}

export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.t === b.t && a.m === b.m && a.u === b.u && a.g === b.g && a.h === b.h && a.l === b.l && a.r === b.r && a.s === b.s;
}
