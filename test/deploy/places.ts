/**
 * Profiles, their builds and export roots for the deploy tests that need no
 * base (each node's overlay alone: fast): every profile in a directory of
 * its own, built into out-NAME, and each test's export root and boot server
 * directories under a label of its own, on this machine or over ssh.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../../src/build.js';
import type { DeployOptions } from '../../src/deploy/index.js';
import { readManifest, type Manifest } from '../../src/entries/manifest.js';
import { silentReporter } from '../../src/progress.js';
import { NODES, STATE } from './support.js';

export interface Place {
  root: string;
  /** The boot server's directories' parent. */
  server: string;
  options(profile: string): DeployOptions;
  flags(profile: string): string[];
}

export interface Places {
  tmp: string;
  env: NodeJS.ProcessEnv;
  profile(name: string): string;
  /** Write profile NAME (not built). */
  write(name: string, text: string): Promise<void>;
  /** Build profile NAME into out-NAME; each node's files as built. */
  build(name: string): Promise<Record<string, Manifest>>;
  /** `ssh`: reach the export root as root@127.0.0.1 with this ssh argv. */
  place(label: string, ssh?: string[]): Place;
  cleanup(): Promise<void>;
}

export async function places(prefix: string): Promise<Places> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), prefix));
  const env = {
    SOURCE_DATE_EPOCH: '1700000000',
    NETROOT_SECRETS_DIR: path.join(tmp, 'secrets'),
    XDG_CACHE_HOME: path.join(tmp, 'xdg'),
    PATH: process.env.PATH,
  };
  await mkdir(path.join(tmp, 'profiles'));
  const profile = (name: string): string => path.join(tmp, 'profiles', `${name}.yaml`);
  const out = (name: string): string => path.join(tmp, `out-${name}`);
  return {
    tmp,
    env,
    profile,
    write: (name, text) => writeFile(profile(name), text),
    async build(name) {
      const { cluster } = await build({ profile: profile(name), cwd: tmp, out: out(name), env, reporter: silentReporter });
      const trees: Record<string, Manifest> = {};
      for (const node of NODES) trees[node] = await readManifest(path.join(out(name), cluster, 'nodes', node), STATE);
      return trees;
    },
    place(label, ssh) {
      const root = path.join(tmp, `exports-${label}`);
      const server = path.join(tmp, `server-${label}`);
      const boot = { tftp: `${server}/tftp`, dnsmasq: `${server}/dnsmasq.d`, exportsDir: `${server}/exports.d` };
      const to = ssh ? `root@127.0.0.1:${root}` : root;
      return {
        root,
        server,
        options: (name) => ({
          profile: profile(name),
          cwd: tmp,
          out: out(name),
          to,
          ...boot,
          ganeshaDir: false,
          exportfs: false,
          env,
          reporter: silentReporter,
          ...(ssh ? { ssh } : {}),
        }),
        flags: (name) => [
          ...['-p', profile(name), '--out', out(name), '--to', to, '--no-exportfs'],
          ...['--tftp', boot.tftp, '--dnsmasq', boot.dnsmasq, '--exports-dir', boot.exportsDir],
          ...(ssh ? ['--ssh', ssh.join(' ')] : []),
        ],
      };
    },
    cleanup: () => rm(tmp, { recursive: true, force: true }),
  };
}
