/**
 * What a node's deployed tree holds, file by file: type, mode, owner and, for
 * files, size and sha256. A deploy compares the new build's manifest with the
 * one recorded on the target at the last deploy, so nothing on the target is
 * read back or hashed, and a file is counted as changed by its content, never
 * by an mtime (base files keep the base's, netroot's own get SOURCE_DATE_EPOCH).
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

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
  return roots.some((r) => p === r || p.startsWith(`${r}/`));
}

/**
 * Digests already computed, by path: a file whose inode, size, mtime and ctime
 * are unchanged has the same bytes (any write changes its ctime, which no one
 * can set back), so an unchanged or revised-in-place node tree is not re-read.
 */
export type HashCache = Map<string, string>;

const cacheKey = (p: string, info: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string =>
  `${p}\0${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;

export async function loadHashCache(file: string): Promise<HashCache> {
  try {
    return new Map(Object.entries(JSON.parse(await readFile(file, 'utf8')) as Record<string, string>));
  } catch {
    return new Map(); // a missing or unreadable cache only costs reading the files again
  }
}

export async function saveHashCache(file: string, cache: HashCache): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(Object.fromEntries(cache)));
  await rename(tmp, file);
}

/**
 * Every entry under `root`, except the subtrees in `skip` (relative paths); never follows a symlink.
 * With a cache, digests are taken from it where the file is unchanged, and it is left holding this tree's only.
 */
export async function readManifest(root: string, skip: readonly string[] = [], cache?: HashCache): Promise<Manifest> {
  const used: HashCache = new Map();
  const out: Manifest = {};
  const unhashed: { p: string; key: string; full: string }[] = [];
  // The walk is synchronous: a node tree is tens of thousands of entries, and one lstat through
  // the thread pool costs several times the call itself. Only files the cache lacks are read, after it.
  const walk = (rel: string): void => {
    const names = readdirSync(rel ? path.join(root, rel) : root).sort();
    for (const name of names) {
      const p = rel ? `${rel}/${name}` : name;
      if (under(p, skip)) continue;
      if (p.includes('\n')) throw new Error(`${path.join(root, p)}: a file name with a newline cannot be deployed`);
      const full = path.join(root, p);
      const info = lstatSync(full, { bigint: true });
      const base = { m: Number(info.mode & 0o7777n), u: Number(info.uid), g: Number(info.gid) };
      if (info.isDirectory()) {
        out[p] = { t: 'd', ...base };
        walk(p);
      } else if (info.isSymbolicLink()) out[p] = { t: 'l', ...base, l: readlinkSync(full) };
      else if (info.isFile()) {
        const key = cacheKey(p, info);
        const h = cache?.get(key);
        out[p] = { t: 'f', ...base, s: Number(info.size), ...(h ? { h } : {}) };
        if (h) used.set(key, h);
        else unhashed.push({ p, key, full });
      } else out[p] = { t: 'o', ...base, r: Number(info.rdev) };
    }
  };
  walk('');
  for (const { p, key, full } of unhashed) {
    const h = await hashFile(full);
    used.set(key, h);
    out[p]!.h = h;
  }
  if (cache) {
    cache.clear();
    for (const [k, v] of used) cache.set(k, v);
  }
  return out;
}

export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.t === b.t && a.m === b.m && a.u === b.u && a.g === b.g && a.h === b.h && a.l === b.l && a.r === b.r && a.s === b.s;
}
