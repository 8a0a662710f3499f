/**
 * One archive file on its way: written anew, or a previous build's archive
 * revised in place, its prefix (the shared base part, see artifact.ts) kept
 * after checking its digest and only the node's tail written after it. The
 * file's name appears only when it is committed; abandoned, a new file is
 * removed and a revised one put back as it was.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fsSync from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { temporaryName } from '../cache.js';
import { writeAll } from '../entries/io.js';
import { InternalError } from '../errors.js';
import { PIECE, type Format } from './tar-bytes.js';

export interface ArtifactFile {
  name: string;
  sha256: string;
  bytes: number;
  /** An archive's prefix (the base part, see above): its length and digest, what a revision checks. */
  prefix?: { bytes: number; sha256: string };
}

/** A node's archives in a previous output (see ArtifactNode.previous). */
export interface PreviousArchives {
  dir: string;
  files: readonly ArtifactFile[];
}

/** A previous archive whose prefix checked out: what revising it needs, and what puts it back. */
export interface Revision {
  format: Format;
  /** Where it is in the previous output. */
  from: string;
  /** Open for writing since it was checked: the revision writes into the very file whose prefix was read. */
  fd: number;
  prefix: { bytes: number; sha256: string };
  /** The digest state after the prefix, continued by the new tail. */
  hash: Hash;
  /** What followed the prefix: written back if the build fails. */
  oldTail: Buffer;
  /** An Output has it (and closes its fd). */
  taken?: boolean;
}

/**
 * Writes an archive while hashing it; the name appears only when it is committed. A new file, or a
 * previous archive being revised: moved here under the temporary name, cut after its prefix and continued.
 */
export class Output {
  private readonly fd: number;
  private readonly temp: string;
  private readonly hash: Hash;
  private bytes = 0;
  private prefix?: { bytes: number; sha256: string };
  private closed = false;
  constructor(
    private readonly file: string,
    private readonly revising?: Revision,
  ) {
    this.temp = temporaryName(file);
    if (!revising) {
      // The archive holds the node's secrets (keys, tokens): readable by its owner only.
      this.fd = fsSync.openSync(this.temp, 'w', 0o600);
      this.hash = createHash('sha256');
      return;
    }
    this.fd = revising.fd;
    revising.taken = true;
    try {
      fsSync.renameSync(revising.from, this.temp);
    } catch (error) {
      this.close();
      throw error;
    }
    this.hash = revising.hash;
    this.bytes = revising.prefix.bytes;
    this.prefix = revising.prefix;
  }
  get revised(): boolean {
    return this.revising !== undefined;
  }
  write(piece: Buffer): void {
    // Abandoned (a failure elsewhere, a signal) while other work went on: its descriptor is gone.
    if (this.closed) throw new InternalError(`${this.file} was written after it was closed`);
    // A revised archive is cut after its prefix at its first write (a failure before leaves it whole).
    if (this.revising && this.bytes === this.revising.prefix.bytes) fsSync.ftruncateSync(this.fd, this.bytes);
    writeAll(this.fd, piece, this.bytes);
    this.hash.update(piece);
    this.bytes += piece.length;
  }
  /** Everything written so far is the prefix. */
  endPrefix(): void {
    this.prefix = { bytes: this.bytes, sha256: this.hash.copy().digest('hex') };
  }
  private close(): void {
    if (!this.closed) fsSync.closeSync(this.fd);
    this.closed = true;
  }
  /** Closes the complete file, still under its temporary name. */
  end(): ArtifactFile {
    this.close();
    return { name: path.basename(this.file), sha256: this.hash.digest('hex'), bytes: this.bytes, prefix: this.prefix! };
  }
  async commit(): Promise<void> {
    await rename(this.temp, this.file);
  }
  /** A new file is deleted; a revised one is put back where it was, as it was. */
  async abandon(): Promise<void> {
    this.close();
    if (!this.revising) {
      await rm(this.temp, { force: true });
      return;
    }
    const at = [this.temp, this.file].find((f) => fsSync.existsSync(f));
    if (!at) return;
    const fd = fsSync.openSync(at, 'r+');
    try {
      fsSync.ftruncateSync(fd, this.revising.prefix.bytes);
      writeAll(fd, this.revising.oldTail, this.revising.prefix.bytes);
      fsSync.fsyncSync(fd);
    } finally {
      fsSync.closeSync(fd);
    }
    await rename(at, this.revising.from);
  }
}

/**
 * The node's previous archives, if every one can be revised: a regular file linked nowhere else (a revision
 * writes into it), the size it was written with, and a prefix that still has its digest. Reading the prefix
 * is the price of keeping it, and far less than writing it. Each is left open for the revision.
 */
export function checkPrevious(name: string, previous: PreviousArchives | undefined, formats: readonly Format[]): Revision[] | undefined {
  if (!previous) return undefined;
  const revisions: Revision[] = [];
  const buffer = Buffer.allocUnsafe(PIECE);
  const check = (format: Format): Revision | undefined => {
    const record = previous.files.find((f) => f.name === `${name}.tar.${format}`);
    const prefix = record?.prefix;
    if (!prefix) return undefined;
    const from = path.join(previous.dir, record.name);
    let fd: number;
    try {
      fd = fsSync.openSync(from, fsSync.constants.O_RDWR | fsSync.constants.O_NOFOLLOW);
    } catch {
      return undefined;
    }
    const revision = ((): Revision | undefined => {
      const stat = fsSync.fstatSync(fd);
      if (!stat.isFile() || stat.nlink !== 1 || stat.size !== record.bytes || prefix.bytes > stat.size) return undefined;
      const hash = createHash('sha256');
      for (let at = 0; at < prefix.bytes;) {
        const read = fsSync.readSync(fd, buffer, 0, Math.min(buffer.length, prefix.bytes - at), at);
        if (read === 0) return undefined;
        hash.update(buffer.subarray(0, read));
        at += read;
      }
      if (hash.copy().digest('hex') !== prefix.sha256) return undefined;
      const oldTail = Buffer.alloc(stat.size - prefix.bytes);
      if (fsSync.readSync(fd, oldTail, 0, oldTail.length, prefix.bytes) !== oldTail.length) return undefined;
      return { format, from, fd, prefix, hash, oldTail };
    })();
    if (!revision) fsSync.closeSync(fd);
    return revision;
  };
  for (const format of formats) {
    const revision = check(format);
    if (!revision) {
      for (const r of revisions) fsSync.closeSync(r.fd);
      return undefined;
    }
    revisions.push(revision);
  }
  return revisions;
}
