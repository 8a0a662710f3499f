/**
 * A cluster to deploy: two small Armbian-like bases (B changes, adds and
 * removes files, and an 8 MB file so a transfer takes long enough to be
 * killed in the middle), the opz3 profile and variants that change rendered
 * files, builds into one output directory, and the real CLI as a subprocess.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as assert from 'uvu/assert';
import { build } from '../../src/build.js';
import { readManifest, sameEntry, type Manifest } from '../../src/entries/manifest.js';
import { statePaths } from '../../src/deploy/plan.js';
import type { TargetOptions } from '../../src/deploy/index.js';
import { silentReporter } from '../../src/progress.js';
import { makeArmbianBase } from '../support/armbian-base.js';
import { CLI_ARGS } from '../support/cli.js';
import { OPZ3 } from '../profile/helpers.js';

export const NODES = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven', 'opz3-4-top'];
export const STATE = statePaths();

export interface Fixture {
  tmp: string;
  env: NodeJS.ProcessEnv;
  out: string;
  profiles: string;
  /** What a deploy needs to run a build itself (base A). */
  buildOptions: { base: string; formats: ['tree']; k3sBinary: string; cacheDir: string };
  /** Build profile NAME (opz3, opz3-b, opz3-c) over base A or B into `out`; deploys then name that profile (deploy refuses another's build). */
  build(profile: string, base: 'a' | 'b'): Promise<void>;
  /** Options for deploy/plan/rollback to `to` (boot server files under tmp/server-<label>). */
  target(to: string, label: string, extra?: Partial<TargetOptions>): TargetOptions;
  /** CLI flags for the same. */
  flags(to: string, label: string): string[];
  cleanup(): Promise<void>;
}

async function put(root: string, rel: string, content: string | Buffer): Promise<void> {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), content);
}

export async function fixture(): Promise<Fixture> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-deploy-'));
  const baseA = path.join(tmp, 'base-a');
  await makeArmbianBase(baseA, path.join(tmp, 'work'));
  await put(baseA, 'var/lib/mysql/ibdata1', "the image's empty datadir\n");
  await put(baseA, 'var/log/README', 'image log dir\n');
  await put(baseA, 'usr/share/only-in-a', 'a\n');
  await put(baseA, 'usr/lib/big.bin', randomBytes(8 << 20));
  const baseB = path.join(tmp, 'base-b');
  await cp(baseA, baseB, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  await rm(path.join(baseB, 'usr/share/only-in-a'));
  await put(baseB, 'usr/share/new-in-b', 'b\n');
  await put(baseB, 'usr/lib/big.bin', randomBytes(8 << 20));
  await put(baseB, 'var/lib/mysql/ibdata1', "the image's datadir, version B\n");
  const k3s = path.join(tmp, 'k3s');
  await writeFile(k3s, '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
  const profiles = path.join(tmp, 'profiles');
  await mkdir(profiles);
  await writeFile(path.join(profiles, 'opz3.yaml'), OPZ3);
  await writeFile(path.join(profiles, 'opz3-b.yaml'), OPZ3.replace('virtualRouterId: 51', 'virtualRouterId: 52'));
  await writeFile(path.join(profiles, 'opz3-c.yaml'), OPZ3.replace('virtualRouterId: 51', 'virtualRouterId: 53'));
  const out = path.join(tmp, 'out');
  const env = {
    SOURCE_DATE_EPOCH: '1700000000',
    NETROOT_SECRETS_DIR: path.join(tmp, 'secrets'),
    XDG_CACHE_HOME: path.join(tmp, 'xdg-cache'),
    PATH: process.env.PATH,
  };
  const server = (label: string) => path.join(tmp, `server-${label}`);
  let built = 'opz3';
  const profile = () => path.join(profiles, `${built}.yaml`);
  return {
    tmp,
    env,
    out,
    profiles,
    buildOptions: { base: baseA, formats: ['tree'], k3sBinary: k3s, cacheDir: path.join(tmp, 'cache') },
    async build(name, base) {
      built = name;
      await build({
        profile: profile(),
        cwd: tmp,
        base: base === 'a' ? baseA : baseB,
        formats: ['tree'],
        out,
        cacheDir: path.join(tmp, 'cache'),
        k3sBinary: k3s,
        env,
        reporter: silentReporter,
      });
    },
    target: (to, label, extra = {}) => ({
      profile: profile(),
      cwd: tmp,
      out,
      to,
      tftp: `${server(label)}/tftp`,
      dnsmasq: `${server(label)}/dnsmasq.d`,
      exportsDir: `${server(label)}/exports.d`,
      ganeshaDir: `${server(label)}/ganesha`,
      exportfs: false,
      env,
      reporter: silentReporter,
      ...extra,
    }),
    flags: (to, label) => [
      '-p',
      profile(),
      '--out',
      out,
      '--to',
      to,
      '--tftp',
      `${server(label)}/tftp`,
      '--dnsmasq',
      `${server(label)}/dnsmasq.d`,
      '--exports-dir',
      `${server(label)}/exports.d`,
      '--ganesha-dir',
      `${server(label)}/ganesha`,
      '--no-exportfs',
    ],
    cleanup: () => rm(tmp, { recursive: true, force: true }),
  };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real command line in `cwd`, bounded by a timeout. */
export async function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...CLI_ARGS, ...args], {
      cwd,
      env,
      timeout: 120_000,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * Start the CLI in its own process group and SIGKILL the whole group (node and
 * its rsync and ssh children, as a power cut would) `delayMs` after stderr shows
 * `marker`; or another `signal` (SIGINT: Ctrl-C on a terminal). Resolves with the
 * signal it died of; rejects after 120 s.
 */
export async function killAt(
  cwd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  marker: string,
  delayMs: number,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<{ signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, [...CLI_ARGS, ...args], { cwd, env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let fired = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      reject(new Error(`the command never printed ${JSON.stringify(marker)} within 120 s:\n${stderr}`));
    }, 120_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!fired && stderr.includes(marker)) {
        fired = true;
        setTimeout(() => {
          try {
            process.kill(-child.pid!, signal);
          } catch {
            /* already gone */
          }
        }, delayMs);
      }
    });
    child.once('exit', (_code, died) => {
      clearTimeout(timer);
      resolve({ signal: died, stderr });
    });
  });
}

/** The node's tree as deployed: everything but node state. */
export const live = (root: string, node: string): Promise<Manifest> => readManifest(path.join(root, node), STATE);
/** The node's tree as the build in `out` has it. */
export const built = (out: string, node: string): Promise<Manifest> => readManifest(path.join(out, 'opz3/rootfs', node), STATE);

export function assertSameTree(actual: Manifest, expected: Manifest, what: string): void {
  const differ = [...new Set([...Object.keys(actual), ...Object.keys(expected)])].filter(
    (p) => !actual[p] || !expected[p] || !sameEntry(actual[p]!, expected[p]!),
  );
  assert.equal(differ.slice(0, 10), [], `${what}: paths that differ`);
}

/** Every path is the old or the new version, none is missing that both have, nothing else is there. */
export function assertOldOrNew(actual: Manifest, before: Manifest, after: Manifest, what: string): void {
  const problems: string[] = [];
  for (const [p, e] of Object.entries(actual)) {
    const ok = (m: Manifest) => m[p] !== undefined && (e.t === 'd' ? m[p]!.t === 'd' : sameEntry(m[p]!, e));
    if (!ok(before) && !ok(after))
      problems.push(`/${p} is neither the old nor the new version${!before[p] && !after[p] ? ' (in neither build)' : ''}`);
  }
  for (const p of Object.keys(before)) if (after[p] && !actual[p]) problems.push(`/${p} is missing`);
  assert.equal(problems.slice(0, 10), [], `${what}: every file old or new`);
}
