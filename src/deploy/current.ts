/**
 * Whether the build in OUT/CLUSTER is the build of the profile given: its
 * record says what it was made from (build-inputs.ts), read again now. A stale
 * build is rebuilt by deploy where the base is known (--base, or the
 * profile's base:), or where none is needed (a build of the overlays alone);
 * otherwise deploy and plan refuse it, with the command that rebuilds it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { GENERATOR, k3sBinaryGiven, type BuildOptions, type CommonOptions, type Prepared } from '../build.js';
import { readBuildInputs, staleReasons } from '../build-inputs.js';
import { defaultCacheDir } from '../base/open.js';
import { readOutputRecord } from '../emit/owner.js';
import { StaleBuildError } from '../errors.js';
import { displayPath } from '../profile/load.js';

/** What the check reads of a deploy's options. */
export interface BuildCheckOptions extends CommonOptions {
  out?: string;
  cacheDir?: string;
  /** What a build run by the deploy is given (DeployOptions.build). */
  build?: Omit<BuildOptions, keyof CommonOptions | 'out' | 'reporter'>;
}

export type BuildCheck =
  | { status: 'current' }
  /** No build yet, or a stale one that can be rebuilt here: with the options to build it. */
  | { status: 'none' | 'stale'; reasons: string[]; rebuild: BuildOptions };

const q = (word: string): string => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** Throws a StaleBuildError where the build is stale and cannot be rebuilt here (`action`: what the user ran). */
export async function checkBuild(options: BuildCheckOptions, prepared: Prepared, action: 'deploy' | 'plan'): Promise<BuildCheck> {
  const cwd = options.cwd ?? process.cwd();
  const { loaded } = prepared;
  const out = options.out ?? 'out';
  const clusterDir = path.join(path.resolve(cwd, out), loaded.cluster.name);
  const shown = displayPath(clusterDir, cwd);
  const { formats, ...rest } = options.build ?? {};
  // The base the user names now; else the one the build was made from (read again, but not rebuilt from unasked).
  const known = rest.base
    ? { spec: rest.base, relativeTo: cwd }
    : loaded.profile.base
      ? { spec: loaded.profile.base, relativeTo: path.dirname(loaded.file) }
      : undefined;
  const record = await readOutputRecord(clusterDir, shown);
  const recorded = record?.kind === 'netroot-output' ? record : undefined;
  const base = known ?? (recorded?.inputs?.base ? { spec: recorded.inputs.base.spec, relativeTo: '/' } : undefined);
  const k3s =
    k3sBinaryGiven({ ...(rest.k3sBinary ? { k3sBinary: rest.k3sBinary } : {}), cwd }, loaded).k3sBinary ?? recorded?.inputs?.k3s?.binary;
  // Node trees need a base; without one the build writes the overlays alone. A rebuild writes what the build had, and what is asked.
  const rebuildFormats = [...new Set([...(formats ?? []), ...(recorded?.formats ?? [])])];
  const rebuild: BuildOptions = {
    ...options,
    ...rest,
    ...(known && rebuildFormats.length ? { formats: rebuildFormats } : {}),
    ...(known && k3s ? { k3sBinary: k3s } : {}),
    out,
  };
  if (!record) return { status: 'none', reasons: [], rebuild };
  const now = await readBuildInputs(loaded, prepared.overlays.dir, {
    ...(base ? { base } : {}),
    ...(base && k3s ? { k3sBinary: k3s } : {}),
    cacheDir: rest.cacheDir ?? options.cacheDir ?? defaultCacheDir(options.env ?? process.env),
    generator: GENERATOR,
  });
  const reasons = staleReasons(recorded?.inputs, now);
  if (!reasons.length) return { status: 'current' };
  const needsBase = Boolean(recorded?.inputs?.base) || existsSync(path.join(clusterDir, 'rootfs'));
  if (action === 'deploy' && (known || !needsBase)) {
    // The base the rebuild reads is the one just identified: its identity is not taken again.
    const identity = known && now.base?.identity;
    return { status: 'stale', reasons, rebuild: { ...rebuild, ...(identity ? { baseIdentity: identity } : {}) } };
  }
  const command = [
    'build-images build --profile',
    q(options.profile),
    ...(base ? ['--base', q(known ? path.resolve(base.relativeTo, base.spec) : base.spec)] : needsBase ? ['--base', 'BASE'] : []),
    ...(base && recorded?.formats?.length ? ['--format', recorded.formats.join(',')] : []),
    ...(base && k3s ? ['--k3s-binary', q(k3s)] : []),
    '--out',
    q(out),
  ].join(' ');
  const why =
    action === 'plan'
      ? known || !needsBase
        ? 'deploy rebuilds it first; to see the plan of the new build, rebuild it now'
        : 'rebuild it'
      : `it was built from a base that neither --base nor the profile's base: names, so deploy does not rebuild it on its own; rebuild it`;
  throw new StaleBuildError(
    `the build in ${shown} is not the build of ${options.profile}: ${reasons.join('; ')}. Nothing was changed; ${why}:\n  ${command}\nthen ${action} again.`,
  );
}
