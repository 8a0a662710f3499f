/** Build a bundled profile into a temporary directory, with secrets kept there too. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { prepare, GENERATOR, type BuildOptions, type Prepared } from '../../src/build.js';
import { silentReporter } from '../../src/progress.js';
import { emitCluster } from '../../src/emit/cluster.js';
import { isRoot } from '../../src/privileges.js';

export interface TempBuild extends Prepared {
  tmp: string;
  /** out/<cluster> */
  dir: string;
  nodeRoot(name: string): string;
  cleanup(): Promise<void>;
}

export async function buildToTemp(profile: string, options: { env?: NodeJS.ProcessEnv; profilesDir?: string } = {}): Promise<TempBuild> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-test-'));
  const prepared = await prepare({
    profile,
    cwd: tmp,
    searchDirs: [options.profilesDir ?? path.resolve('profiles')],
    secrets: path.join(tmp, 'secrets.yaml'),
    env: options.env ?? {},
  });
  const { dir } = await emitCluster(prepared.plan, path.join(tmp, 'out'), GENERATOR, { privileged: isRoot() });
  return {
    ...prepared,
    tmp,
    dir,
    nodeRoot: (name) => path.join(dir, 'nodes', name),
    cleanup: () => rm(tmp, { recursive: true, force: true }),
  };
}

/**
 * A real build whose every path is under `tmp`: the secrets, the cache, the k3s stand-in at tmp/k3s and
 * the output at tmp/OUT; node trees from `base`, dated SOURCE_DATE_EPOCH 1700000000, reporting nothing.
 */
export function scratchBuildOptions(
  tmp: string,
  profile: string,
  base: string,
  out: string,
  extra: Partial<BuildOptions> = {},
): BuildOptions {
  return {
    profile,
    cwd: tmp,
    secrets: path.join(tmp, 'secrets.yaml'),
    cacheDir: path.join(tmp, 'cache'),
    k3sBinary: path.join(tmp, 'k3s'),
    base,
    formats: ['tree'],
    out: path.join(tmp, out),
    env: { SOURCE_DATE_EPOCH: '1700000000' },
    reporter: silentReporter,
    ...extra,
  };
}
