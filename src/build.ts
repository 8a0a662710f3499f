/**
 * The importable API: the pipeline as a flat list of named steps.
 * profile → secrets → overlays → plan → emit.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from './errors.js';
import { loadProfile, displayPath, type FindOptions, type LoadedProfile } from './profile/load.js';
import { defaultSecretsFile, loadSecrets, type LoadedSecrets } from './profile/secrets.js';
import { BUNDLED_OVERLAYS_DIR, loadOverlays } from './overlays/load.js';
import { planCluster, type BuildPlan, type PlannedFile } from './plan/plan.js';
import { emitCluster } from './emit/cluster.js';

export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
export const GENERATOR = `netroot ${VERSION}`;

export interface CommonOptions extends FindOptions {
  /** Profile name (profiles/NAME.yaml) or path. */
  profile: string;
  /** Secrets file (default: NAME.secrets.yaml beside the profile). */
  secrets?: string;
  /** Overlay directory (default: the bundled overlays). */
  overlays?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Prepared {
  loaded: LoadedProfile;
  secrets: LoadedSecrets;
  secretsFile: string;
  plan: BuildPlan;
}

/** Everything up to a full plan, with nothing written: this is also `validate`. */
export async function prepare(options: CommonOptions): Promise<Prepared> {
  const cwd = options.cwd ?? process.cwd();
  const loaded = await loadProfile(options.profile, options);
  const secretsFile = options.secrets ? path.resolve(cwd, options.secrets) : defaultSecretsFile(loaded.file);
  const secrets = await loadSecrets({ file: secretsFile, env: options.env ?? process.env, cwd, nodes: loaded.cluster.nodes.map((n) => n.name) });
  const overlays = await loadOverlays(options.overlays ? path.resolve(cwd, options.overlays) : BUNDLED_OVERLAYS_DIR);
  const plan = planCluster(loaded.cluster, secrets.secrets, overlays, secrets.identities);
  return { loaded, secrets, secretsFile, plan };
}

export interface BuildOptions extends CommonOptions {
  /** Output directory (default: out). */
  out?: string;
}

export interface BuildResult {
  cluster: string;
  dir: string;
  nodes: { name: string; roles: string[]; files: number }[];
  files: number;
  /** Set when this build generated the cluster's secrets. */
  secretsCreated?: string;
  secretsFile: string;
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  const cwd = options.cwd ?? process.cwd();
  const { loaded, secrets, secretsFile, plan } = await prepare(options);
  const outDir = path.resolve(cwd, options.out ?? 'out');
  // Secrets are saved only once the profile and every template proved good.
  const secretsCreated = await secrets.save();
  const emitted = await emitCluster(plan, outDir, GENERATOR);
  return {
    cluster: loaded.cluster.name,
    dir: displayPath(emitted.dir, cwd),
    nodes: plan.nodes.map(({ node, files }) => ({ name: node.name, roles: node.roles, files: files.length })),
    files: emitted.files,
    ...(secretsCreated ? { secretsCreated: displayPath(secretsCreated, cwd) } : {}),
    secretsFile: displayPath(secretsFile, cwd),
  };
}

/** One rendered file of one node, for review (`build-images render`). */
export function findPlannedFile(plan: BuildPlan, nodeName: string, filePath?: string): { node: string; files: PlannedFile[] } {
  const nodePlan = plan.nodes.find((n) => n.node.name === nodeName);
  if (!nodePlan) throw new UsageError(`no node named ${nodeName}; the nodes are ${plan.nodes.map((n) => n.node.name).join(', ')}`);
  if (filePath === undefined) return { node: nodeName, files: nodePlan.files };
  const wanted = filePath.replace(/^\/+/, '');
  const node = nodePlan.files.filter((f) => f.path === wanted);
  const boot = plan.bootServer.filter((f) => f.path === wanted || (f.path.startsWith('tftp/pxelinux.cfg/') && wanted === 'pxelinux.cfg' && f.path.endsWith(nodePlan.node.mac.replace(/:/g, '-'))));
  const found = [...node, ...boot];
  if (found.length === 0) throw new UsageError(`${nodeName} has no file ${filePath}; run without a path to list its files`);
  return { node: nodeName, files: found };
}
