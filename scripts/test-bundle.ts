/**
 * The test files and the command line, bundled by esbuild once per run of scripts/test.ts. Each test
 * file runs in a process of its own and many start the CLI; under tsx each such process spends
 * about 0.6 s of CPU resolving and loading some 150 modules through tsx's loader, which on two cores
 * was a fifth of the fast tier's time. A bundle loads as one file.
 *
 * Each module keeps its source file's `import.meta.url`, so that what a module finds beside itself
 * (overlays/, profiles/, test fixtures) is what it finds under tsx. Packages stay outside the bundle
 * and are found from where it is written: under this checkout's node_modules/.cache.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const keepModuleUrls: esbuild.Plugin = {
  name: 'keep-module-urls',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      return { contents: source.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
    });
  },
};

/** Bundles each of `entries` (paths under `root`) into a new directory; returns it and each entry's bundle, by entry. */
export async function bundleForTests(root: string, entries: string[]): Promise<{ dir: string; bundles: Map<string, string> }> {
  const cache = path.join(root, 'node_modules', '.cache', 'netroot-test');
  await mkdir(cache, { recursive: true });
  // What a run that was killed left behind (a finished run removes its own).
  for (const old of await readdir(cache)) {
    const at = path.join(cache, old);
    if (Date.now() - (await stat(at)).mtimeMs > 24 * 3600_000) await rm(at, { recursive: true, force: true });
  }
  const dir = await mkdtemp(path.join(cache, 'run-'));
  // Some tests run the CLI as another user.
  await chmod(dir, 0o755);
  await esbuild.build({
    entryPoints: entries,
    outdir: dir,
    outbase: root,
    bundle: true,
    // Modules the test files share are written once.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    outExtension: { '.js': '.mjs' },
    plugins: [keepModuleUrls],
    logLevel: 'warning',
  });
  const bundles = new Map(entries.map((entry) => [entry, path.join(dir, path.relative(root, entry)).replace(/\.ts$/, '.mjs')] as const));
  return { dir, bundles };
}
