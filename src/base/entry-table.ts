/**
 * A base's entries as a compact table, sorted by path: one typed array per
 * numeric field, the paths packed as UTF-8 in one buffer, and what few entries
 * have (link targets, device numbers, xattrs, bytes kept elsewhere) in sparse
 * maps.
 *
 * Why: a base of 300 000 entries held as one object per entry, plus a map by
 * path and an absolute `content` path each, cost ~1 KB an entry (300 MiB) and
 * more while it was walked and stored. Here it costs about its paths plus
 * ~30 bytes an entry. An entry becomes an object only while someone looks at
 * it (`at`, iteration), and a path is found by bisection, with no second map.
 *
 * The stored form (`encode`/`decode`) is the columns as they are in memory,
 * little-endian: a cache of this machine, never an artifact.
 */
import path from 'node:path';
import { InternalError } from '../errors.js';
import { comparePaths } from '../entries/paths.js';
import type { TarHeader, TarType } from '../entries/tarformat.js';
import type { Xattrs } from '../entries/xattr.js';

export type EntryType = TarType;

/**
 * One entry of a base: the fields its tar header holds (a normalised relative path, '' for the root; a
 * file's size, 0 for everything else, hard links included; a hard link's target as the normalised path of
 * the entry holding the content), and where a file's bytes are.
 */
export interface BaseEntry extends TarHeader {
  /** Absolute path of the bytes (type file): the file in the table's root, or wherever an added file lives. */
  content?: string;
}

const TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const TYPE_CODE = new Map(TYPES.map((t, i) => [t, i]));

/** Everything of an entry but its path, a row each. */
interface Columns {
  types: Uint8Array;
  modes: Uint16Array;
  uids: Uint32Array;
  gids: Uint32Array;
  sizes: Float64Array;
  mtimes: Float64Array;
  links: Map<number, string>;
  devices: Map<number, readonly [number, number]>;
  xattrs: Map<number, Xattrs>;
  /** Files whose bytes are not at root/path (files added by withChanges). */
  contents: Map<number, string>;
}

type NumericColumn = 'types' | 'modes' | 'uids' | 'gids' | 'sizes' | 'mtimes';
const NUMERIC: readonly NumericColumn[] = ['types', 'modes', 'uids', 'gids', 'sizes', 'mtimes'];
const SPARSE = ['links', 'devices', 'xattrs', 'contents'] as const;
const ARRAYS = {
  types: Uint8Array,
  modes: Uint16Array,
  uids: Uint32Array,
  gids: Uint32Array,
  sizes: Float64Array,
  mtimes: Float64Array,
} as const;

function emptyColumns(capacity: number): Columns {
  return {
    types: new Uint8Array(capacity),
    modes: new Uint16Array(capacity),
    uids: new Uint32Array(capacity),
    gids: new Uint32Array(capacity),
    sizes: new Float64Array(capacity),
    mtimes: new Float64Array(capacity),
    links: new Map(),
    devices: new Map(),
    xattrs: new Map(),
    contents: new Map(),
  };
}

/**
 * Every path as UTF-8 in one buffer, path i ending at ends[i]: ~30 bytes a path, where a string of
 * its own costs twice that and more on the heap.
 */
class PackedPaths {
  constructor(
    readonly bytes: Buffer,
    readonly ends: Uint32Array,
  ) {}

  start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  get(i: number): string {
    return pathAt(this.bytes, this.ends, i);
  }
}

/** Path i of paths packed one after another, path i ending at ends[i]. */
function pathAt(bytes: Buffer, ends: Uint32Array, i: number): string {
  return bytes.toString('utf8', i === 0 ? 0 : ends[i - 1], ends[i]);
}

/** Packs paths one after another into a buffer of known size. */
class PathPacker {
  private readonly bytes: Buffer;
  private readonly ends: Uint32Array;
  private at = 0;
  private n = 0;
  constructor(byteLength: number, count: number) {
    this.bytes = Buffer.allocUnsafe(byteLength);
    this.ends = new Uint32Array(count);
  }
  push(p: string): void {
    this.at += this.bytes.write(p, this.at);
    this.ends[this.n++] = this.at;
  }
  /** Paths [from, to) of `paths`, copied as one run of bytes. */
  pushRun(paths: PackedPaths, from: number, to: number): void {
    const start = paths.start(from);
    const shift = this.at - start;
    this.at += paths.bytes.copy(this.bytes, this.at, start, paths.ends[to - 1]);
    for (let i = from; i < to; i++) this.ends[this.n++] = paths.ends[i]! + shift;
  }
  finish(): PackedPaths {
    return new PackedPaths(this.bytes.subarray(0, this.at), this.ends.subarray(0, this.n));
  }
}

/** Row i as an object; a file's content is root/path unless it has its own, and absent without a root. */
function materialise(c: Columns, p: string, root: string | undefined, i: number): BaseEntry {
  const type = TYPES[c.types[i]!]!;
  const entry: BaseEntry = {
    path: p,
    type,
    mode: c.modes[i]!,
    uid: c.uids[i]!,
    gid: c.gids[i]!,
    size: c.sizes[i]!,
    mtime: c.mtimes[i]!,
  };
  const link = c.links.get(i);
  if (link !== undefined) entry.linkname = link;
  const device = c.devices.get(i);
  if (device) [entry.devmajor, entry.devminor] = device;
  const xattrs = c.xattrs.get(i);
  if (xattrs) entry.xattrs = xattrs;
  if (type === 'file') {
    const content = c.contents.get(i) ?? (root === undefined ? undefined : p === '' ? root : path.join(root, p));
    if (content !== undefined) entry.content = content;
  }
  return entry;
}

/** Writes every field of `entry` but its path into row i (the content path only when it is not root/path). */
function store(c: Columns, root: string | undefined, i: number, entry: BaseEntry): void {
  const type = TYPE_CODE.get(entry.type);
  if (type === undefined) throw new InternalError(`unknown entry type ${entry.type}`);
  c.types[i] = type;
  c.modes[i] = entry.mode;
  c.uids[i] = entry.uid;
  c.gids[i] = entry.gid;
  c.sizes[i] = entry.size;
  c.mtimes[i] = entry.mtime;
  setSparse(c.links, i, entry.linkname);
  setSparse(
    c.devices,
    i,
    entry.devmajor !== undefined || entry.devminor !== undefined ? [entry.devmajor ?? 0, entry.devminor ?? 0] : undefined,
  );
  setSparse(c.xattrs, i, entry.xattrs && Object.keys(entry.xattrs).length ? entry.xattrs : undefined);
  const own = entry.type === 'file' && entry.content !== undefined && (root === undefined || entry.content !== path.join(root, entry.path));
  setSparse(c.contents, i, own ? entry.content : undefined);
}

function setSparse<T>(map: Map<number, T>, i: number, value: T | undefined): void {
  if (value === undefined) map.delete(i);
  else map.set(i, value);
}

/** Entries gathered in any order (a walk, an archive), then sorted once into a table. */
export class EntryTableBuilder {
  private c = emptyColumns(1024);
  /** Paths packed as they come (UTF-8, path i ending at ends[i]): a string each would outlive the walk on the heap. */
  private bytes = Buffer.allocUnsafeSlow(1 << 16);
  private ends = new Uint32Array(1024);
  private used = 0;
  private n = 0;

  private pushPath(p: string): void {
    // UTF-8 takes at most 3 bytes for a UTF-16 code unit.
    if (this.used + p.length * 3 > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (this.used + p.length * 3 > size) size *= 2;
      const bigger = Buffer.allocUnsafeSlow(size);
      this.bytes.copy(bigger, 0, 0, this.used);
      this.bytes = bigger;
    }
    this.used += this.bytes.write(p, this.used);
    this.ends[this.n] = this.used;
  }

  get length(): number {
    return this.n;
  }

  /** Appends an entry; its row number, valid until finish(). */
  add(entry: BaseEntry): number {
    if (this.n === this.c.types.length) this.grow();
    this.pushPath(entry.path);
    store(this.c, undefined, this.n, entry);
    return this.n++;
  }

  /**
   * Appends a row from its fields, with no object in between: a walk of 300 000 entries that made one
   * object each left the heap twice the size of the table. Rare fields follow with setLink and setDevice.
   */
  append(p: string, type: EntryType, mode: number, uid: number, gid: number, size: number, mtime: number): number {
    if (this.n === this.c.types.length) this.grow();
    this.pushPath(p);
    const { c, n } = this;
    c.types[n] = TYPE_CODE.get(type)!;
    c.modes[n] = mode;
    c.uids[n] = uid;
    c.gids[n] = gid;
    c.sizes[n] = size;
    c.mtimes[n] = mtime;
    return this.n++;
  }

  setLink(i: number, linkname: string): void {
    this.c.links.set(i, linkname);
  }

  setDevice(i: number, major: number, minor: number): void {
    this.c.devices.set(i, [major, minor]);
  }

  setXattrs(i: number, xattrs: Xattrs): void {
    setSparse(this.c.xattrs, i, Object.keys(xattrs).length ? xattrs : undefined);
  }

  /** Row i as an object (content: as given to add, else absent). */
  at(i: number): BaseEntry {
    return materialise(this.c, this.path(i), undefined, i);
  }

  path(i: number): string {
    return pathAt(this.bytes, this.ends, i);
  }

  type(i: number): EntryType {
    return TYPES[this.c.types[i]!]!;
  }

  /** Overwrites row i; the path stays the row's own. */
  set(i: number, entry: BaseEntry): void {
    store(this.c, undefined, i, entry);
  }

  private grow(): void {
    const capacity = this.c.types.length * 2;
    for (const name of NUMERIC) {
      const bigger = new ARRAYS[name](capacity);
      bigger.set(this.c[name] as never);
      (this.c[name] as unknown) = bigger;
    }
    const ends = new Uint32Array(capacity);
    ends.set(this.ends);
    this.ends = ends;
  }

  /**
   * The table of everything added, sorted by path. A walk that adds in path order (indexDirectory) costs
   * one copy of the columns; any other order is sorted here. Duplicate paths are the caller's to prevent.
   */
  finish(root: string): EntryTable {
    const { c, n } = this;
    let sorted = true;
    for (let i = 1, previous = n ? this.path(0) : ''; i < n && sorted; i++) {
      const current = this.path(i);
      sorted = comparePaths(previous, current) < 0;
      previous = current;
    }
    const out = emptyColumns(n);
    let paths: PackedPaths;
    if (sorted) {
      for (const name of NUMERIC) out[name].set(c[name].subarray(0, n) as never);
      for (const sparse of SPARSE) out[sparse] = c[sparse] as never;
      paths = new PackedPaths(Buffer.from(this.bytes.subarray(0, this.used)), this.ends.slice(0, n));
    } else {
      const strings = Array.from({ length: n }, (_, i) => this.path(i));
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      order.sort((a, b) => comparePaths(strings[a]!, strings[b]!));
      const packer = new PathPacker(this.used, n);
      const rowOf = new Uint32Array(n);
      for (let to = 0; to < n; to++) {
        const from = order[to]!;
        rowOf[from] = to;
        packer.push(strings[from]!);
        for (const name of NUMERIC) out[name][to] = c[name][from]!;
      }
      for (const sparse of SPARSE)
        for (const [from, value] of c[sparse] as Map<number, never>) (out[sparse] as Map<number, never>).set(rowOf[from]!, value);
      paths = packer.finish();
    }
    this.c = emptyColumns(1);
    this.bytes = Buffer.alloc(0);
    this.ends = new Uint32Array(1);
    this.used = 0;
    this.n = 0;
    return new EntryTable(root, out, paths);
  }
}

const MAGIC = 'netroot-base-index\n';

interface StoredHeader {
  count: number;
  /** Byte lengths of the numeric columns in NUMERIC order, then of the path ends, then of the path bytes. */
  lengths: number[];
  links: [number, string][];
  devices: [number, number, number][];
  xattrs: [number, Record<string, string>][];
  contents: [number, string][];
}

const view = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

export class EntryTable implements Iterable<BaseEntry> {
  readonly length: number;

  /** @internal Use EntryTableBuilder, withChanges or decode. */
  constructor(
    /** The directory whose tree the entries describe: a file's bytes are at root/path. */
    readonly root: string,
    private readonly c: Columns,
    private readonly paths: PackedPaths,
  ) {
    this.length = paths.ends.length;
  }

  /** The same entries, their tree moved to `root` (a staged extraction renamed into the cache). */
  under(root: string): EntryTable {
    return new EntryTable(root, this.c, this.paths);
  }

  path(i: number): string {
    return this.paths.get(i);
  }

  type(i: number): EntryType {
    return TYPES[this.c.types[i]!]!;
  }

  mtime(i: number): number {
    return this.c.mtimes[i]!;
  }

  size(i: number): number {
    return this.c.sizes[i]!;
  }

  hasXattrs(i: number): boolean {
    return this.c.xattrs.has(i);
  }

  at(i: number): BaseEntry {
    if (i < 0 || i >= this.length) throw new RangeError(`entry ${i} of ${this.length}`);
    return materialise(this.c, this.paths.get(i), this.root, i);
  }

  /** The first row whose path sorts at or after `p` (length when none does). */
  lowerBound(p: string): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (comparePaths(this.paths.get(mid), p) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  indexOf(p: string): number {
    const i = this.lowerBound(p);
    return i < this.length && this.paths.get(i) === p ? i : -1;
  }

  get(p: string): BaseEntry | undefined {
    const i = this.indexOf(p);
    return i < 0 ? undefined : materialise(this.c, p, this.root, i);
  }

  has(p: string): boolean {
    return this.indexOf(p) >= 0;
  }

  *range(start = 0, end = this.length): Generator<BaseEntry> {
    for (let i = start; i < end; i++) yield materialise(this.c, this.paths.get(i), this.root, i);
  }

  [Symbol.iterator](): Iterator<BaseEntry> {
    return this.range();
  }

  /** Rows with xattrs, in order. */
  *withXattrs(): Generator<BaseEntry> {
    for (const i of [...this.c.xattrs.keys()].sort((a, b) => a - b)) yield this.at(i);
  }

  /**
   * The same entries with `changes` put in, sorted: a change replaces the entry
   * at its path or goes in at its place. The rows between changes are copied in
   * runs, columns and path bytes alike, never read one by one.
   */
  withChanges(changes: readonly BaseEntry[]): EntryTable {
    const sorted = [...new Map(changes.map((e) => [e.path, e])).values()].sort((a, b) => comparePaths(a.path, b.path));
    const count = this.length + sorted.length;
    const out = emptyColumns(count);
    const packer = new PathPacker(this.paths.bytes.length + sorted.reduce((sum, e) => sum + Buffer.byteLength(e.path), 0), count);
    let n = 0;
    let from = 0;
    /** Rows [from, to) as they are. */
    const copyRun = (to: number) => {
      if (to <= from) return;
      for (const name of NUMERIC) (out[name] as Uint8Array).set((this.c[name] as Uint8Array).subarray(from, to), n);
      for (const sparse of SPARSE)
        for (const [row, value] of this.c[sparse] as Map<number, never>)
          if (row >= from && row < to) (out[sparse] as Map<number, never>).set(row - from + n, value);
      packer.pushRun(this.paths, from, to);
      n += to - from;
      from = to;
    };
    for (const change of sorted) {
      const at = this.lowerBound(change.path);
      copyRun(at);
      packer.push(change.path);
      store(out, this.root, n++, change);
      if (at < this.length && this.paths.get(at) === change.path) from = at + 1;
    }
    copyRun(this.length);
    for (const name of NUMERIC) (out[name] as unknown) = out[name].slice(0, n);
    return new EntryTable(this.root, out, packer.finish());
  }

  /** The stored form: a header line of JSON, then the columns as they are in memory. */
  encode(): Buffer[] {
    const columns = [...NUMERIC.map((name) => view(this.c[name])), view(this.paths.ends), this.paths.bytes];
    const header: StoredHeader = {
      count: this.length,
      lengths: columns.map((b) => b.length),
      links: [...this.c.links],
      devices: [...this.c.devices].map(([i, [major, minor]]) => [i, major, minor]),
      xattrs: [...this.c.xattrs].map(([i, x]) => [i, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v.toString('hex')]))]),
      contents: [...this.c.contents],
    };
    return [Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`), ...columns];
  }

  /** A table from encode()'s bytes, or undefined when they are not that (another version, a truncated file). */
  static decode(bytes: Buffer, root: string): EntryTable | undefined {
    if (bytes.toString('latin1', 0, MAGIC.length) !== MAGIC) return undefined;
    const newline = bytes.indexOf(0x0a, MAGIC.length);
    if (newline < 0) return undefined;
    let header: StoredHeader;
    try {
      header = JSON.parse(bytes.toString('utf8', MAGIC.length, newline)) as StoredHeader;
    } catch {
      return undefined;
    }
    const n = header.count;
    const c = emptyColumns(n);
    const ends = new Uint32Array(n);
    const expected = [...NUMERIC.map((name) => c[name].byteLength), ends.byteLength];
    if (header.lengths.length !== expected.length + 1 || expected.some((length, k) => header.lengths[k] !== length)) return undefined;
    let offset = newline + 1;
    if (bytes.length !== offset + header.lengths.reduce((sum, length) => sum + length, 0)) return undefined;
    // Copies, so every column is aligned for its element size and the file's buffer can go.
    for (const column of [...NUMERIC.map((name) => c[name]), ends]) {
      view(column).set(bytes.subarray(offset, offset + column.byteLength));
      offset += column.byteLength;
    }
    const paths = Buffer.from(bytes.subarray(offset));
    if (n > 0 && ends[n - 1] !== paths.length) return undefined;
    c.links = new Map(header.links);
    c.devices = new Map(header.devices.map(([i, major, minor]) => [i, [major, minor] as const]));
    c.xattrs = new Map(
      header.xattrs.map(([i, x]) => [i, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, Buffer.from(v, 'hex')]))]),
    );
    c.contents = new Map(header.contents);
    return new EntryTable(root, c, new PackedPaths(paths, ends));
  }
}
