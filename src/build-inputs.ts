/**
 * What a build was made from: the resolved profile, the overlay templates, the
 * base's identity, the k3s binary and netroot's version. A build records them
 * in its output (emit/owner.ts); `plan` and `deploy` read them again from the
 * profile given and use the build only while they are the same
 * (`staleReasons`, pure), so an edited profile is never deployed as its old build.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { classifyBase, debootstrapWithPackages, type BaseSource } from './base/source.js';
import { debootstrapCachePath, parseDebootstrapSpec } from './base/debootstrap.js';
import { directoryIdentity } from './base/open.js';
import { allRequiredPackages } from './base/check/requirements.js';
import { rememberedDigest } from './cache.js';
import type { LoadedProfile } from './profile/load.js';

export interface BuildInputs {
  /** sha256 of the resolved profile (extends and defaults applied; the secrets are fingerprinted apart). */
  profile: string;
  /** sha256 of every file in the overlay directory, with its path. */
  overlays: string;
  /** The base as given (a path made absolute, or debootstrap:…) and its identity where it can be known without reading it. */
  base?: { spec: string; identity?: string };
  /** A k3s binary given as a file (absolute) and its sha256; without one, the release of k3s.version (in the profile). */
  k3s?: { binary: string; sha256?: string };
  generator: string;
}

/**
 * The base's identity when it can be known without reading it: a tarball's or image's remembered sha256, a
 * built debootstrap's, a directory's metadata (one `find`, no index).
 */
export async function quickIdentity(source: BaseSource, cacheDir: string, packages: string[]): Promise<string | undefined> {
  if (source.kind === 'tarball' || source.kind === 'image') return `${source.kind}:${await rememberedDigest(source.path!, cacheDir)}`;
  if (source.kind === 'debootstrap') {
    const tarball = debootstrapCachePath(cacheDir, parseDebootstrapSpec(debootstrapWithPackages(source.spec, packages)));
    return existsSync(tarball) ? `tarball:${await rememberedDigest(tarball, cacheDir)}` : undefined;
  }
  return `directory:${await directoryIdentity(source.path!)}`;
}

async function digestDir(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    for (const entry of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(p);
      else
        hash
          .update(`${p}\0`)
          .update(await readFile(path.join(dir, p)))
          .update('\0');
    }
  };
  await walk('');
  return hash.digest('hex');
}

export interface InputSources {
  /** The base spec and the directory a relative one is read from; none: a build without a base. `identity`: its quickIdentity, taken already. */
  base?: { spec: string; relativeTo: string; identity?: string };
  /** A k3s binary file, absolute. */
  k3sBinary?: string;
  cacheDir: string;
  generator: string;
}

/** The inputs as they are now. A base or k3s binary that cannot be read has no identity (and so differs from any recorded one). */
export async function readBuildInputs(loaded: LoadedProfile, overlaysDir: string, sources: InputSources): Promise<BuildInputs> {
  const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
  let base: BuildInputs['base'];
  if (sources.base) {
    const { spec, relativeTo } = sources.base;
    const absolute = spec.startsWith('debootstrap:') ? spec : path.resolve(relativeTo, spec);
    const identity =
      sources.base.identity ??
      (await quickIdentity(classifyBase(absolute, '/'), sources.cacheDir, allRequiredPackages(loaded.cluster)).catch(() => undefined));
    base = { spec: absolute, ...(identity ? { identity } : {}) };
  }
  const k3sSha = sources.k3sBinary ? await rememberedDigest(sources.k3sBinary, sources.cacheDir).catch(() => undefined) : undefined;
  return {
    profile: sha256(JSON.stringify(loaded.profile)),
    overlays: await digestDir(overlaysDir),
    ...(base ? { base } : {}),
    ...(sources.k3sBinary ? { k3s: { binary: sources.k3sBinary, ...(k3sSha ? { sha256: k3sSha } : {}) } } : {}),
    generator: sources.generator,
  };
}

/** Why a build made from `recorded` is not the build of `now`, in words; empty when it is current. */
export function staleReasons(recorded: BuildInputs | undefined, now: BuildInputs): string[] {
  if (!recorded) return ['it does not record what it was built from (an older netroot made it)'];
  const reasons: string[] = [];
  if (recorded.profile !== now.profile) reasons.push('the profile changed since');
  if (recorded.overlays !== now.overlays) reasons.push('the overlay templates changed since');
  if (recorded.generator !== now.generator) reasons.push(`${recorded.generator} made it, and this is ${now.generator}`);
  if (recorded.base?.spec !== now.base?.spec)
    reasons.push(
      recorded.base && now.base
        ? `it was built from the base ${recorded.base.spec}, not ${now.base.spec}`
        : recorded.base
          ? `it was built from the base ${recorded.base.spec}, and none is given now`
          : `it was built without a base, and now the base is ${now.base!.spec}`,
    );
  // A debootstrap base not built in this cache is known by its spec alone.
  else if (
    recorded.base &&
    recorded.base.identity !== now.base?.identity &&
    (now.base?.identity || !recorded.base.spec.startsWith('debootstrap:'))
  )
    reasons.push(`the base ${recorded.base.spec} ${now.base?.identity ? 'changed since' : 'cannot be read now'}`);
  if (recorded.k3s?.binary !== now.k3s?.binary) reasons.push('another k3s binary is given now');
  else if (recorded.k3s && recorded.k3s.sha256 !== now.k3s?.sha256) reasons.push(`the k3s binary ${recorded.k3s.binary} changed since`);
  return reasons;
}
