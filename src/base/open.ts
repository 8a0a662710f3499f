/**
 * Open a base root filesystem — a directory, or a tarball (.tar, gzip, xz,
 * zstd; recognised by magic bytes, not by name) — and describe it as an INDEX:
 * every entry's normalised path, type, mode, owner, size, mtime, link target,
 * device numbers and xattrs, plus where its bytes are on disk.
 *
 * The index, not the disk, is the source of truth for metadata: a tarball
 * extracted without root keeps owners and device nodes only in the index, and
 * the artifact writer never looks at the extracted copy's owners.
 *
 * A tarball is extracted once into <cache>/bases/<sha256 of the tarball>/ and
 * reused by later runs. Extraction is defensive because a base can come from
 * anywhere: members with absolute paths or `..`, hard links that leave the
 * archive, writes below a symlink that the archive itself created (`etc -> /`
 * then `etc/passwd`), duplicate members and truncated archives are rejected
 * with a BaseArchiveError naming the member; the half-extracted staging
 * directory is removed; nothing is written outside the cache.
 */
import { createHash } from 'node:crypto';
import { createReadStream, constants, type BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import { mkdir, open, readFile, rm, stat, realpath, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { sha256, sha256File, stageIntoCache } from '../cache.js';
import { BaseArchiveError, RootfsError } from '../rootfs/errors.js';
import { writeAll } from '../rootfs/io.js';
import { ancestors, comparePaths, normalise, unsafeReason } from '../rootfs/paths.js';
import { readTar, TarReadError, type TarMember, type TarMemberHeader } from '../rootfs/tarformat.js';
import { applyXattrs, readTreeXattrs, requireXattrTools, type Xattrs } from '../rootfs/xattr.js';
import { runTool, startTool } from '../tools.js';
import { isRoot } from '../privileges.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface BaseEntry {
  /** Normalised relative POSIX path; '' is the root directory. */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of a regular file; 0 for everything else, hard links included. */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink: the target as stored. Hard link: the normalised path of the entry holding the content. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Xattrs;
  /** Absolute path of the bytes (type file): the file in a directory base, or in the extracted cache. */
  content?: string;
}

export interface BaseIndex {
  kind: 'directory' | 'tarball';
  /** Absolute path of what was opened. */
  source: string;
  /** sha256 of a tarball (the cache key). */
  digest?: string;
  /** Set when netroot regenerated the base's initramfs for an NFS root (see netboot.ts): the recipe. */
  netboot?: string;
  /** The directory whose tree matches the index: the directory base itself, or the extracted copy. */
  root: string;
  /**
   * Sorted by path (so the root comes first and every directory before its
   * contents). In a group of hard links the first path holds the content and
   * the others are `hardlink` entries pointing at it.
   */
  entries: BaseEntry[];
  byPath: Map<string, BaseEntry>;
  /** What the tree at `root` carries besides content; what is false lives only in the index. */
  applied: { owners: boolean; devices: boolean; xattrs: boolean };
  /** Things skipped or not applied (sockets, xattrs without the attr tools), for the user to read. */
  warnings: string[];
}

export interface OpenBaseOptions {
  /** Where extracted tarballs are kept; default $XDG_CACHE_HOME/netroot or ~/.cache/netroot. */
  cacheDir?: string;
  /** Apply owners, device nodes and privileged xattrs when extracting; default: running as root. */
  privileged?: boolean;
  /** The tarball's sha256 when the caller already knows it (a remembered digest), so it is not read again. */
  digest?: string;
  /** A directory's directoryIdentity(): with cacheDir, its index is kept in the cache under it. */
  identity?: string;
}

// One place decides whether this runs as root; re-exported for the callers that already import it from here.

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'netroot');
}

export async function openBase(source: string, options: OpenBaseOptions = {}): Promise<BaseIndex> {
  const absolute = path.resolve(source);
  const info = await stat(absolute).catch((error: NodeJS.ErrnoException) => {
    throw new RootfsError(`base ${source} cannot be opened: ${error.code === 'ENOENT' ? 'it does not exist' : error.message}`);
  });
  if (info.isDirectory())
    return options.identity && options.cacheDir
      ? indexDirectoryCached(absolute, options.cacheDir, options.identity)
      : indexDirectory(absolute);
  if (!info.isFile()) throw new RootfsError(`base ${source} is neither a directory nor a tarball`);
  return openTarball(absolute, options.cacheDir ?? defaultCacheDir(), options.privileged ?? isRoot(), options.digest);
}

/** Sorts, builds byPath, and fills `content` of files from the root. */
function finishIndex(partial: Omit<BaseIndex, 'byPath'>): BaseIndex {
  partial.entries.sort((a, b) => comparePaths(a.path, b.path));
  const byPath = new Map<string, BaseEntry>();
  for (const entry of partial.entries) {
    if (entry.type === 'file') entry.content = entry.path === '' ? partial.root : path.join(partial.root, entry.path);
    byPath.set(entry.path, entry);
  }
  return { ...partial, byPath };
}

/**
 * Among paths sharing one inode the first in sort order holds the content and
 * the rest link to it, so an archive lists the content before its links
 * whatever order the base came in, and a directory and a tarball of it index
 * the same.
 */
function canonicaliseLinks(groups: Iterable<BaseEntry[]>): void {
  for (const group of groups) {
    if (group.length < 2) continue;
    const holder = group.find((e) => e.type === 'file')!;
    group.sort((a, b) => comparePaths(a.path, b.path));
    const first = group[0]!;
    const { mode, uid, gid, mtime, size, xattrs } = holder;
    for (const entry of group) {
      Object.assign(entry, { mode, uid, gid, mtime });
      delete entry.xattrs;
      delete entry.linkname;
      if (entry === first) Object.assign(entry, { type: 'file', size }, xattrs ? { xattrs } : {});
      else Object.assign(entry, { type: 'hardlink', size: 0, linkname: first.path });
    }
  }
}

// ---------------------------------------------------------------------------
// Directory bases

function deviceNumbers(rdev: bigint): { devmajor: number; devminor: number } {
  // glibc's gnu_dev_major/minor encoding.
  return {
    devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

function entryFromStat(relative: string, absolute: string, st: BigIntStats): BaseEntry | undefined {
  const common = {
    path: relative,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: 0,
    mtime: Number(st.mtimeMs / 1000n),
  };
  if (st.isFile()) return { ...common, type: 'file', size: Number(st.size) };
  if (st.isDirectory()) return { ...common, type: 'dir' };
  if (st.isSymbolicLink()) return { ...common, type: 'symlink', linkname: fsSync.readlinkSync(absolute, 'utf8') };
  if (st.isCharacterDevice()) return { ...common, type: 'char', ...deviceNumbers(st.rdev) };
  if (st.isBlockDevice()) return { ...common, type: 'block', ...deviceNumbers(st.rdev) };
  if (st.isFIFO()) return { ...common, type: 'fifo' };
  return undefined;
}

/**
 * Walks a directory without following symlinks. Synchronous lstat on purpose:
 * tens of thousands of tiny syscalls are several times faster without a trip
 * through the thread pool each, and nothing else runs meanwhile.
 */
async function indexDirectory(root: string): Promise<BaseIndex> {
  root = await realpath(root);
  const entries: BaseEntry[] = [];
  const inodes = new Map<string, BaseEntry[]>();
  const warnings: string[] = [];
  const visit = (relative: string): void => {
    const absolute = relative === '' ? root : path.join(root, relative);
    const st = fsSync.lstatSync(absolute, { bigint: true });
    const entry = entryFromStat(relative, absolute, st);
    if (!entry) {
      warnings.push(`${relative}: sockets cannot be archived; skipped`);
      return;
    }
    entries.push(entry);
    if (entry.type === 'file' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const group = inodes.get(key);
      if (group) group.push(entry);
      else inodes.set(key, [entry]);
    }
    if (entry.type === 'dir') {
      for (const name of fsSync.readdirSync(absolute).sort()) visit(relative === '' ? name : `${relative}/${name}`);
    }
  };
  visit('');
  const applied = { owners: true, devices: true, xattrs: true };
  // Without getfattr the artifacts would lose file capabilities (ping, for one) that the tree keeps: the build stops instead.
  await requireXattrTools('getfattr', `the file capabilities and other xattrs of the directory base ${root}`);
  const byAbsolute = new Map(entries.map((e) => [e.path === '' ? root : path.join(root, e.path), e]));
  for (const [file, attrs] of await readTreeXattrs(root)) {
    const entry = byAbsolute.get(file);
    if (entry && Object.keys(attrs).length) entry.xattrs = attrs;
  }
  canonicaliseLinks(inodes.values());
  return finishIndex({ kind: 'directory', source: root, root, entries, applied, warnings });
}

/**
 * A directory base's identity without indexing it: one `find` streams every
 * entry's path, type, mode, owner, size, mtime and ctime (nanoseconds),
 * device, inode, link count and link target into a hash. ctime is what no
 * user can set: content rewritten and its mtime put back (`cp -p`, `touch -r`)
 * still moves it, as does a changed xattr. `find -P` never follows a symlink.
 * Entries come in readdir order, which is stable for an unchanged directory;
 * a changed order only costs a rebuild, never a wrong reuse.
 */
export async function directoryIdentity(root: string): Promise<string> {
  const real = await realpath(root);
  const hash = createHash('sha256').update(`${real}\0`);
  const find = startTool('find', ['-P', real, '-printf', '%P\\0%y %m %U %G %s %T@ %C@ %D %i %n\\0%l\\0'], {
    streamStdout: true,
    accept: 'any',
  });
  for await (const chunk of find.child.stdout as AsyncIterable<Buffer>) hash.update(chunk);
  const result = await find.done();
  if (result.status !== 0)
    throw new RootfsError(`base ${root} cannot be read whole: ${String(result.stderr).trim().split('\n').slice(-3).join('; ')}`);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------
// Tarball bases

const INDEX_VERSION = 1;

type Compression = 'gzip' | 'xz' | 'zstd' | 'none';

export async function sniff(file: string): Promise<Compression | 'bzip2'> {
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(6), 0, 6, 0);
    const head = buffer.subarray(0, bytesRead);
    if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
    if (head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
    if (head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
    return 'none';
  } finally {
    await handle.close();
  }
}

/**
 * Runs `consume` over the decompressed bytes. gzip is decoded in-process; xz
 * and zstd by their CLIs (Node 20's zlib has neither). A decompressor's own
 * complaint ("unexpected end of input") wins over the tar reader's, since it
 * says what is really wrong.
 */
async function withDecompressed(file: string, consume: (bytes: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const compression = await sniff(file);
  if (compression === 'bzip2') throw new BaseArchiveError(file, undefined, 'bzip2 tarballs are not supported; use gzip, xz or zstd');
  if (compression === 'none' || compression === 'gzip') {
    const input = createReadStream(file, { highWaterMark: 1 << 20 });
    try {
      if (compression === 'none') return await consume(input);
      const gunzip = createGunzip();
      input.on('error', (error) => gunzip.destroy(error));
      await consume(input.pipe(gunzip));
    } catch (error) {
      // zlib's errors (Z_BUF_ERROR: unexpected end of file, Z_DATA_ERROR) are the archive's fault; the rest are not.
      if (!String((error as NodeJS.ErrnoException).code).startsWith('Z_')) throw error;
      throw new BaseArchiveError(file, undefined, `the archive is truncated or corrupt (gzip: ${(error as Error).message})`, {
        cause: error,
      });
    } finally {
      input.destroy();
    }
    return;
  }
  const { child, done } = startTool(compression, ['-dc', '--', file], {
    streamStdout: true,
    accept: 'any',
    why: `reading the ${compression}-compressed base ${file}`,
  });
  let failure: unknown;
  try {
    await consume(child.stdout as AsyncIterable<Buffer>);
  } catch (error) {
    failure = error;
    // Output ended: the decompressor is exiting by itself, and its status says why. Otherwise stop it.
    if (!child.stdout?.readableEnded) child.kill();
  }
  const result = await done();
  if (result.status !== 0 && result.signal === undefined) {
    // The last line of stderr, without the progress lines zstd overwrites with \r, and without the file name.
    const last =
      String(result.stderr)
        .split(/[\r\n]/)
        .filter((l) => l.trim())
        .pop() ?? `exit ${result.status}`;
    let why = last.trim();
    for (const prefix of [`${compression}: `, `${file}: `]) if (why.startsWith(prefix)) why = why.slice(prefix.length);
    if (compression === 'zstd') why = why.replace(/^.*? : /, ''); // zstd shortens the name it prints: "…e.tar.zst : Read error".
    throw new BaseArchiveError(file, undefined, `the archive is truncated or corrupt (${compression}: ${why})`, { cause: failure });
  }
  if (failure) throw failure;
}

/** The staging directory the archive is written into, and every decision about it. */
class Extractor {
  private readonly entries = new Map<string, BaseEntry>();
  /** Content holder → every path sharing its inode (the holder first). */
  private readonly links = new Map<string, BaseEntry[]>();
  private readonly xattrs: [string, Xattrs][] = [];
  readonly warnings: string[] = [];

  constructor(
    private readonly source: string,
    private readonly tree: string,
    private readonly privileged: boolean,
  ) {
    this.entries.set('', { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
  }

  private fail(member: string, message: string): never {
    throw new BaseArchiveError(this.source, member, message);
  }

  private abs(relative: string): string {
    return relative === '' ? this.tree : path.join(this.tree, relative);
  }

  /**
   * Parents must be directories this extraction made. The staging directory is
   * fresh and private (0700), so this map is the whole truth about it: a
   * symlink the archive created is never walked through.
   */
  private ensureParents(relative: string, member: string): void {
    for (const dir of ancestors(relative)) {
      const existing = this.entries.get(dir);
      if (!existing) {
        fsSync.mkdirSync(this.abs(dir), { mode: 0o700 });
        this.entries.set(dir, { path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
      } else if (existing.type === 'symlink') {
        this.fail(
          member,
          `its parent ${JSON.stringify(dir)} is a symbolic link (-> ${existing.linkname}) made by an earlier member; refusing to write through it`,
        );
      } else if (existing.type !== 'dir') {
        this.fail(member, `its parent ${JSON.stringify(dir)} is not a directory`);
      }
    }
  }

  async add({ header: h, body }: TarMember): Promise<void> {
    const why = unsafeReason(h.name);
    if (why) this.fail(h.name, `${why}; refusing to extract it`);
    const relative = normalise(h.name);
    if (relative === '' && h.type !== 'dir') this.fail(h.name, 'names the root but is not a directory');
    const existing = this.entries.get(relative);
    if (existing) {
      // A directory may be listed again (its metadata is updated); anything else twice is ambiguous.
      if (existing.type === 'dir' && h.type === 'dir') return void this.setMeta(existing, h);
      this.fail(
        h.name,
        `appears twice in the archive (as ${existing.type} and ${h.type}); netroot does not extract archives with duplicate members`,
      );
    }
    this.ensureParents(relative, h.name);
    const entry: BaseEntry = { path: relative, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: 0, mtime: h.mtime };
    const target = this.abs(relative);
    switch (h.type) {
      case 'dir':
        fsSync.mkdirSync(target, { mode: 0o700 });
        break;
      case 'file':
        entry.size = h.size;
        await writeContent(target, body);
        this.links.set(relative, [entry]);
        break;
      case 'symlink':
        if (h.linkname === '') this.fail(h.name, 'is a symbolic link without a target');
        entry.linkname = h.linkname;
        fsSync.symlinkSync(h.linkname, target);
        break;
      case 'hardlink':
        this.hardlink(entry, h);
        break;
      default:
        if (h.type !== 'fifo') Object.assign(entry, { devmajor: h.devmajor, devminor: h.devminor });
        // A fifo needs no privilege; a device node does.
        if (this.privileged || h.type === 'fifo') await makeNode(target, h);
    }
    this.entries.set(relative, entry);
    if (Object.keys(h.xattrs).length && h.type !== 'hardlink') {
      entry.xattrs = h.xattrs;
      this.xattrs.push([target, h.xattrs]);
    }
    if (h.type !== 'dir' && h.type !== 'hardlink' && (this.privileged || h.type === 'file' || h.type === 'symlink' || h.type === 'fifo'))
      this.applyMeta(target, entry);
  }

  private hardlink(entry: BaseEntry, h: TarMemberHeader): void {
    const why = unsafeReason(h.linkname);
    if (why || normalise(h.linkname) === '')
      this.fail(h.name, `is a hard link to ${JSON.stringify(h.linkname)}, outside the archive; refusing to extract it`);
    const holder = this.entries.get(normalise(h.linkname));
    const group = holder && this.links.get(holder.type === 'hardlink' ? holder.linkname! : holder.path);
    if (!holder || !group) {
      this.fail(
        h.name,
        `is a hard link to ${JSON.stringify(h.linkname)}, which is not an earlier regular file of the archive; refusing to extract it`,
      );
    }
    entry.linkname = group[0]!.path;
    // link(2) does not follow a symlink at its source, and the source's parents are directories we made.
    fsSync.linkSync(this.abs(group[0]!.path), this.abs(entry.path));
    group.push(entry);
  }

  /** Owner before mode (chown clears setuid bits); xattrs come after both, at the end. */
  private applyMeta(target: string, entry: BaseEntry): void {
    if (this.privileged) fsSync.lchownSync(target, entry.uid, entry.gid);
    if (entry.type !== 'symlink') fsSync.chmodSync(target, entry.mode);
    fsSync.lutimesSync(target, entry.mtime, entry.mtime);
  }

  private setMeta(entry: BaseEntry, h: TarMemberHeader): void {
    Object.assign(entry, { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
  }

  /** Directories get their modes last, deepest first, so a read-only directory never blocks its own contents. */
  async finish(): Promise<{ entries: BaseEntry[]; applied: BaseIndex['applied']; warnings: string[] }> {
    canonicaliseLinks(this.links.values());
    const applied = { owners: this.privileged, devices: this.privileged, xattrs: false };
    if (this.xattrs.length) {
      if (!this.privileged)
        this.warnings.push('xattrs (file capabilities) are recorded in the index but were not applied: not running as root');
      else {
        await requireXattrTools('setfattr', 'writing the file capabilities and other xattrs the base holds into its extracted copy');
        await applyXattrs(this.xattrs).catch((error: Error) => this.fail('(xattrs)', error.message));
        applied.xattrs = true;
      }
    } else applied.xattrs = true;
    const dirs = [...this.entries.values()].filter((e) => e.type === 'dir').sort((a, b) => comparePaths(b.path, a.path));
    for (const dir of dirs) {
      const target = this.abs(dir.path);
      if (this.privileged) fsSync.lchownSync(target, dir.uid, dir.gid);
      fsSync.chmodSync(target, dir.mode);
      fsSync.utimesSync(target, dir.mtime, dir.mtime);
    }
    return { entries: [...this.entries.values()], applied, warnings: this.warnings };
  }
}

/** O_EXCL|O_NOFOLLOW: never write into something that is already there, least of all through a link. */
async function writeContent(target: string, body: AsyncIterable<Buffer>): Promise<void> {
  const fd = fsSync.openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    // Gather decompressor output into ~1 MiB writes: far fewer syscalls than one per 16 KiB chunk.
    let pending: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      pending.push(chunk);
      size += chunk.length;
      if (size >= 1 << 20) {
        writeAll(fd, Buffer.concat(pending, size));
        pending = [];
        size = 0;
      }
    }
    if (pending.length) writeAll(fd, Buffer.concat(pending, size));
  } finally {
    fsSync.closeSync(fd);
  }
}

async function makeNode(target: string, h: TarMemberHeader): Promise<void> {
  const args = h.type === 'fifo' ? [target, 'p'] : [target, h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)];
  await runTool('mknod', ['-m', '0600', ...args], { what: `creating the device node ${target}` });
}

interface StoredIndex {
  version: number;
  digest: string;
  /** A cached directory index: the directoryIdentity() it was made at. */
  identity?: string;
  netboot?: string;
  applied: BaseIndex['applied'];
  warnings: string[];
  entries: (Omit<BaseEntry, 'xattrs' | 'content'> & { xattrs?: Record<string, string> })[];
}

function toStored(digest: string, entries: BaseEntry[], applied: BaseIndex['applied'], warnings: string[], netboot?: string): StoredIndex {
  return {
    version: INDEX_VERSION,
    digest,
    ...(netboot ? { netboot } : {}),
    applied,
    warnings,
    entries: entries.map(({ xattrs, content: _content, ...rest }) =>
      xattrs ? { ...rest, xattrs: Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, v.toString('hex')])) } : rest,
    ),
  };
}

/** Writes DIR/index.json for the tree at DIR/tree, so loadStored can open it without walking it. */
export async function storeIndex(dir: string, index: BaseIndex): Promise<void> {
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify(toStored(index.digest ?? '', index.entries, index.applied, index.warnings, index.netboot)),
  );
}

/** The index stored at DIR/index.json for the tree at DIR/tree, or undefined when there is none of this version. */
export async function loadStored(dir: string, source: string, kind: BaseIndex['kind'] = 'tarball'): Promise<BaseIndex | undefined> {
  const text = await readFile(path.join(dir, 'index.json'), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : fromStored(JSON.parse(text) as StoredIndex, kind, source, path.join(dir, 'tree'));
}

function fromStored(stored: StoredIndex, kind: BaseIndex['kind'], source: string, root: string): BaseIndex | undefined {
  if (stored.version !== INDEX_VERSION) return undefined;
  const entries: BaseEntry[] = stored.entries.map(({ xattrs, ...rest }) =>
    xattrs ? { ...rest, xattrs: Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, Buffer.from(v, 'hex')])) } : { ...rest },
  );
  return finishIndex({
    kind,
    source,
    ...(stored.digest ? { digest: stored.digest } : {}),
    ...(stored.netboot ? { netboot: stored.netboot } : {}),
    root,
    entries,
    applied: stored.applied,
    warnings: stored.warnings,
  });
}

/**
 * A directory base's index, kept in the cache under its identity (see
 * directoryIdentity), so a rebuild after a template change reads one file
 * instead of walking the directory again. One entry per directory: a new
 * identity replaces the old.
 */
async function indexDirectoryCached(root: string, cacheDir: string, identity: string): Promise<BaseIndex> {
  root = await realpath(root);
  const file = path.join(cacheDir, 'directory-indexes', `${sha256(root)}.json`);
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text !== undefined) {
    const stored = JSON.parse(text) as StoredIndex;
    const index = stored.identity === identity ? fromStored(stored, 'directory', root, root) : undefined;
    if (index) return index;
  }
  const index = await indexDirectory(root);
  const stored = JSON.stringify({ ...toStored('', index.entries, index.applied, index.warnings), identity });
  await stageIntoCache(file, (temporary) => writeFile(temporary, stored, { mode: 0o600 }), { parentMode: 0o700 });
  return index;
}

async function openTarball(file: string, cacheDir: string, privileged: boolean, known?: string): Promise<BaseIndex> {
  const digest = known ?? (await sha256File(file));
  const bases = path.join(cacheDir, 'bases');
  const dir = path.join(bases, digest);
  const cached = await loadStored(dir, file);
  if (cached) return cached;
  await rm(dir, { recursive: true, force: true }); // an index of another version
  try {
    // The cache holds setuid binaries and device nodes owned by root: keep it private.
    await stageIntoCache(
      dir,
      async (staging) => {
        await mkdir(staging, { mode: 0o700 });
        const tree = path.join(staging, 'tree');
        await mkdir(tree, { mode: 0o700 });
        const extractor = new Extractor(file, tree, privileged);
        await withDecompressed(file, async (bytes) => {
          for await (const member of readTar(bytes)) await extractor.add(member);
        });
        const { entries, applied, warnings } = await extractor.finish();
        await writeFile(path.join(staging, 'index.json'), JSON.stringify(toStored(digest, entries, applied, warnings)));
      },
      { parentMode: 0o700 },
    );
  } catch (error) {
    if (error instanceof TarReadError) throw new BaseArchiveError(file, error.member, error.message, { cause: error });
    throw error;
  }
  const opened = await loadStored(dir, file);
  if (!opened) throw new RootfsError(`base ${file}: the extracted cache at ${dir} has no readable index`);
  return opened;
}
