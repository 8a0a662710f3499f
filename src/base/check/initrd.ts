/**
 * Can this initrd mount the root over NFS? Armbian's sunxi64 kernels build
 * the NFS client and the NIC driver as modules and have no ROOT_NFS, so the
 * initrd has to do the mount (initramfs-tools' `scripts/nfs`) with the
 * modules it carries. This reads the initrd and says what it holds.
 *
 * Accepted: a U-Boot legacy uImage ramdisk (Armbian's `uInitrd`: a 64-byte
 * header, magic 0x27051956, then the raw initramfs), or a raw initramfs —
 * uncompressed newc cpio archives (an early microcode archive, say) followed
 * by at most one compressed archive (gzip, xz, lzma, zstd, lz4, bzip2, lzop),
 * the layout the kernel unpacks. The compression is taken from the payload's
 * magic bytes, never from the uImage header, because Armbian labels a zstd
 * payload `-C gzip` or `-C none` alike.
 *
 * The cpio archives are parsed here (newc is 110 ASCII bytes per header)
 * rather than with `cpio -t`: one pass over the bytes handles the
 * concatenated archives and yields the one file whose content matters,
 * modules.builtin.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { runToolBytes } from '../../tools.js';
import { RootfsError } from '../../entries/errors.js';

export type Compression = 'none' | 'gzip' | 'xz' | 'lzma' | 'zstd' | 'lz4' | 'bzip2' | 'lzop';

export interface InitrdInfo {
  format: 'uimage' | 'raw';
  /** Compression of the main (last) archive; `none` when every archive is plain cpio. */
  compression: Compression;
  /** The archives in order, e.g. ['cpio', 'zstd'] for early microcode followed by a zstd initramfs. */
  segments: string[];
  /** The uImage header's name field (`uInitrd`), for uImages. */
  imageName?: string;
  /** Every member's path without a leading `./` or `/`, in archive order. */
  files: string[];
  /** initramfs-tools' NFS-root boot script is present. */
  hasNfsScript: boolean;
  /** NFS client modules (nfs, nfsv3, nfsv4, sunrpc, lockd, …) present as files under lib/modules. */
  nfsModules: string[];
  /** Modules under lib/modules/VERSION/kernel/drivers/net/. */
  netModules: string[];
  /** Entries of lib/modules/VERSION/modules.builtin (what the kernel has built in), or undefined if the initrd has no such file. */
  builtinModules?: string[];
}

export interface NfsBootVerdict {
  ok: boolean;
  /** What is missing, each with what to do about it. */
  missing: string[];
}

export interface NfsBootOptions {
  /** The kernel has NFS built in (CONFIG_NFS_FS=y), known from its config when modules.builtin is not in the initrd. */
  nfsBuiltIn?: boolean;
  /** The kernel has the NIC driver built in. */
  netBuiltIn?: boolean;
  /** Modules the board needs besides those (board.modules: an emulated board's virtio NIC). */
  modules?: string[];
}

const TIMEOUT = 2 * 60_000;

export async function inspectInitrd(file: string): Promise<InitrdInfo> {
  const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new RootfsError(`initrd ${file} cannot be read: ${error.code === 'ENOENT' ? 'it does not exist' : error.message}`);
  });
  const uimage = isUImage(bytes) ? parseUImage(bytes, file) : undefined;
  const payload = uimage?.payload ?? bytes;
  const { entries, segments } = await readInitramfs(payload, file);
  return describe(entries, segments, uimage?.name);
}

function describe(entries: CpioEntry[], segments: string[], imageName: string | undefined): InitrdInfo {
  const files = entries.map((e) => e.name);
  const modules = files.filter((f) => MODULE.test(f));
  const builtin = entries.find((e) => BUILTIN.test(e.name));
  const last = segments[segments.length - 1];
  return {
    format: imageName === undefined ? 'raw' : 'uimage',
    compression: last === undefined || last === 'cpio' ? 'none' : (last as Compression),
    segments,
    ...(imageName === undefined ? {} : { imageName }),
    files,
    hasNfsScript: files.includes('scripts/nfs'),
    nfsModules: modules.filter((f) => NFS_MODULE.test(f)),
    netModules: modules.filter((f) => f.includes('/kernel/drivers/net/')),
    ...(builtin?.content ? { builtinModules: builtin.content.toString('utf8').split('\n').filter(Boolean) } : {}),
  };
}

const MODULE = /^(usr\/)?lib\/modules\/[^/]+\/.+\.ko(\.(gz|xz|zst))?$/;
const NFS_MODULE = /\/(nfs|nfsv2|nfsv3|nfsv4|nfs_acl|lockd|sunrpc|grace|auth_rpcgss)\.ko(\.(gz|xz|zst))?$/;
const NFS_CLIENT = /\/nfs\.ko(\.(gz|xz|zst))?$/;
const BUILTIN = /^(usr\/)?lib\/modules\/[^/]+\/modules\.builtin$/;

export function canBootFromNfs(info: InitrdInfo, options: NfsBootOptions = {}): NfsBootVerdict {
  const missing: string[] = [];
  const builtin = info.builtinModules ?? [];
  if (!info.hasNfsScript) {
    missing.push(
      "scripts/nfs, initramfs-tools' NFS-root boot script: build the initrd with initramfs-tools (update-initramfs), which mounts root=/dev/nfs with it",
    );
  }
  const nfsBuiltIn = options.nfsBuiltIn || builtin.some((m) => NFS_CLIENT.test(`/${m}`));
  if (!nfsBuiltIn && !info.nfsModules.some((m) => NFS_CLIENT.test(m))) {
    missing.push(
      'the NFS client module nfs.ko: set MODULES=netboot in /etc/initramfs-tools/initramfs.conf (or add nfs to /etc/initramfs-tools/modules) and run update-initramfs -u' +
        (info.builtinModules ? '' : '; if the kernel has NFS built in (CONFIG_NFS_FS=y), say so with nfsBuiltIn'),
    );
  }
  const netBuiltIn = options.netBuiltIn || builtin.some((m) => m.includes('kernel/drivers/net/'));
  if (!netBuiltIn && info.netModules.length === 0) {
    missing.push(
      "a network driver module (lib/modules/…/kernel/drivers/net/, e.g. the board's dwmac-sun8i): MODULES=netboot adds them, or list the driver in /etc/initramfs-tools/modules" +
        (info.builtinModules ? '' : '; if the kernel has the driver built in, say so with netBuiltIn'),
    );
  }
  const held = new Set([...info.files, ...builtin].filter((f) => MODULE.test(f) || f.endsWith('.ko')).map(moduleName));
  const lacking = (options.modules ?? []).filter((m) => !held.has(m.replace(/-/g, '_')));
  if (lacking.length) {
    missing.push(
      `the board's modules ${lacking.join(', ')} (board.modules): list them in /etc/initramfs-tools/modules and run update-initramfs -u`,
    );
  }
  return { ok: missing.length === 0, missing };
}

/** lib/modules/V/kernel/drivers/net/virtio_net.ko.xz → virtio_net (modprobe treats - and _ alike). */
function moduleName(file: string): string {
  return path.posix
    .basename(file)
    .replace(/\.ko(\.(gz|xz|zst))?$/, '')
    .replace(/-/g, '_');
}

// ---------------------------------------------------------------------------
// U-Boot legacy image

const UIMAGE_MAGIC = 0x27051956;
const UIMAGE_HEADER = 64;
const IH_TYPE_RAMDISK = 3;
const IH_TYPES: Record<number, string> = { 2: 'kernel', 3: 'ramdisk', 4: 'multi-file', 5: 'firmware', 6: 'script', 8: 'flat device tree' };

export function isUImage(bytes: Buffer): boolean {
  return bytes.length >= 4 && bytes.readUInt32BE(0) === UIMAGE_MAGIC;
}

/** The zlib CRC-32 U-Boot uses for the header and data checksums (Node's own since 20.15). */
export function crc32(bytes: Uint8Array): number {
  return zlibCrc32(bytes);
}

/** Checks the header and data CRCs (a truncated download shows up here) and returns the payload. */
export function parseUImage(bytes: Buffer, file: string): { name: string; payload: Buffer } {
  if (bytes.length < UIMAGE_HEADER) throw new RootfsError(`initrd ${file}: a uImage header is 64 bytes, the file has ${bytes.length}`);
  const header = Buffer.from(bytes.subarray(0, UIMAGE_HEADER));
  const headerCrc = header.readUInt32BE(4);
  header.writeUInt32BE(0, 4);
  if (crc32(header) !== headerCrc)
    throw new RootfsError(`initrd ${file}: the uImage header checksum is wrong (a damaged or truncated file?)`);
  const type = bytes[30]!;
  if (type !== IH_TYPE_RAMDISK)
    throw new RootfsError(`initrd ${file}: a uImage of type ${IH_TYPES[type] ?? type}, not a ramdisk; point initrd at the uInitrd`);
  const size = bytes.readUInt32BE(12);
  const payload = bytes.subarray(UIMAGE_HEADER, UIMAGE_HEADER + size);
  if (payload.length < size)
    throw new RootfsError(`initrd ${file}: the uImage announces ${size} bytes of data but holds ${payload.length} (truncated)`);
  if (crc32(payload) !== bytes.readUInt32BE(24))
    throw new RootfsError(`initrd ${file}: the uImage data checksum is wrong (a damaged file?)`);
  const name = bytes.toString('latin1', 32, 64).replace(/\0.*$/s, '');
  return { name, payload };
}

// ---------------------------------------------------------------------------
// Compression

type Compressed = Exclude<Compression, 'none'>;

const MAGIC: [Compressed, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['gzip', [0x1f, 0x9e]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['lz4', [0x04, 0x22, 0x4d, 0x18]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzop', [0x89, 0x4c, 0x5a, 0x4f]],
  ['lzma', [0x5d, 0x00, 0x00]],
];

export function detectCompression(bytes: Buffer, offset = 0): Compressed | undefined {
  return MAGIC.find(([, magic]) => magic.every((b, i) => bytes[offset + i] === b))?.[0];
}

const DECOMPRESSOR: Record<Compressed, { command: string; args: string[] }> = {
  gzip: { command: 'gzip', args: ['-dc'] },
  xz: { command: 'xz', args: ['-dc'] },
  lzma: { command: 'xz', args: ['--format=lzma', '-dc'] },
  zstd: { command: 'zstd', args: ['-dcq'] },
  lz4: { command: 'lz4', args: ['-dc'] },
  bzip2: { command: 'bzip2', args: ['-dc'] },
  lzop: { command: 'lzop', args: ['-dc'] },
};

/**
 * Decompresses with the command-line tool (Node 20 has no zstd, xz or lz4).
 * A tool complaining about padding after the stream (the kernel ignores it)
 * still yields the data, so its output is used whenever there is some.
 */
async function decompress(kind: Compressed, data: Buffer, file: string): Promise<{ out: Buffer; complaint: string }> {
  const tool = DECOMPRESSOR[kind];
  const result = await runToolBytes(tool.command, tool.args, {
    input: data,
    timeout: TIMEOUT,
    accept: 'any',
    what: `decompressing initrd ${file}`,
    why: `reading the ${kind}-compressed initrd ${file}`,
  });
  const out = result.stdout;
  const complaint = result.status !== 0 ? result.stderr.trim() : '';
  if (out.length === 0) throw new RootfsError(`initrd ${file}: the ${kind} data does not decompress${complaint ? ` (${complaint})` : ''}`);
  return { out, complaint };
}

// ---------------------------------------------------------------------------
// newc cpio

export interface CpioEntry {
  name: string;
  mode: number;
  size: number;
  /** Only for modules.builtin, the one file whose content is read. */
  content?: Buffer;
}

const NEWC_HEADER = 110;
const TRAILER = 'TRAILER!!!';

function isNewc(bytes: Buffer, offset: number): boolean {
  const magic = bytes.toString('latin1', offset, offset + 6);
  return magic === '070701' || magic === '070702';
}

const align4 = (n: number): number => (n + 3) & ~3;

/** Parses one newc archive starting at `offset`; returns its entries and where the next data starts. */
export function parseNewc(bytes: Buffer, offset: number, where: string): { entries: CpioEntry[]; end: number } {
  const entries: CpioEntry[] = [];
  let at = offset;
  for (;;) {
    if (at + NEWC_HEADER > bytes.length || !isNewc(bytes, at))
      throw new RootfsError(`${where}: the cpio archive is damaged or truncated at byte ${at}`);
    const field = (i: number): number => parseInt(bytes.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const nameStart = at + NEWC_HEADER;
    const dataStart = align4(nameStart + nameSize);
    const next = align4(dataStart + size);
    if (Number.isNaN(size) || Number.isNaN(nameSize) || dataStart + size > bytes.length)
      throw new RootfsError(`${where}: the cpio archive is truncated at byte ${at}`);
    const raw = bytes.toString('utf8', nameStart, nameStart + nameSize).replace(/\0+$/, '');
    if (raw === TRAILER) return { entries, end: next };
    const name = raw.replace(/^(\.\/|\/)+/, '').replace(/^\.$/, '');
    if (name !== '') {
      const entry: CpioEntry = { name, mode, size };
      if (BUILTIN.test(name)) entry.content = bytes.subarray(dataStart, dataStart + size);
      entries.push(entry);
    }
    at = next;
  }
}

/**
 * Walks the initramfs the way the kernel does: zero padding is skipped,
 * plain cpio archives are parsed in place, and a compressed archive is
 * decompressed and its (possibly several) archives parsed; it ends the walk,
 * since what follows a compressed stream cannot be located without decoding it.
 */
async function readInitramfs(bytes: Buffer, file: string): Promise<{ entries: CpioEntry[]; segments: string[] }> {
  const entries: CpioEntry[] = [];
  const segments: string[] = [];
  let at = skipZeros(bytes, 0);
  while (at < bytes.length) {
    if (isNewc(bytes, at)) {
      const archive = parseNewc(bytes, at, `initrd ${file}`);
      entries.push(...archive.entries);
      segments.push('cpio');
      at = skipZeros(bytes, archive.end);
      continue;
    }
    const kind = detectCompression(bytes, at);
    if (!kind)
      throw new RootfsError(
        `initrd ${file}: byte ${at} starts neither a cpio archive nor compressed data this reads (${describeBytes(bytes, at)}); is it an initramfs?`,
      );
    const { out, complaint } = await decompress(kind, bytes.subarray(at), file);
    try {
      entries.push(...readPlainArchives(out, `initrd ${file} (${kind})`));
    } catch (error) {
      throw complaint ? new RootfsError(`initrd ${file}: the ${kind} data does not decompress (${complaint})`, { cause: error }) : error;
    }
    segments.push(kind);
    break;
  }
  if (segments.length === 0) throw new RootfsError(`initrd ${file} is empty`);
  return { entries, segments };
}

function readPlainArchives(bytes: Buffer, where: string): CpioEntry[] {
  const entries: CpioEntry[] = [];
  let at = skipZeros(bytes, 0);
  if (at >= bytes.length) throw new RootfsError(`${where}: no cpio archive inside`);
  while (at < bytes.length) {
    const archive = parseNewc(bytes, at, where);
    entries.push(...archive.entries);
    at = skipZeros(bytes, archive.end);
  }
  return entries;
}

function skipZeros(bytes: Buffer, at: number): number {
  while (at < bytes.length && bytes[at] === 0) at++;
  return at;
}

function describeBytes(bytes: Buffer, at: number): string {
  return bytes
    .subarray(at, at + 8)
    .toString('hex')
    .replace(/(..)/g, '$1 ')
    .trim();
}
