/**
 * What a node's deployed tree holds, file by file: type, mode, owner and, for
 * files, size and sha256. A deploy compares the new build's manifest with the
 * one recorded on the target at the last deploy, so nothing on the target is
 * read back or hashed, and a file is counted as changed by its content, never
 * by an mtime (a build clamps every mtime to SOURCE_DATE_EPOCH).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
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

/** Every entry under `root`, except the subtrees in `skip` (relative paths); never follows a symlink. */
export async function readManifest(root: string, skip: readonly string[] = []): Promise<Manifest> {
  const out: Manifest = {};
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(rel ? path.join(root, rel) : root)).sort();
    for (const name of names) {
      const p = rel ? `${rel}/${name}` : name;
      if (under(p, skip)) continue;
      if (p.includes('\n')) throw new Error(`${path.join(root, p)}: a file name with a newline cannot be deployed`);
      const full = path.join(root, p);
      const info = await lstat(full);
      const base = { m: info.mode & 0o7777, u: info.uid, g: info.gid };
      if (info.isDirectory()) {
        out[p] = { t: 'd', ...base };
        await walk(p);
      } else if (info.isSymbolicLink()) out[p] = { t: 'l', ...base, l: await readlink(full) };
      else if (info.isFile()) out[p] = { t: 'f', ...base, s: info.size, h: await hashFile(full) };
      else out[p] = { t: 'o', ...base, r: info.rdev };
    }
  };
  await walk('');
  return out;
}

export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.t === b.t && a.m === b.m && a.u === b.u && a.g === b.g && a.h === b.h && a.l === b.l && a.r === b.r && a.s === b.s;
}
