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
import { BaseArchiveError, RootfsError } from '../entries/errors.js';
import { writeAll } from '../entries/io.js';
import { ancestors, comparePaths, normalise, unsafeReason } from '../entries/paths.js';
import { readTar, TarReadError, type TarMember, type TarMemberHeader } from '../entries/tarformat.js';
import { applyXattrs, readTreeXattrs, requireXattrTools, type Xattrs } from '../entries/xattr.js';
import { runTool, startTool } from '../tools.js';
import { EntryTable, EntryTableBuilder, type BaseEntry, type EntryType } from './entry-table.js';
import { isRoot } from '../privileges.js';

export type { BaseEntry, EntryType } from './entry-table.js';

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
   * contents); find one with entries.get(path). In a group of hard links the
   * first path holds the content and the others are `hardlink` entries
   * pointing at it.
   */
  entries: EntryTable;
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

/**
 * Among paths sharing one inode the first in sort order holds the content and
 * the rest link to it, so an archive lists the content before its links
 * whatever order the base came in, and a directory and a tarball of it index
 * the same.
 */
function canonicaliseLinks(entries: EntryTableBuilder, groups: Iterable<number[]>): void {
  for (const rows of groups) {
    if (rows.length < 2) continue;
    const group = rows.map((row) => ({ row, entry: entries.at(row) }));
    const holder = group.find((g) => g.entry.type === 'file')!.entry;
    group.sort((a, b) => comparePaths(a.entry.path, b.entry.path));
    const first = group[0]!.entry;
    const { mode, uid, gid, mtime, size, xattrs } = holder;
    for (const { row, entry } of group) {
      const common = { path: entry.path, mode, uid, gid, mtime };
      entries.set(
        row,
        entry === first
          ? { ...common, type: 'file', size, ...(xattrs ? { xattrs } : {}) }
          : { ...common, type: 'hardlink', size: 0, linkname: first.path },
      );
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

/** Appends the entry `st` describes; its row, or undefined for a socket (which no archive can hold). */
function appendStat(entries: EntryTableBuilder, relative: string, absolute: string, st: BigIntStats): number | undefined {
  const type: EntryType | undefined = st.isFile()
    ? 'file'
    : st.isDirectory()
      ? 'dir'
      : st.isSymbolicLink()
        ? 'symlink'
        : st.isCharacterDevice()
          ? 'char'
          : st.isBlockDevice()
            ? 'block'
            : st.isFIFO()
              ? 'fifo'
              : undefined;
  if (!type) return undefined;
  const mode = Number(st.mode) & 0o7777;
  const row = entries.append(
    relative,
    type,
    mode,
    Number(st.uid),
    Number(st.gid),
    type === 'file' ? Number(st.size) : 0,
    Number(st.mtimeMs / 1000n),
  );
  if (type === 'symlink') entries.setLink(row, fsSync.readlinkSync(absolute, 'utf8'));
  if (type === 'char' || type === 'block') {
    const { devmajor, devminor } = deviceNumbers(st.rdev);
    entries.setDevice(row, devmajor, devminor);
  }
  return row;
}

/**
 * Walks a directory without following symlinks, in path order (comparePaths),
 * so the index needs no sort and no path outlives its row. Path order is not
 * depth-first: `a`, `a-b`, then `a/x` ('-' sorts before '/'). So among a
 * directory's children the entry `a` sorts by its name and everything below
 * it by `a/`. Synchronous lstat on purpose: tens of thousands of tiny syscalls
 * are several times faster without a trip through the thread pool each, and
 * nothing else runs meanwhile.
 */
async function indexDirectory(root: string): Promise<BaseIndex> {
  root = await realpath(root);
  const entries = new EntryTableBuilder();
  const inodes = new Map<string, number[]>();
  const warnings: string[] = [];
  // Without getfattr the artifacts would lose file capabilities (ping, for one) that the tree keeps: the build stops instead.
  await requireXattrTools('getfattr', `the file capabilities and other xattrs of the directory base ${root}`);
  // Read first, so each entry takes its own as it is added, with no second pass over every path.
  const xattrs = new Map<string, Xattrs>();
  for (const [file, attrs] of await readTreeXattrs(root))
    if (Object.keys(attrs).length) xattrs.set(file === root ? '' : path.relative(root, file), attrs);
  const add = (relative: string, absolute: string, st: BigIntStats): void => {
    const row = appendStat(entries, relative, absolute, st);
    if (row === undefined) return void warnings.push(`${relative}: sockets cannot be archived; skipped`);
    const attrs = xattrs.get(relative);
    if (attrs) entries.setXattrs(row, attrs);
    if (st.isFile() && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const group = inodes.get(key);
      if (group) group.push(row);
      else inodes.set(key, [row]);
    }
  };
  const below = (relative: string, absolute: string): void => {
    // A child's own key is its name, its subtree's is name + '/' (no name holds a '/'). Strings only: a
    // directory's stats held while its subtrees are walked would outlive a young GC and crowd the heap.
    const keys: string[] = [];
    for (const child of fsSync.readdirSync(absolute, { withFileTypes: true })) {
      keys.push(child.name);
      if (child.isDirectory()) keys.push(`${child.name}/`);
    }
    keys.sort(comparePaths);
    for (const key of keys) {
      const subtree = key.endsWith('/');
      const name = subtree ? key.slice(0, -1) : key;
      const childRelative = relative === '' ? name : `${relative}/${name}`;
      const childAbsolute = path.join(absolute, name);
      if (subtree) below(childRelative, childAbsolute);
      else add(childRelative, childAbsolute, fsSync.lstatSync(childAbsolute, { bigint: true }));
    }
  };
  add('', root, fsSync.lstatSync(root, { bigint: true }));
  below('', root);
  const applied = { owners: true, devices: true, xattrs: true };
  canonicaliseLinks(entries, inodes.values());
  return { kind: 'directory', source: root, root, entries: entries.finish(root), applied, warnings };
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

/** 2: the compact binary index (entry-table.ts) in place of JSON. */
const INDEX_VERSION = 2;

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
  private readonly entries = new EntryTableBuilder();
  /** Path → its row in `entries`. */
  private readonly rows = new Map<string, number>();
  /** Content holder's row → the rows of every path sharing its inode (the holder first); only for hard-linked files. */
  private readonly links = new Map<number, number[]>();
  private readonly xattrs: [string, Xattrs][] = [];
  readonly warnings: string[] = [];

  constructor(
    private readonly source: string,
    private readonly tree: string,
    private readonly privileged: boolean,
  ) {
    this.put({ path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
  }

  private put(entry: BaseEntry): number {
    const row = this.entries.add(entry);
    this.rows.set(entry.path, row);
    return row;
  }

  private existing(relative: string): BaseEntry | undefined {
    const row = this.rows.get(relative);
    return row === undefined ? undefined : this.entries.at(row);
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
      // The common case, a directory made earlier, is told by its type alone, without making the entry an object.
      const row = this.rows.get(dir);
      if (row !== undefined && this.entries.type(row) === 'dir') continue;
      const existing = this.existing(dir);
      if (!existing) {
        fsSync.mkdirSync(this.abs(dir), { mode: 0o700 });
        this.put({ path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
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
    const existing = this.existing(relative);
    if (existing) {
      // A directory may be listed again (its metadata is updated); anything else twice is ambiguous.
      if (existing.type === 'dir' && h.type === 'dir')
        return void this.entries.set(this.rows.get(relative)!, { ...existing, mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
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
    if (Object.keys(h.xattrs).length && h.type !== 'hardlink') {
      entry.xattrs = h.xattrs;
      this.xattrs.push([target, h.xattrs]);
    }
    const row = this.put(entry);
    if (entry.type === 'hardlink') this.links.get(this.rows.get(entry.linkname!)!)!.push(row);
    if (h.type !== 'dir' && h.type !== 'hardlink' && (this.privileged || h.type === 'file' || h.type === 'symlink' || h.type === 'fifo'))
      this.applyMeta(target, entry);
  }

  private hardlink(entry: BaseEntry, h: TarMemberHeader): void {
    const why = unsafeReason(h.linkname);
    if (why || normalise(h.linkname) === '')
      this.fail(h.name, `is a hard link to ${JSON.stringify(h.linkname)}, outside the archive; refusing to extract it`);
    const named = this.existing(normalise(h.linkname));
    const holder = named?.type === 'hardlink' ? this.existing(named.linkname!) : named;
    if (holder?.type !== 'file') {
      this.fail(
        h.name,
        `is a hard link to ${JSON.stringify(h.linkname)}, which is not an earlier regular file of the archive; refusing to extract it`,
      );
    }
    const holderRow = this.rows.get(holder.path)!;
    if (!this.links.has(holderRow)) this.links.set(holderRow, [holderRow]);
    entry.linkname = holder.path;
    // link(2) does not follow a symlink at its source, and the source's parents are directories we made.
    fsSync.linkSync(this.abs(holder.path), this.abs(entry.path));
  }

  /** Owner before mode (chown clears setuid bits); xattrs come after both, at the end. */
  private applyMeta(target: string, entry: BaseEntry): void {
    if (this.privileged) fsSync.lchownSync(target, entry.uid, entry.gid);
    if (entry.type !== 'symlink') fsSync.chmodSync(target, entry.mode);
    fsSync.lutimesSync(target, entry.mtime, entry.mtime);
  }

  /** Directories get their modes last, deepest first, so a read-only directory never blocks its own contents. */
  async finish(): Promise<{ entries: EntryTable; applied: BaseIndex['applied']; warnings: string[] }> {
    canonicaliseLinks(this.entries, this.links.values());
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
    const dirs: BaseEntry[] = [];
    for (let row = 0; row < this.entries.length; row++) if (this.entries.type(row) === 'dir') dirs.push(this.entries.at(row));
    dirs.sort((a, b) => comparePaths(b.path, a.path));
    for (const dir of dirs) {
      const target = this.abs(dir.path);
      if (this.privileged) fsSync.lchownSync(target, dir.uid, dir.gid);
      fsSync.chmodSync(target, dir.mode);
      fsSync.utimesSync(target, dir.mtime, dir.mtime);
    }
    // Every member is in: the map of paths can go before the table is sorted, which needs every path as a string again.
    this.rows.clear();
    this.links.clear();
    return { entries: this.entries.finish(this.tree), applied, warnings: this.warnings };
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

/** What a stored index says besides its entries: the first line of the file, as JSON. */
interface StoredMeta {
  version: number;
  digest: string;
  /** A cached directory index: the directoryIdentity() it was made at. */
  identity?: string;
  netboot?: string;
  applied: BaseIndex['applied'];
  warnings: string[];
}

export const INDEX_FILE = 'index.bin';

/** The stored form: a line of JSON (StoredMeta), then the entry table's own encoding, written piece by piece. */
function encodeIndex(index: Omit<BaseIndex, 'kind' | 'source' | 'root'>, identity?: string): Buffer[] {
  const meta: StoredMeta = {
    version: INDEX_VERSION,
    digest: index.digest ?? '',
    ...(identity ? { identity } : {}),
    ...(index.netboot ? { netboot: index.netboot } : {}),
    applied: index.applied,
    warnings: index.warnings,
  };
  return [Buffer.from(`${JSON.stringify(meta)}\n`), ...index.entries.encode()];
}

function decodeIndex(
  bytes: Buffer,
  kind: BaseIndex['kind'],
  source: string,
  root: string,
): { index: BaseIndex; meta: StoredMeta } | undefined {
  const newline = bytes.indexOf(0x0a);
  let meta: StoredMeta;
  try {
    meta = JSON.parse(bytes.toString('utf8', 0, newline)) as StoredMeta;
  } catch {
    return undefined;
  }
  if (newline < 0 || meta.version !== INDEX_VERSION) return undefined;
  const entries = EntryTable.decode(bytes.subarray(newline + 1), root);
  if (!entries) return undefined;
  const index: BaseIndex = {
    kind,
    source,
    ...(meta.digest ? { digest: meta.digest } : {}),
    ...(meta.netboot ? { netboot: meta.netboot } : {}),
    root,
    entries,
    applied: meta.applied,
    warnings: meta.warnings,
  };
  return { index, meta };
}

/** Writes DIR/index.bin for the tree at DIR/tree, so loadStored can open it without walking it. */
export async function storeIndex(dir: string, index: BaseIndex): Promise<void> {
  await writeFile(path.join(dir, INDEX_FILE), encodeIndex(index), { mode: 0o600 });
}

/** The index stored at DIR/index.bin for the tree at DIR/tree, or undefined when there is none of this version. */
export async function loadStored(dir: string, source: string, kind: BaseIndex['kind'] = 'tarball'): Promise<BaseIndex | undefined> {
  const bytes = await readFile(path.join(dir, INDEX_FILE)).catch(() => undefined);
  return bytes && decodeIndex(bytes, kind, source, path.join(dir, 'tree'))?.index;
}

/**
 * A directory base's index, kept in the cache under its identity (see
 * directoryIdentity), so a rebuild after a template change reads one file
 * instead of walking the directory again. One entry per directory: a new
 * identity replaces the old.
 */
async function indexDirectoryCached(root: string, cacheDir: string, identity: string): Promise<BaseIndex> {
  root = await realpath(root);
  const file = path.join(cacheDir, 'directory-indexes', `${sha256(root)}.bin`);
  const bytes = await readFile(file).catch(() => undefined);
  const cached = bytes && decodeIndex(bytes, 'directory', root, root);
  if (cached?.meta.identity === identity) return cached.index;
  const index = await indexDirectory(root);
  await stageIntoCache(file, (temporary) => writeFile(temporary, encodeIndex(index, identity), { mode: 0o600 }), { parentMode: 0o700 });
  return index;
}

/** Where a tarball of this sha256 is extracted: DIR/tree, with its index at DIR/index.bin. */
export function extractedTarballDir(cacheDir: string, digest: string): string {
  return path.join(cacheDir, 'bases', digest);
}

async function openTarball(file: string, cacheDir: string, privileged: boolean, known?: string): Promise<BaseIndex> {
  const digest = known ?? (await sha256File(file));
  const dir = extractedTarballDir(cacheDir, digest);
  const cached = await loadStored(dir, file);
  if (cached) return cached;
  await rm(dir, { recursive: true, force: true }); // an index of another version
  let extracted: { entries: EntryTable; applied: BaseIndex['applied']; warnings: string[] } | undefined;
  let theirs = false;
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
        extracted = await extractor.finish();
        await writeFile(path.join(staging, INDEX_FILE), encodeIndex({ digest, ...extracted }), { mode: 0o600 });
      },
      { parentMode: 0o700, onKeptTheirs: () => void (theirs = true) },
    );
  } catch (error) {
    if (error instanceof TarReadError) throw new BaseArchiveError(file, error.member, error.message, { cause: error });
    throw error;
  }
  // The table just made, moved with its tree: reading it back from disk would hold two copies at once.
  if (extracted && !theirs) {
    const root = path.join(dir, 'tree');
    return { kind: 'tarball', source: file, digest, root, ...extracted, entries: extracted.entries.under(root) };
  }
  const opened = await loadStored(dir, file);
  if (!opened) throw new RootfsError(`base ${file}: the extracted cache at ${dir} has no readable index`);
  return opened;
}
