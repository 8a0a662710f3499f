/**
 * Every program a build will run, known from its inputs before any work: the
 * kind of base and how it is compressed, the formats and compressions asked
 * for, and whether the build runs as root (owners, devices and capabilities
 * are written only then). A machine that lacks some fails at once, with one
 * error naming them all (src/tools.ts requirePrograms), instead of after
 * minutes of work, one package at a time.
 *
 * Only regenerating a base's initrd is known later, once its initrd has been
 * read: rootfs/netboot.ts checks those programs then, before it copies
 * anything. A program whose absence a build tolerates (zstd for the default
 * compression, apt-get for mmdebstrap's mirrors) is not required.
 */
import type { OutputFormat } from './emit/formats.js';
import { sniff } from './base/open.js';
import type { BaseSource } from './base/source.js';
import type { ProgramNeed } from './tools.js';

export interface BuildToolInputs {
  source: BaseSource;
  formats: readonly OutputFormat[];
  /** Compressions asked for (`--compress`); undefined: the default, which takes zstd only where installed. */
  compress?: readonly ('gz' | 'zst')[];
  /** Running as root. */
  privileged: boolean;
  /** A debootstrap base already built into the cache: mmdebstrap will not run. */
  debootstrapCached?: boolean;
  /** A tarball or disk image already extracted into the cache: nothing decompresses, partitions or extracts it again. */
  extracted?: boolean;
}

export async function buildPrograms(inputs: BuildToolInputs): Promise<ProgramNeed[]> {
  const { source, formats, privileged } = inputs;
  const needs: ProgramNeed[] = [];
  const need = (program: string, why: string): void => void needs.push({ program, why });
  const archive = source.kind === 'tarball' || source.kind === 'image';
  const extracted = archive && inputs.extracted === true;
  const compression = archive && !extracted ? await sniff(source.path!) : 'none';
  if (compression === 'xz' || compression === 'zstd') need(compression, `reading the ${compression}-compressed base ${source.spec}`);
  switch (source.kind) {
    case 'directory':
      need('find', `telling whether the directory base ${source.spec} changed`);
      need('getfattr', `the file capabilities of the directory base ${source.spec}`);
      break;
    case 'image':
      if (extracted) break;
      need('sfdisk', `the partition table of the disk image ${source.spec}`);
      need('debugfs', `reading the root filesystem of the disk image ${source.spec}`);
      break;
    case 'debootstrap':
      if (!inputs.debootstrapCached) need('mmdebstrap', `building the base ${source.spec}`);
      break;
    case 'tarball':
      break;
  }
  // As root, an extracted base and every node tree get the base's capabilities written back.
  if (privileged && ((source.kind !== 'directory' && !extracted) || formats.includes('tree')))
    need('setfattr', "writing the base's file capabilities");
  if (formats.includes('tree')) need('cp', 'writing node trees (--format tree)');
  if (formats.includes('tar') && inputs.compress?.includes('zst')) need('zstd', '.tar.zst artifacts (--compress zst)');
  return needs;
}
