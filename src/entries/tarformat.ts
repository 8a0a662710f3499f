/**
 * A small tar (ustar + pax) encoder and streaming decoder.
 *
 * Why not tar-stream for this: it decodes and encodes pax values as UTF-8
 * strings, so a binary xattr value such as `security.capability` of
 * `cap_setuid+ep` (byte 0x80) comes back as EF BF BD. Capabilities must
 * survive byte for byte, and the artifact writer needs to know the exact bytes
 * of every header anyway (it pre-compresses the base once), so both
 * directions are here, with the binary-safe pax records GNU tar writes
 * (`SCHILY.xattr.NAME=<raw bytes>`).
 */

export const BLOCK = 512;
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

export type TarType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

/** One entry to write. `path` is a normalised relative path ('' is the root). */
export interface TarHeader {
  path: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Symlink target as-is; hard link target as a normalised relative path. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
}

const TYPEFLAG: Record<TarType, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const MAX7 = 0o7777777;
const MAX11 = 0o77777777777;

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** `./etc/passwd`, `./etc/`, and `./` for the root: the names `tar -C root .` writes. */
export function archiveName(path: string, type: TarType): string {
  if (path === '') return './';
  return `./${path}${type === 'dir' ? '/' : ''}`;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** Split a name into ustar prefix (≤155 bytes) and name (≤100 bytes) at a slash, or undefined. */
function splitUstar(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) > 155) return undefined;
    if (rest !== '' && Buffer.byteLength(rest) <= 100) return { prefix, name: rest };
  }
  return undefined;
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, 'utf8');
  b.write(octal(f.mode & 0o7777, 8), 100, 'latin1');
  b.write(octal(Math.min(f.uid, MAX7), 8), 108, 'latin1');
  b.write(octal(Math.min(f.gid, MAX7), 8), 116, 'latin1');
  b.write(octal(f.size > MAX11 ? 0 : f.size, 12), 124, 'latin1');
  b.write(octal(f.mtime, 12), 136, 'latin1');
  b.write(f.typeflag, 156, 'latin1');
  b.write(f.linkname, 157, 100, 'utf8');
  b.write('ustar\x0000', 257, 'latin1');
  // uname and gname stay empty: owners are numeric, the build host's user names mean nothing on a node.
  b.write(octal(f.devmajor, 8), 329, 'latin1');
  b.write(octal(f.devminor, 8), 337, 'latin1');
  b.write(f.prefix, 345, 155, 'utf8');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

/** ASCII-only, at most 100 bytes: GNU tar's `%d/PaxHeaders/%f`, without a pid so the bytes are reproducible. */
function paxHeaderName(name: string): string {
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  const slash = trimmed.lastIndexOf('/');
  const full = `${trimmed.slice(0, slash + 1)}PaxHeaders/${trimmed.slice(slash + 1)}`;
  return full.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
}

/** The bytes of one entry's header: a pax header when something does not fit ustar, then the ustar header. */
export function encodeHeader(h: TarHeader): Buffer {
  const name = archiveName(h.path, h.type);
  const link = h.type === 'hardlink' ? archiveName(h.linkname ?? '', 'file') : h.type === 'symlink' ? (h.linkname ?? '') : '';
  const records: Buffer[] = [];
  const split = splitUstar(name);
  if (!split) records.push(paxRecord('path', Buffer.from(name)));
  if (Buffer.byteLength(link) > 100) records.push(paxRecord('linkpath', Buffer.from(link)));
  if (h.size > MAX11) records.push(paxRecord('size', Buffer.from(String(h.size))));
  if (h.uid > MAX7) records.push(paxRecord('uid', Buffer.from(String(h.uid))));
  if (h.gid > MAX7) records.push(paxRecord('gid', Buffer.from(String(h.gid))));
  for (const key of Object.keys(h.xattrs ?? {}).sort()) records.push(paxRecord(`SCHILY.xattr.${key}`, h.xattrs![key]!));
  const size = h.type === 'file' ? h.size : 0;
  const header = ustarBlock({
    name: split?.name ?? name,
    prefix: split?.prefix ?? '',
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size,
    mtime: h.mtime,
    typeflag: TYPEFLAG[h.type],
    linkname: link,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (records.length === 0) return header;
  const pax = Buffer.concat(records);
  const paxHeader = ustarBlock({
    name: paxHeaderName(name),
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: pax.length,
    mtime: h.mtime,
    typeflag: 'x',
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), header]);
}

// ---------------------------------------------------------------------------
// Decoding

/** A malformed or truncated archive; `member` is the name being read, when known. */
export class TarReadError extends Error {
  readonly member: string | undefined;
  constructor(member: string | undefined, message: string) {
    super(message);
    this.member = member;
  }
}

export interface TarMemberHeader {
  /** The name as stored (after pax / GNU long names), not normalised. */
  name: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Record<string, Buffer>;
  /** Byte offset of the member's header in the uncompressed archive, for messages. */
  offset: number;
}

export interface TarMember {
  header: TarMemberHeader;
  /** The content of a file; what is not read is skipped before the next member. */
  body: AsyncGenerator<Buffer>;
}

/** Pulls exact byte counts out of a stream of arbitrary chunks without copying more than needed. */
class ByteQueue {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  position = 0;
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.source.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  private shift(n: number): Buffer {
    const first = this.chunks[0]!;
    const piece = n >= first.length ? (this.chunks.shift() as Buffer) : first.subarray(0, n);
    if (n < first.length) this.chunks[0] = first.subarray(n);
    this.buffered -= piece.length;
    this.position += piece.length;
    return piece;
  }

  /** Exactly n bytes, or null if the input ends first. */
  async take(n: number): Promise<Buffer | null> {
    while (this.buffered < n) if (!(await this.pull())) return null;
    const parts: Buffer[] = [];
    let missing = n;
    while (missing > 0) {
      const piece = this.shift(missing);
      parts.push(piece);
      missing -= piece.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** Between 1 and n bytes as soon as any are there, or null at the end of input. */
  async some(n: number): Promise<Buffer | null> {
    while (this.buffered === 0) if (!(await this.pull())) return null;
    return this.shift(n);
  }

  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.pull()) this.chunks = [];
  }
}

function cstring(b: Buffer, start: number, length: number, encoding: BufferEncoding = 'utf8'): string {
  const end = b.indexOf(0, start);
  return b.toString(encoding, start, end < 0 || end > start + length ? start + length : end);
}

function numeric(b: Buffer, start: number, length: number, what: string): number {
  if (b[start]! & 0x80) {
    // GNU base-256 for values that do not fit octal; 0xff would be negative.
    if (b[start] === 0xff) throw new Error(`negative ${what}`);
    let value = b[start]! & 0x7f;
    for (let i = start + 1; i < start + length; i++) value = value * 256 + b[i]!;
    return value;
  }
  const text = cstring(b, start, length, 'latin1').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`bad ${what} field ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function checksumOk(b: Buffer): boolean {
  const stored = numeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(body: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const space = body.indexOf(0x20, i);
    const length = space < 0 ? NaN : Number(body.toString('latin1', i, space));
    if (!Number.isInteger(length) || length <= 0 || i + length > body.length || body[i + length - 1] !== 0x0a) {
      throw new Error('malformed pax extended header');
    }
    const record = body.subarray(space + 1, i + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 0) throw new Error('malformed pax record');
    records.set(record.toString('utf8', 0, eq), record.subarray(eq + 1));
    i += length;
  }
  return records;
}

const TYPES: Record<string, TarType | 'pax' | 'global' | 'longname' | 'longlink'> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
  x: 'pax',
  g: 'global',
  L: 'longname',
  K: 'longlink',
};

const MAX_META = 1 << 20;

/** Applies pax records (global, then local) over the ustar values. */
function applyPax(h: TarMemberHeader, records: Map<string, Buffer>): void {
  for (const [key, value] of records) {
    const text = value.toString('utf8');
    if (key === 'path') h.name = text;
    else if (key === 'linkpath') h.linkname = text;
    else if (key === 'size') h.size = Number(text);
    else if (key === 'uid') h.uid = Number(text);
    else if (key === 'gid') h.gid = Number(text);
    else if (key === 'mtime') h.mtime = Math.floor(Number(text));
    else if (key.startsWith('SCHILY.xattr.')) h.xattrs[key.slice('SCHILY.xattr.'.length)] = Buffer.from(value);
    else if (key.startsWith('LIBARCHIVE.xattr.'))
      h.xattrs[decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length))] = Buffer.from(text, 'base64');
    else if (key.startsWith('GNU.sparse.')) throw new Error('is a sparse file, which netroot does not extract');
  }
  for (const field of ['size', 'uid', 'gid', 'mtime'] as const) {
    if (!Number.isFinite(h[field]) || h[field] < 0) throw new Error(`has an invalid pax ${field}`);
  }
}

/**
 * Reads a tar stream member by member. Throws TarReadError for a corrupt
 * header, an unsupported member type (sparse, multi-volume) or an archive that
 * ends before its end-of-archive marker.
 */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarMember> {
  const bytes = new ByteQueue(source[Symbol.asyncIterator]());
  const global = new Map<string, Buffer>();
  let local: Map<string, Buffer> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;
  let previous: string | undefined;
  for (;;) {
    const offset = bytes.position;
    const block = await bytes.take(BLOCK);
    if (!block) {
      throw new TarReadError(
        previous,
        offset === 0 ? 'the archive is empty' : 'the archive is truncated: it ends without an end-of-archive marker',
      );
    }
    // A zero block ends the archive (GNU tar stops there too); the rest is padding.
    if (block.every((byte) => byte === 0)) {
      await bytes.drain();
      return;
    }
    let h: TarMemberHeader;
    let kind: (typeof TYPES)[string] | undefined;
    try {
      if (!checksumOk(block)) throw new Error('checksum mismatch');
      kind = TYPES[String.fromCharCode(block[156]!)];
      h = decodeUstar(block, offset);
    } catch (error) {
      throw new TarReadError(
        previous,
        `corrupt tar header at byte ${offset} after this member (${(error as Error).message}); is this a tar archive?`,
      );
    }
    if (kind === undefined) throw new TarReadError(h.name, `has unsupported tar type ${JSON.stringify(String.fromCharCode(block[156]!))}`);
    if (kind === 'pax' || kind === 'global' || kind === 'longname' || kind === 'longlink') {
      if (h.size > MAX_META) throw new TarReadError(h.name, 'has an oversized extended header');
      const body = await bytes.take(h.size + padding(h.size));
      if (!body) throw new TarReadError(h.name, 'the archive is truncated inside an extended header');
      const data = body.subarray(0, h.size);
      try {
        if (kind === 'pax') local = parsePax(data);
        else if (kind === 'global') for (const [k, v] of parsePax(data)) global.set(k, v);
        else if (kind === 'longname') longName = cstring(data, 0, data.length);
        else longLink = cstring(data, 0, data.length);
      } catch (error) {
        throw new TarReadError(h.name, (error as Error).message);
      }
      continue;
    }
    h.type = kind;
    if (longName !== null) h.name = longName;
    if (longLink !== null) h.linkname = longLink;
    try {
      applyPax(h, global);
      if (local) applyPax(h, local);
    } catch (error) {
      throw new TarReadError(h.name, (error as Error).message);
    }
    if (h.type === 'file' && block[156] === 0 && h.name.endsWith('/')) h.type = 'dir';
    local = longName = longLink = null;
    previous = h.name;
    yield* member(bytes, h);
  }
}

function decodeUstar(block: Buffer, offset: number): TarMemberHeader {
  let name = cstring(block, 0, 100);
  // POSIX ustar keeps a prefix at 345; GNU's "ustar  " magic uses that space for other things.
  if (block.toString('latin1', 257, 263) === 'ustar\0' && block[345] !== 0) name = `${cstring(block, 345, 155)}/${name}`;
  return {
    name,
    type: 'file',
    mode: numeric(block, 100, 8, 'mode') & 0o7777,
    uid: numeric(block, 108, 8, 'uid'),
    gid: numeric(block, 116, 8, 'gid'),
    size: numeric(block, 124, 12, 'size'),
    mtime: numeric(block, 136, 12, 'mtime'),
    linkname: cstring(block, 157, 100),
    devmajor: numeric(block, 329, 8, 'devmajor'),
    devminor: numeric(block, 337, 8, 'devminor'),
    xattrs: {},
    offset,
  };
}

async function* member(bytes: ByteQueue, header: TarMemberHeader): AsyncGenerator<TarMember> {
  // Only regular files carry data in GNU and pax archives; any other size is skipped.
  let remaining = header.size;
  const truncated = () => new TarReadError(header.name, 'the archive is truncated inside this member');
  async function* body(): AsyncGenerator<Buffer> {
    while (remaining > 0) {
      const piece = await bytes.some(remaining);
      if (!piece) throw truncated();
      remaining -= piece.length;
      yield piece;
    }
  }
  yield { header, body: body() };
  while (remaining > 0) {
    const piece = await bytes.some(remaining);
    if (!piece) throw truncated();
    remaining -= piece.length;
  }
  if (!(await bytes.take(padding(header.size)))) throw truncated();
}
