/**
 * A base root filesystem from whatever the user has: a directory, a tarball,
 * an Armbian disk image, or `debootstrap:SUITE:ARCH[:pkg,…]`. Each is read
 * once and cached by content; the result is always a BaseIndex.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { cannotRead, UsageError } from '../errors.js';
import { extractedTarballDir, INDEX_FILE, openBase, type BaseIndex } from './open.js';
import { rememberedDigest, stageIntoCache } from '../cache.js';
import { buildDebootstrapBase, formatDebootstrapSpec, parseDebootstrapSpec } from './debootstrap.js';
import { extractDiskImage } from './disk-image.js';

export type BaseKind = 'directory' | 'tarball' | 'image' | 'debootstrap';

export interface BaseSource {
  kind: BaseKind;
  /** As the user wrote it (for messages). */
  spec: string;
  /** Absolute path (directory, tarball, image); undefined for debootstrap. */
  path?: string;
}

const IMAGE = /\.img(\.xz)?$/;
const TARBALL = /\.(tar|tar\.gz|tgz|tar\.xz|txz|tar\.zst|tzst)$/;

/** What kind of base a spec names; paths are relative to `relativeTo` (the profile's directory, or the working directory for --base). */
export function classifyBase(spec: string, relativeTo: string): BaseSource {
  if (spec.startsWith('debootstrap:')) {
    parseDebootstrapSpec(spec); // a bad spec fails here, before anything is read
    return { kind: 'debootstrap', spec };
  }
  const absolute = path.resolve(relativeTo, spec);
  if (!existsSync(absolute)) throw new UsageError(`base ${spec} does not exist (looked at ${absolute})`);
  try {
    accessSync(absolute, constants.R_OK | (statSync(absolute).isDirectory() ? constants.X_OK : 0));
  } catch (error) {
    throw cannotRead('base', absolute, error);
  }
  if (IMAGE.test(absolute)) return { kind: 'image', spec, path: absolute };
  if (TARBALL.test(absolute)) return { kind: 'tarball', spec, path: absolute };
  return { kind: 'directory', spec, path: absolute };
}

export interface OpenSourceOptions {
  cacheDir: string;
  /** Packages the cluster needs: a debootstrap base is built with them. */
  packages: string[];
  log?: (line: string) => void;
  /** A directory's identity (directoryIdentity), under which its index is cached. */
  identity?: string;
  /** Running as root: an extraction keeps owners, device nodes and privileged xattrs (decided once, by the build). */
  privileged: boolean;
}

/** The debootstrap spec with the cluster's packages added, so the base holds what the nodes run. */
export function debootstrapWithPackages(spec: string, packages: string[]): string {
  const parsed = parseDebootstrapSpec(spec);
  return formatDebootstrapSpec({ ...parsed, packages: [...parsed.packages, ...packages] });
}

const imageRoot = (cacheDir: string, digest: string): string => path.join(cacheDir, 'image-roots', digest);

/** An Armbian image's root partition, extracted once into the cache (keyed by the image's sha256). */
async function openImage(image: string, options: OpenSourceOptions): Promise<BaseIndex> {
  const root = imageRoot(options.cacheDir, await rememberedDigest(image, options.cacheDir));
  if (!existsSync(root)) {
    await stageIntoCache(
      root,
      async (staging) => {
        await extractDiskImage(image, staging, {
          cacheDir: options.cacheDir,
          privileged: options.privileged,
          ...(options.log ? { log: options.log } : {}),
        });
      },
      { parentMode: 0o700 },
    );
  }
  return openBase(root);
}

/**
 * Whether a tarball or disk image base is in the cache already, extracted by an earlier build, so that
 * nothing decompresses or reads it again (the build's preflight asks).
 */
export async function extractedInCache(source: BaseSource, cacheDir: string): Promise<boolean> {
  if (source.kind !== 'tarball' && source.kind !== 'image') return false;
  // A base that cannot be read is reported by the build itself, with its own message.
  const digest = await rememberedDigest(source.path!, cacheDir).catch(() => undefined);
  if (!digest) return false;
  return existsSync(source.kind === 'tarball' ? path.join(extractedTarballDir(cacheDir, digest), INDEX_FILE) : imageRoot(cacheDir, digest));
}

export async function openBaseSource(source: BaseSource, options: OpenSourceOptions): Promise<BaseIndex> {
  switch (source.kind) {
    case 'directory':
      return openBase(source.path!, { cacheDir: options.cacheDir, ...(options.identity ? { identity: options.identity } : {}) });
    case 'tarball':
      return openBase(source.path!, {
        cacheDir: options.cacheDir,
        digest: await rememberedDigest(source.path!, options.cacheDir),
        privileged: options.privileged,
      });
    case 'image':
      return openImage(source.path!, options);
    case 'debootstrap': {
      const tarball = await buildDebootstrapBase(debootstrapWithPackages(source.spec, options.packages), {
        cacheDir: options.cacheDir,
        ...(options.log ? { log: options.log } : {}),
      });
      return openBase(tarball, {
        cacheDir: options.cacheDir,
        digest: await rememberedDigest(tarball, options.cacheDir),
        privileged: options.privileged,
      });
    }
  }
}
