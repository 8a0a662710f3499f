/**
 * Runs a tier of the tests with node:test (test/support/test.ts says why):
 *
 *   npm test                  fast: unit tests, rendered files checked by the
 *                             real programs, small bases (*.test.ts)
 *   npm run test:slow         slow: real-base builds, the arm64 base, initrd
 *                             regeneration, lab boots (*.slow.test.ts)
 *   npm run test:all          both
 *   npm test -- FILE…         only these files (any tier)
 *
 * The test files and the CLI they start run bundled by esbuild, once per run
 * (scripts/test-bundle.ts). Each file runs in its own process (three at a time in the fast tier), each
 * test bounded by the tier's timeout unless it sets its own, and the whole tier by a deadline
 * after which every process left is killed. The last line is the count,
 * "N passed, N failed, N skipped", which .ci/run reads.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingTestPackages, missingTestPackagesLine } from '../test/support/needs.js';
import { bundleForTests } from './test-bundle.js';

interface Tier {
  /** Which files under test/ it runs. */
  matches: (file: string) => boolean;
  /** Default per-test timeout. */
  testTimeoutMs: number;
  /** The whole tier, after which everything still running is killed. */
  deadlineMs: number;
  /** Files run side by side. */
  concurrency: number;
}

const slow = (file: string) => file.endsWith('.slow.test.ts');
const TIERS: Record<string, Tier> = {
  // Three files at a time on two cores: some files mostly wait (on the Galera recovery program's rounds, on
  // daemons), and a third keeps the cores busy meanwhile (2026-12-07: 160 s and 167 s, against 190 s and 211 s
  // with two).
  fast: { matches: (f) => f.endsWith('.test.ts') && !slow(f), testTimeoutMs: 90_000, deadlineMs: 10 * 60_000, concurrency: 3 },
  // One file at a time: the lab's tests each take the lab's network and boot server. The arm64 base
  // (debootstrap under qemu-user) takes ~25 min with an empty cache; a test waits for it.
  slow: { matches: slow, testTimeoutMs: 40 * 60_000, deadlineMs: 75 * 60_000, concurrency: 1 },
  all: { matches: (f) => f.endsWith('.test.ts'), testTimeoutMs: 40 * 60_000, deadlineMs: 85 * 60_000, concurrency: 1 },
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? testFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .sort();
}

const args = process.argv.slice(2);
const tierArg = args.find((a) => a.startsWith('--tier='))?.slice('--tier='.length);
const named = args.filter((a) => !a.startsWith('--'));
const tier = TIERS[tierArg ?? (named.length ? 'all' : 'fast')];
if (!tier) {
  process.stderr.write(`scripts/test.ts: unknown tier ${tierArg}; use one of ${Object.keys(TIERS).join(', ')}\n`);
  process.exit(2);
}
// The fast tier's longest files, longest first (alone, bundled, on two cores: 36 s down to 13 s), start
// before the rest, so that the tier does not end on one of them running by itself. Three of them spend
// most of their time waiting (galera-recovery, rollout, k3s-standin): they overlap with the others.
const LONGEST = [
  'test/overlays/galera-recovery.test.ts',
  'test/build/rootfs.test.ts',
  'test/deploy/rollback.test.ts',
  'test/deploy/rollout.test.ts',
  'test/emit/artifact.test.ts',
  'test/profile/cli.test.ts',
  'test/overlays/galera-recovery-model.test.ts',
  'test/build/output.test.ts',
  'test/deploy/current.test.ts',
  'test/stop.test.ts',
  'test/overlays/rendered.test.ts',
  'test/lab/k3s-standin.test.ts',
  'test/docs/hardware.test.ts',
].map((f) => path.join(root, f));
for (const gone of LONGEST.filter((f) => !existsSync(f))) process.stderr.write(`scripts/test.ts: LONGEST names ${gone}, which is gone\n`);
const rank = (file: string) => (LONGEST.includes(file) ? LONGEST.indexOf(file) : LONGEST.length);
const files = named.length
  ? named.map((f) => path.resolve(f))
  : testFiles(path.join(root, 'test'))
      .filter(tier.matches)
      .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

// A whole tier needs the real peers: on a machine without them, one line naming the packages, before any test runs.
if (!named.length) {
  const missing = missingTestPackagesLine(missingTestPackages((tierArg ?? 'fast') as 'fast' | 'slow' | 'all'));
  if (missing) {
    process.stderr.write(`scripts/test.ts: ${missing}\n`);
    process.stdout.write('0 passed, 1 failed, 0 skipped\n');
    process.exit(1);
  }
}

// Secrets of this run only (removed at the end, unless the caller gave a place): what an earlier build stored for
// the same cluster names must not decide an outcome.
const ownSecrets = process.env.NETROOT_SECRETS_DIR ? undefined : mkdtempSync(path.join(os.tmpdir(), 'netroot-test-secrets-'));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  NETROOT_SECRETS_DIR: process.env.NETROOT_SECRETS_DIR ?? ownSecrets,
  // Read by test/support/test.ts for every test that does not set its own.
  NETROOT_TEST_TIMEOUT_MS: String(tier.testTimeoutMs),
};

// The tests run bundled (scripts/test-bundle.ts says why), and start the CLI from its bundle (test/support/cli.ts).
const cliSource = path.join(root, 'src/cli.ts');
const bundled = await bundleForTests(root, [...files, cliSource]);
env.NETROOT_TEST_CLI = bundled.bundles.get(cliSource)!;

const child = spawn(
  process.execPath,
  [
    '--enable-source-maps',
    '--test',
    '--test-force-exit',
    `--test-concurrency=${tier.concurrency}`,
    '--test-reporter=spec',
    ...files.map((f) => bundled.bundles.get(f)!),
  ],
  { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'], detached: true },
);

// Count from the reporter's own summary lines while passing its output through.
const counts: Record<string, number> = {};
let pending = '';
child.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  pending += chunk.toString();
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^ℹ (tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line.trim());
    if (m) counts[m[1]!] = Number(m[2]);
  }
});

let timedOut = false;
const deadline = setTimeout(() => {
  timedOut = true;
  process.stderr.write(`scripts/test.ts: the tier is still running after ${tier.deadlineMs / 60_000} min; killing it\n`);
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* already gone */
  }
}, tier.deadlineMs);

child.on('close', (code) => {
  clearTimeout(deadline);
  const passed = counts.pass ?? 0;
  // A timed-out test is "cancelled"; a runner that died before its summary failed.
  let failed = (counts.fail ?? 0) + (counts.cancelled ?? 0);
  if ((code !== 0 || timedOut || counts.tests === undefined) && failed === 0) failed = 1;
  const skipped = (counts.skipped ?? 0) + (counts.todo ?? 0);
  if (ownSecrets) rmSync(ownSecrets, { recursive: true, force: true });
  rmSync(bundled.dir, { recursive: true, force: true });
  process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  process.exit(failed ? 1 : 0);
});
