/**
 * npm run -s prepare-base -- --profile opz3-netboot
 *
 * Builds the profile's debootstrap base into the cache (or finds it there) and
 * prints its path. .ci/run starts it in the background so that the half hour
 * an arm64 base takes under qemu-user overlaps with work that does not need
 * it; a build or a test that needs the base meanwhile waits for this process
 * instead of building it a second time (src/cache.ts).
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_FAILURE, NetrootError } from '../src/errors.js';
import { loadProfile } from '../src/profile/load.js';
import { defaultCacheDir } from '../src/base/open.js';
import { buildDebootstrapBase } from '../src/base/debootstrap.js';
import { allRequiredPackages } from '../src/base/check/requirements.js';
import { classifyBase, debootstrapWithPackages } from '../src/base/source.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run prepare-base --')
  .option('profile', { type: 'string', demandOption: true, describe: 'Profile whose base to build (name in profiles/ or a path)' })
  .option('cache-dir', { type: 'string', describe: 'Cache directory (default: $XDG_CACHE_HOME/netroot)' })
  .strict()
  .help()
  .parse();

try {
  const { cluster, profile, file } = await loadProfile(argv.profile);
  if (!profile.base) throw new NetrootError(`${file} names no base`);
  const source = classifyBase(profile.base, process.cwd());
  if (source.kind !== 'debootstrap')
    throw new NetrootError(`${file}: the base ${profile.base} is not built (only debootstrap: bases are); nothing to prepare`);
  const started = Date.now();
  const tarball = await buildDebootstrapBase(debootstrapWithPackages(source.spec, allRequiredPackages(cluster)), {
    cacheDir: argv['cache-dir'] ?? defaultCacheDir(),
    log: (line) => process.stderr.write(`prepare-base: ${line}\n`),
  });
  process.stderr.write(`prepare-base: ${tarball} ready after ${Math.round((Date.now() - started) / 1000)} s\n`);
  process.stdout.write(`${tarball}\n`);
} catch (error) {
  process.stderr.write(`prepare-base: ${(error as Error).message}\n`);
  process.exit(error instanceof NetrootError ? error.exitCode : EXIT_FAILURE);
}
