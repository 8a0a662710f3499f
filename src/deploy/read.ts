/**
 * What a deploy reads before it decides anything: the target (its tools, which
 * cluster's export root it is, the cluster's record), the build to deploy (its
 * record, its secrets, its node trees and boot server files) and each node's
 * generations there. The decisions themselves are plan.ts's (pure); reading
 * writes nothing but the digest cache, and only when asked (a deploy).
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Prepared } from '../build.js';
import { MissingProgramError, TargetRecordError, UsageError } from '../errors.js';
import { debianPackage, requirePrograms } from '../tools.js';
import { readOutputRecord } from '../emit/owner.js';
import { checkWritableDir } from '../paths.js';
import { displayPath } from '../profile/load.js';
import { bootDir } from '../plan/context.js';
import { BOOT_SERVER_DIRS, bootServerName, bootServerOutputs, TFTP_OUTPUT } from '../plan/boot-server-files.js';
import { refuseChangedSecrets, type SecretsFingerprint } from '../profile/store.js';
import { defaultCacheDir } from '../base/open.js';
import { loadHashCache, readManifest, saveHashCache, treeDigestsFile, type Manifest } from '../entries/manifest.js';
import { diffBootFiles, diffNode, statePaths, type BootFile, type BootFileChange, type NodeChanges, type NodeTarget } from './plan.js';
import { readRecord, recordedClusters, type ClusterRecord } from './records.js';
import { existingEntries, META, readNodeTarget, undoList } from './apply.js';
import { fileDigests, ganeshaRuns, hasProgram, listNames } from './target-commands.js';
import { deployPrograms, openTarget, parseTarget, type Target } from './target.js';
import type { DeployPlan, TargetOptions } from './options.js';

/** The target opened for one cluster, and where its build is. */
export interface Context {
  prepared: Prepared;
  target: Target;
  root: string;
  clusterDir: string;
  state: string[];
  /** The TFTP root on the target host. */
  tftpDir: string;
  record?: ClusterRecord;
}

/** A boot server file the build wrote (`source`, here) and where it goes on the target host. */
export type SourcedBootFile = BootFile & { source: string };

/** The plan, with what applying it needs. */
export interface Planned extends DeployPlan {
  ctx: Context;
  /** The fingerprint of the secrets the deployed build holds. */
  secrets?: SecretsFingerprint;
  sources: Record<string, { dir: string; manifest: Manifest; target: NodeTarget; undone: string[] }>;
  files: SourcedBootFile[];
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  if (!existsSync(path.join(dir, rel))) return [];
  const out: string[] = [];
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    if (lstatSync(path.join(dir, p)).isDirectory()) out.push(...(await walkFiles(dir, p)));
    else out.push(p);
  }
  return out;
}

/** rsync (and ssh) here and rsync on the target host, checked before any work: a missing one is named with its package. */
export async function requireTools(target: Target, ssh?: string[]): Promise<void> {
  requirePrograms(deployPrograms(target.spec, ssh));
  if (target.spec.kind === 'ssh' && !(await hasProgram(target, 'rsync'))) {
    throw new MissingProgramError([{ program: 'rsync', package: debianPackage('rsync') }], target.spec.host);
  }
}

/** Open the target, check its tools and that it is this cluster's export root, and read the cluster's record. */
export async function open(options: TargetOptions, prepared: Prepared): Promise<Context> {
  const cwd = options.cwd ?? process.cwd();
  const spec = parseTarget(options.to, cwd);
  const cluster = prepared.loaded.cluster.name;
  const root = spec.dir;
  if (spec.kind === 'local') await checkWritableDir(root, `--to ${options.to}`);
  const target = openTarget(spec, options.ssh);
  let record: ClusterRecord | undefined;
  try {
    await requireTools(target, options.ssh);
    const others = (await recordedClusters(target, root)).filter((c) => c !== cluster);
    if (others.length)
      throw new TargetRecordError(
        `${target.shown} is the export root of cluster ${others.join(', ')}, and this profile is cluster ${cluster}: an export root belongs to one cluster. ` +
          `Nothing was changed; give ${cluster} its own (--to, and exports.root in its profile: now ${prepared.loaded.profile.exports.root}).`,
      );
    record = await readRecord(target, root, cluster);
  } catch (error) {
    await target.close();
    throw error;
  }
  const persist = prepared.loaded.profile.persist;
  const tftpDir = options.tftp ?? prepared.loaded.profile.exports.tftpRoot;
  return {
    prepared,
    target,
    root,
    tftpDir,
    clusterDir: path.join(path.resolve(cwd, options.out ?? 'out'), cluster),
    state: statePaths(persist),
    ...(record ? { record } : {}),
  };
}

/** Refuse secrets that differ from the ones the target's nodes run with. */
export function checkSecrets(ctx: Context, options: TargetOptions): void {
  if (!options.rotateSecrets) refuseChangedSecrets(ctx.record?.secrets, ctx.prepared.secrets, () => ctx.target.shown);
}

/** The boot server's files the build wrote, and where each goes on the target host. */
async function bootFiles(ctx: Context, options: TargetOptions): Promise<SourcedBootFile[]> {
  const written = bootServerOutputs(ctx.prepared.loaded.cluster.name);
  const files: SourcedBootFile[] = [];
  const add = async (what: BootFile['what'], source: string, dest: string): Promise<void> => {
    if (existsSync(source)) files.push({ what, path: dest, source, sha256: sha256(await readFile(source)) });
  };
  const place = async (what: keyof typeof written, dir: string): Promise<void> =>
    add(what, path.join(ctx.clusterDir, written[what]), `${dir}/${bootServerName(written[what])}`);
  for (const rel of await walkFiles(path.join(ctx.clusterDir, TFTP_OUTPUT)))
    await add('tftp', path.join(ctx.clusterDir, TFTP_OUTPUT, rel), `${ctx.tftpDir}/${rel}`);
  await place('exports', options.exportsDir ?? BOOT_SERVER_DIRS.exports);
  // The Ganesha file only where Ganesha is what the server runs (or a directory for it is given).
  const ganesha = options.ganeshaDir ?? ((await ganeshaRuns(ctx.target)) ? BOOT_SERVER_DIRS.ganesha : false);
  if (ganesha) await place('ganesha', ganesha);
  await place('dnsmasq', options.dnsmasq ?? BOOT_SERVER_DIRS.dnsmasq);
  return files;
}

/** The build in OUT/CLUSTER: its record (which must carry the cluster's secrets), its kind of trees, and what to say about it. */
async function readBuild(ctx: Context, options: TargetOptions) {
  const cwd = options.cwd ?? process.cwd();
  const shownDir = displayPath(ctx.clusterDir, cwd);
  const owner = await readOutputRecord(ctx.clusterDir, shownDir);
  if (!owner) throw new UsageError(`there is no build in ${shownDir}: run build-images build first (deploy runs it for you)`);
  // The build must carry the cluster's secrets: an output made with others would split the cluster too.
  if (owner.kind === 'netroot-output' && !options.rotateSecrets)
    refuseChangedSecrets(owner.secrets, ctx.prepared.secrets, () => `the build in ${shownDir} (rebuild it)`);
  checkSecrets(ctx, options);
  const trees: DeployPlan['build']['trees'] = existsSync(path.join(ctx.clusterDir, 'rootfs')) ? 'rootfs' : 'overlay';
  const notes: string[] = [];
  if (trees === 'overlay') notes.push(`${shownDir} has no node trees (built without a base): only each node's overlay files are deployed`);
  const exportRoot = ctx.prepared.loaded.profile.exports.root;
  if (ctx.root !== exportRoot)
    notes.push(`the exports and PXE files name ${exportRoot}/NODE, not ${ctx.root}/NODE (exports.root in the profile)`);
  const build: DeployPlan['build'] = { dir: shownDir, ...(owner.kind === 'netroot-output' ? { builtAt: owner.builtAt } : {}), trees };
  const secrets = owner.kind === 'netroot-output' ? owner.secrets : undefined;
  return { build, notes, ...(secrets ? { secrets } : {}) };
}

/** A node taken out of the profile keeps its tree (deleting a root is never a deploy's to do): said in a note. */
async function goneNodes(ctx: Context): Promise<string | undefined> {
  const deployed = await listNames(ctx.target, `${ctx.root}/${META}/nodes`);
  const gone = deployed.filter((n) => !ctx.prepared.plan.nodes.some((p) => p.node.name === n));
  if (!gone.length) return undefined;
  const one = gone.length === 1;
  return `${gone.join(', ')} ${one ? 'was' : 'were'} deployed here before but ${one ? 'is' : 'are'} no longer in the profile: left as ${one ? 'it is' : 'they are'}`;
}

/** Each node's tree in the build against what the target holds of it. `remember`: save the digest cache. */
async function readNodes(ctx: Context, options: TargetOptions, trees: 'rootfs' | 'overlay', boot: BootFileChange[], remember: boolean) {
  const cwd = options.cwd ?? process.cwd();
  const sources: Planned['sources'] = {};
  const nodes: NodeChanges[] = [];
  const dirs = ctx.prepared.plan.nodes.map(({ node }) => path.join(ctx.clusterDir, trees === 'rootfs' ? 'rootfs' : 'nodes', node.name));
  for (const dir of dirs)
    if (!existsSync(dir)) throw new UsageError(`${displayPath(dir, cwd)} is missing: rebuild ${displayPath(ctx.clusterDir, cwd)}`);
  // Every tree is listed at once: one tree's find runs while another's listing is parsed.
  const manifests = await Promise.all(
    ctx.prepared.plan.nodes.map(async ({ node }, i) => {
      // Digests of the files a rebuild left as they were, or that the build recorded, are not computed again.
      const cacheFile = treeDigestsFile(options.cacheDir ?? defaultCacheDir(options.env ?? process.env), ctx.clusterDir, node.name);
      const cache = loadHashCache(cacheFile);
      const manifest = await readManifest(dirs[i]!, ctx.state, cache);
      if (remember) await saveHashCache(cacheFile, await cache);
      return manifest;
    }),
  );
  for (const [i, { node }] of ctx.prepared.plan.nodes.entries()) {
    const dir = dirs[i]!;
    const manifest = manifests[i]!;
    const sourceState = ctx.state.filter((s) => existsSync(path.join(dir, s)));
    const target = await readNodeTarget(ctx.target, ctx.root, node.name, ctx.state, { previous: false });
    if (!target.current && !target.existing) target.existing = await existingEntries(ctx.target, ctx.root, node.name, manifest);
    const undone = target.pending ? await undoList(ctx.target, ctx.root, node.name, target.pending.generation) : [];
    const mac = node.mac.replace(/:/g, '-');
    const bootChanged = boot.some(
      (b) => b.status !== 'unchanged' && b.what === 'tftp' && (b.path.endsWith(`01-${mac}`) || b.path.includes(`/${bootDir(node)}/`)),
    );
    nodes.push(diffNode(node.name, manifest, sourceState, target, ctx.state, bootChanged));
    sources[node.name] = { dir, manifest, target, undone };
  }
  return { nodes, sources };
}

/** Read the build and the target, and plan. `remember`: keep the files' digests for the next run (a deploy does; `plan` writes nothing anywhere). */
export async function readPlan(ctx: Context, options: TargetOptions, remember: boolean): Promise<Planned> {
  const { build, notes, secrets } = await readBuild(ctx, options);
  const gone = await goneNodes(ctx);
  if (gone) notes.push(gone);
  const files = await bootFiles(ctx, options);
  const found = await fileDigests(ctx.target, [...files.map((f) => f.path), ...(ctx.record?.bootFiles ?? []).map((f) => f.path)]);
  const boot = diffBootFiles(files, found, ctx.record?.bootFiles ?? []);
  const { nodes, sources } = await readNodes(ctx, options, build.trees, boot, remember);
  return {
    cluster: ctx.prepared.plan.cluster.name,
    target: ctx.target.shown,
    build,
    nodes,
    boot,
    notes,
    ctx,
    sources,
    files,
    ...(secrets ? { secrets } : {}),
  };
}

/** The plan as `plan` and `deploy` answer it. */
export const publicPlan = (p: Planned): DeployPlan => ({
  cluster: p.cluster,
  target: p.target,
  build: p.build,
  nodes: p.nodes,
  boot: p.boot,
  notes: p.notes,
});
