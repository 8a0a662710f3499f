/**
 * `plan`, `deploy` and `rollback`: put what the last build wrote onto an NFS
 * export root (a local directory or `[user@]host:/dir`), node by node at
 * ROOT/NODE, without touching what the nodes keep there (their state), with
 * the previous generation kept for a rollback. The steps, in order: read the
 * build and the target, check the secrets, plan (pure, plan.ts), apply
 * (apply.ts), boot server files, exportfs, the cluster's record.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { build, GENERATOR, prepare, programsForBuild, type BuildOptions, type CommonOptions, type Prepared } from '../build.js';
import { MissingProgramError, SecretsChangedError, TargetError, UsageError } from '../errors.js';
import { debianPackage, requirePrograms } from '../tools.js';
import { readOutputRecord } from '../emit/owner.js';
import { checkWritableDir } from '../paths.js';
import { displayPath } from '../profile/load.js';
import { fingerprint, secretChanges, type SecretsFingerprint } from '../profile/store.js';
import { silentReporter, type Reporter } from '../progress.js';
import { loadHashCache, readManifest, saveHashCache, type Manifest } from './manifest.js';
import { defaultCacheDir } from '../base/open.js';
import {
  diffBootFiles,
  diffNode,
  planRollback,
  statePaths,
  type BootFile,
  type BootFileChange,
  type NodeChanges,
  type NodeRollback,
  type NodeTarget,
} from './plan.js';
import {
  applyNode,
  applyRollback,
  existingPaths,
  lockTarget,
  META,
  readNodeTarget,
  readTargetFile,
  undoList,
  writeTargetFile,
} from './apply.js';
import { deployPrograms, openTarget, parseTarget, requireTools, rsync, type Target } from './target.js';

export { STATE_PATHS, statePaths, type NodeChanges, type BootFileChange } from './plan.js';

export interface TargetOptions extends CommonOptions {
  /** Output directory of the build (default: out); the build is OUT/CLUSTER. */
  out?: string;
  /** The export root: a directory here, or `[user@]host:/dir`. */
  to: string;
  /** TFTP root on the target host (default: the profile's exports.tftpRoot). */
  tftp?: string;
  /** dnsmasq's configuration directory on the target host (default: /etc/dnsmasq.d). */
  dnsmasq?: string;
  /** Where the exports(5) file goes on the target host (default: /etc/exports.d). */
  exportsDir?: string;
  /** Where the nfs-ganesha export file goes (default: /etc/ganesha when the nfs-ganesha service runs on the target host; false: never). */
  ganeshaDir?: string | false;
  /** Run `exportfs -ra` on the target host after writing the exports (default: true). */
  exportfs?: boolean;
  /** Deploy even though the secrets differ from the ones the target holds. */
  rotateSecrets?: boolean;
  /** How to reach a remote target (default: ssh). */
  ssh?: string[];
  /** Where digests of the build's files are cached between deploys (default: $XDG_CACHE_HOME/netroot). */
  cacheDir?: string;
  reporter?: Reporter;
}

export interface DeployOptions extends TargetOptions {
  /** Build options for the build run first when OUT/CLUSTER holds none. */
  build?: Omit<BuildOptions, keyof CommonOptions | 'out' | 'reporter'>;
}

export interface DeployPlan {
  cluster: string;
  target: string;
  /** The build deployed, and whether its nodes are full roots or overlays alone (a build without a base). */
  build: { dir: string; builtAt?: string; trees: 'rootfs' | 'overlay' };
  nodes: NodeChanges[];
  boot: BootFileChange[];
  notes: string[];
}

export interface DeployResult extends DeployPlan {
  /** Nodes written (the others were unchanged). */
  deployed: string[];
  exportfs: 'ran' | 'skipped' | 'not needed';
  /** Set when a build was run first. */
  built?: boolean;
}

/** The deploy's record of a cluster on the target: the secrets it was made with and the boot server files it wrote. */
interface ClusterRecord {
  kind: 'netroot-deploy';
  cluster: string;
  generator: string;
  deployedAt: string;
  nodes: string[];
  secrets: SecretsFingerprint;
  bootFiles: BootFile[];
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

interface Context {
  prepared: Prepared;
  target: Target;
  root: string;
  clusterDir: string;
  state: string[];
  /** The TFTP root on the target host. */
  tftpDir: string;
  record?: ClusterRecord;
}

function parseRecord(text: string, shown: string): ClusterRecord {
  try {
    return JSON.parse(text) as ClusterRecord;
  } catch {
    throw new TargetError(`${shown} cannot be read (not JSON); it was not written by this version of netroot`);
  }
}

function recordFile(root: string, cluster: string): string {
  return `${root}/${META}/clusters/${cluster}.json`;
}

async function open(options: TargetOptions, prepared: Prepared): Promise<Context> {
  const cwd = options.cwd ?? process.cwd();
  const spec = parseTarget(options.to, cwd);
  const cluster = prepared.loaded.cluster.name;
  const root = spec.dir;
  if (spec.kind === 'local') await checkWritableDir(root, `--to ${options.to}`);
  const target = openTarget(spec, options.ssh);
  let record: ClusterRecord | undefined;
  try {
    await requireTools(target, options.ssh);
    const text = await readTargetFile(target, recordFile(root, cluster));
    if (text !== undefined) record = parseRecord(text, `${target.shown}/${META}/clusters/${cluster}.json`);
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
function checkSecrets(ctx: Context, options: TargetOptions): void {
  if (options.rotateSecrets || !ctx.record?.secrets) return;
  const { secrets, identities } = ctx.prepared.secrets;
  const changes = secretChanges(ctx.record.secrets, secrets, identities);
  if (changes.length) throw new SecretsChangedError(ctx.target.shown, changes);
}

/** The boot server's files the build wrote, and where each goes on the target host. */
async function bootFiles(ctx: Context, options: TargetOptions): Promise<(BootFile & { source: string })[]> {
  const { cluster } = ctx.prepared.loaded;
  const name = cluster.name;
  const tftp = ctx.tftpDir;
  const files: (BootFile & { source: string })[] = [];
  const add = async (what: BootFile['what'], source: string, dest: string): Promise<void> => {
    if (existsSync(source)) files.push({ what, path: dest, source, sha256: sha256(await readFile(source)) });
  };
  for (const rel of await walkFiles(path.join(ctx.clusterDir, 'tftp')))
    await add('tftp', path.join(ctx.clusterDir, 'tftp', rel), `${tftp}/${rel}`);
  await add(
    'exports',
    path.join(ctx.clusterDir, 'exports', `${name}.exports`),
    `${options.exportsDir ?? '/etc/exports.d'}/${name}.exports`,
  );
  // The Ganesha file only where Ganesha is what the server runs (or a directory for it is given).
  const ganesha = options.ganeshaDir ?? ((await ganeshaRuns(ctx.target)) ? '/etc/ganesha' : false);
  if (ganesha) await add('ganesha', path.join(ctx.clusterDir, 'exports', `${name}.ganesha.conf`), `${ganesha}/${name}.ganesha.conf`);
  await add('dnsmasq', path.join(ctx.clusterDir, 'dnsmasq', `${name}.conf`), `${options.dnsmasq ?? '/etc/dnsmasq.d'}/${name}.conf`);
  return files;
}

/** Whether the target host's NFS server is nfs-ganesha (its service is running), rather than the kernel's. */
async function ganeshaRuns(target: Target): Promise<boolean> {
  return (await target.sh('systemctl is-active --quiet nfs-ganesha 2>/dev/null || exit 3')).code === 0;
}

async function digestsOnTarget(target: Target, paths: string[]): Promise<Record<string, string>> {
  const { stdout } = await target.sh(
    'while IFS= read -r p; do [ -f "$p" ] && sha256sum -- "$p"; done; exit 0',
    [],
    paths.map((p) => `${p}\n`).join(''),
  );
  const found: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.*)$/.exec(line);
    if (m) found[m[2]!] = m[1]!;
  }
  return found;
}

interface Planned extends DeployPlan {
  ctx: Context;
  /** The fingerprint of the secrets the deployed build holds. */
  secrets?: SecretsFingerprint;
  sources: Record<string, { dir: string; manifest: Manifest; target: NodeTarget; undone: string[] }>;
  files: (BootFile & { source: string })[];
}

/** `remember`: keep the files' digests for the next run (a deploy does; `plan` writes nothing anywhere). */
async function planWith(ctx: Context, options: TargetOptions, remember: boolean): Promise<Planned> {
  const { plan } = ctx.prepared;
  const cwd = options.cwd ?? process.cwd();
  const shownDir = displayPath(ctx.clusterDir, cwd);
  const owner = await readOutputRecord(ctx.clusterDir, shownDir);
  if (!owner) throw new UsageError(`there is no build in ${shownDir}: run build-images build first (deploy runs it for you)`);
  // The build must carry the cluster's secrets: an output made with others would split the cluster too.
  if (owner.kind === 'netroot-output' && owner.secrets && !options.rotateSecrets) {
    const changes = secretChanges(owner.secrets, ctx.prepared.secrets.secrets, ctx.prepared.secrets.identities);
    if (changes.length) throw new SecretsChangedError(`the build in ${shownDir} (rebuild it)`, changes);
  }
  checkSecrets(ctx, options);
  const trees = existsSync(path.join(ctx.clusterDir, 'rootfs')) ? 'rootfs' : 'overlay';
  const notes: string[] = [];
  if (trees === 'overlay') notes.push(`${shownDir} has no node trees (built without a base): only each node's overlay files are deployed`);
  const exportRoot = ctx.prepared.loaded.profile.exports.root;
  if (ctx.root !== exportRoot)
    notes.push(`the exports and PXE files name ${exportRoot}/NODE, not ${ctx.root}/NODE (exports.root in the profile)`);

  // A node taken out of the profile keeps its tree: deleting a root is never a deploy's to do.
  const { stdout: deployedNodes } = await ctx.target.sh('ls -1 -- "$1" 2>/dev/null; exit 0', [`${ctx.root}/${META}/nodes`]);
  const gone = deployedNodes.split('\n').filter((n) => n && !plan.nodes.some((p) => p.node.name === n));
  if (gone.length)
    notes.push(
      `${gone.join(', ')} ${gone.length === 1 ? 'was' : 'were'} deployed here before but ${gone.length === 1 ? 'is' : 'are'} no longer in the profile: left as ${gone.length === 1 ? 'it is' : 'they are'}`,
    );
  const files = await bootFiles(ctx, options);
  const found = await digestsOnTarget(ctx.target, [...files.map((f) => f.path), ...(ctx.record?.bootFiles ?? []).map((f) => f.path)]);
  const boot = diffBootFiles(files, found, ctx.record?.bootFiles ?? []);
  const sources: Planned['sources'] = {};
  const nodes: NodeChanges[] = [];
  for (const { node } of plan.nodes) {
    const dir = path.join(ctx.clusterDir, trees === 'rootfs' ? 'rootfs' : 'nodes', node.name);
    if (!existsSync(dir)) throw new UsageError(`${displayPath(dir, cwd)} is missing: rebuild ${shownDir}`);
    // Digests of the files a rebuild left as they were are not computed again.
    const cacheFile = path.join(
      options.cacheDir ?? defaultCacheDir(options.env ?? process.env),
      'deploy',
      createHash('sha256').update(ctx.clusterDir).digest('hex').slice(0, 16),
      `${node.name}.json`,
    );
    const cache = await loadHashCache(cacheFile);
    const manifest = await readManifest(dir, ctx.state, cache);
    if (remember) await saveHashCache(cacheFile, cache);
    const sourceState = ctx.state.filter((s) => existsSync(path.join(dir, s)));
    const target = await readNodeTarget(ctx.target, ctx.root, node.name, ctx.state);
    if (!target.current && !target.existing) target.existing = await existingPaths(ctx.target, ctx.root, node.name, Object.keys(manifest));
    const undone = target.pending ? await undoList(ctx.target, ctx.root, node.name, target.pending.generation) : [];
    const mac = node.mac.replace(/:/g, '-');
    const bootChanged = boot.some(
      (b) =>
        b.status !== 'unchanged' && b.what === 'tftp' && (b.path.endsWith(`01-${mac}`) || b.path.includes(`/boot/${node.board.name}/`)),
    );
    nodes.push(diffNode(node.name, manifest, sourceState, target, ctx.state, bootChanged));
    sources[node.name] = { dir, manifest, target, undone };
  }
  return {
    cluster: plan.cluster.name,
    target: ctx.target.shown,
    build: { dir: shownDir, ...(owner.kind === 'netroot-output' ? { builtAt: owner.builtAt } : {}), trees },
    nodes,
    boot,
    notes,
    ctx,
    sources,
    files,
    ...(owner.kind === 'netroot-output' && owner.secrets ? { secrets: owner.secrets } : {}),
  };
}

const publicPlan = (p: Planned): DeployPlan => ({
  cluster: p.cluster,
  target: p.target,
  build: p.build,
  nodes: p.nodes,
  boot: p.boot,
  notes: p.notes,
});

/** What a deploy would do, per node and for the boot server's files; writes nothing. */
export async function planDeploy(options: TargetOptions): Promise<DeployPlan> {
  const prepared = await prepare(options);
  const ctx = await open(options, prepared);
  try {
    return publicPlan(await planWith(ctx, options, false));
  } finally {
    await ctx.target.close();
  }
}

/** Deploy the last build (building first if there is none) onto the export root. */
export async function deploy(options: DeployOptions): Promise<DeployResult> {
  const targets: Target[] = [];
  try {
    return await deployWith(options, targets);
  } finally {
    for (const t of targets) await t.close();
  }
}

async function deployWith(options: DeployOptions, targets: Target[]): Promise<DeployResult> {
  const reporter = options.reporter ?? silentReporter;
  let prepared = await prepare(options);
  const cwd = options.cwd ?? process.cwd();
  const clusterDir = path.join(path.resolve(cwd, options.out ?? 'out'), prepared.loaded.cluster.name);
  const { formats, ...rest } = options.build ?? {};
  // Node trees need a base; without one the build writes the overlays alone.
  const hasBase = Boolean(rest.base ?? prepared.loaded.profile.base);
  const buildOptions: BuildOptions = {
    ...options,
    ...rest,
    ...(formats && hasBase ? { formats } : {}),
    ...(options.out ? { out: options.out } : {}),
    reporter,
  };
  const mustBuild = !(await readOutputRecord(clusterDir, clusterDir));
  // What the deploy and the build it may need run here, checked together before any work.
  requirePrograms([
    ...deployPrograms(parseTarget(options.to, cwd), options.ssh),
    ...(mustBuild ? await programsForBuild(buildOptions, prepared.loaded) : []),
  ]);
  let ctx = await open(options, prepared);
  targets.push(ctx.target);
  checkSecrets(ctx, options);
  let built = false;
  if (mustBuild) {
    const step = reporter.step(`building ${prepared.loaded.cluster.name} (there is no build to deploy yet)`);
    await build(buildOptions);
    step.finish();
    built = true;
    // The build may have generated the secrets (and saved them): read them as saved.
    prepared = await prepare(options);
    ctx = await open(options, prepared);
    targets.push(ctx.target);
  }
  const release = await lockTarget(ctx.target, ctx.root);
  try {
    return await deployLocked(ctx, prepared, options, reporter, built);
  } finally {
    await release();
  }
}

async function deployLocked(
  ctx: Context,
  prepared: Prepared,
  options: DeployOptions,
  reporter: Reporter,
  built: boolean,
): Promise<DeployResult> {
  const planned = await planWith(ctx, options, true);
  const { target, root } = ctx;
  const deployed: string[] = [];
  for (const changes of planned.nodes) {
    const s = planned.sources[changes.node]!;
    const work = changes.added.length + changes.changed.length + changes.removed.length + changes.seeded.length + changes.orphans.length;
    // An unchanged node is left alone, unless a deploy cut short left its generation unfinished.
    if (work === 0 && !s.target.pending && s.target.current) continue;
    const step = reporter.step(
      `deploying ${changes.node}: ${changes.added.length} added, ${changes.changed.length} changed, ${changes.removed.length} removed`,
    );
    await applyNode(target, {
      root,
      node: changes.node,
      source: s.dir,
      manifest: s.manifest,
      ...(s.target.current ? { current: s.target.current } : {}),
      changes,
      undone: s.undone,
    });
    step.finish();
    deployed.push(changes.node);
  }
  // Every node now holds this build: a rollback that was cut short is superseded.
  await target.sh('rm -f -- "$1"', [rollbackJournal(root, planned.cluster)]);
  await applyBootFiles(target, planned);
  const exportsTouched = planned.boot.some((b) => b.what === 'exports' && b.status !== 'unchanged') || deployed.length > 0;
  let exportfs: DeployResult['exportfs'] = 'not needed';
  if (options.exportfs === false) exportfs = 'skipped';
  else if (exportsTouched) {
    const { code } = await target.sh('command -v exportfs >/dev/null || exit 3; exportfs -ra');
    if (code === 0) exportfs = 'ran';
    // Ganesha reads its own file; the kernel server's exportfs is not needed there.
    else if (!planned.files.some((f) => f.what === 'ganesha'))
      throw new MissingProgramError(
        [{ program: 'exportfs', package: debianPackage('exportfs') }],
        target.spec.kind === 'ssh' ? target.spec.host : 'this machine',
      );
    else exportfs = 'skipped';
  }
  const { secrets, identities } = prepared.secrets;
  const record: ClusterRecord = {
    kind: 'netroot-deploy',
    cluster: planned.cluster,
    generator: GENERATOR,
    deployedAt: new Date().toISOString(),
    nodes: planned.nodes.map((n) => n.node),
    // What the deployed files hold: the build's own record, when it has one.
    secrets:
      planned.secrets ??
      fingerprint(
        secrets,
        identities,
        planned.nodes.map((n) => n.node),
      ),
    bootFiles: planned.files.map(({ what, path: p, sha256: h }) => ({ what, path: p, sha256: h })),
  };
  await writeTargetFile(target, recordFile(root, planned.cluster), `${JSON.stringify(record, null, 2)}\n`);
  return { ...publicPlan(planned), deployed, exportfs, ...(built ? { built } : {}) };
}

async function applyBootFiles(target: Target, planned: Planned): Promise<void> {
  const changed = planned.boot
    .filter((b) => b.status === 'added' || b.status === 'changed')
    .map((b) => planned.files.find((f) => f.path === b.path)!);
  const removed = planned.boot.filter((b) => b.status === 'removed').map((b) => b.path);
  if (changed.length + removed.length === 0) return;
  const dirs = [...new Set(changed.map((f) => path.posix.dirname(f.path)))];
  await target.sh(
    'n=$1; shift; i=0; for p in "$@"; do i=$((i + 1)); if [ $i -le "$n" ]; then mkdir -p -- "$p"; else rm -f -- "$p"; fi; done',
    [String(dirs.length), ...dirs, ...removed],
  );
  // rsync writes a temporary file beside each and renames it: dnsmasq, exportfs and TFTP clients see the old or the new file.
  const options = ['--checksum', '--perms', '--chmod=D755,F644', '--times'];
  const tftp = changed.filter((f) => f.what === 'tftp');
  if (tftp.length) {
    const from = path.join(planned.ctx.clusterDir, 'tftp');
    const to = planned.ctx.tftpDir;
    await rsync(
      target,
      [...options, '--files-from=-', `${from}/`, target.rsyncPath(`${to}/`)],
      tftp.map((f) => `${path.relative(from, f.source)}\n`).join(''),
    );
  }
  for (const file of changed.filter((f) => f.what !== 'tftp')) await rsync(target, [...options, file.source, target.rsyncPath(file.path)]);
}

export interface RollbackResult {
  cluster: string;
  target: string;
  nodes: NodeChanges[];
}

/** Put every node's previous generation back (state untouched); all nodes or none. */
export async function rollback(options: TargetOptions): Promise<RollbackResult> {
  const reporter = options.reporter ?? silentReporter;
  const prepared = await prepare(options);
  const ctx = await open(options, prepared);
  try {
    const release = await lockTarget(ctx.target, ctx.root);
    try {
      return await rollbackWith(ctx, prepared, reporter);
    } finally {
      await release();
    }
  } finally {
    await ctx.target.close();
  }
}

/**
 * Which generation a rollback makes for each node, written before the first
 * node is touched: a rollback cut short is finished by the next one (nodes
 * already rolled back are not rolled back again), and a deploy supersedes it.
 */
const rollbackJournal = (root: string, cluster: string): string => `${root}/${META}/clusters/${cluster}.rollback.json`;

async function rollbackWith(ctx: Context, prepared: Prepared, reporter: Reporter): Promise<RollbackResult> {
  const cluster = prepared.loaded.cluster.name;
  const journalFile = rollbackJournal(ctx.root, cluster);
  const text = await readTargetFile(ctx.target, journalFile);
  const journal = text === undefined ? undefined : (JSON.parse(text) as Record<string, number>);
  const planned: { r: NodeRollback; t: NodeTarget }[] = [];
  const problems: string[] = [];
  for (const { node } of prepared.plan.nodes) {
    const t = await readNodeTarget(ctx.target, ctx.root, node.name, ctx.state);
    const wanted = journal?.[node.name];
    if (wanted !== undefined && t.generation >= wanted) continue; // rolled back before the cut
    // This rollback's own generation, cut short: resumed (its pending generation holds the previous manifest).
    const resuming = wanted !== undefined && t.pending?.generation === wanted;
    const { pending: _pending, ...settled } = t;
    const undo = t.generation > 0 ? await undoList(ctx.target, ctx.root, node.name, t.generation) : [];
    const r = planRollback(node.name, resuming ? settled : t, undo, ctx.state);
    if ('problem' in r) problems.push(`${node.name}: ${r.problem}`);
    else planned.push({ r, t });
  }
  if (problems.length)
    throw new UsageError(`cannot roll back ${ctx.target.shown}; nothing was changed:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  if (!journal)
    await writeTargetFile(ctx.target, journalFile, JSON.stringify(Object.fromEntries(planned.map(({ r }) => [r.node, r.generation]))));
  for (const { r, t } of planned) {
    const step = reporter.step(`rolling back ${r.node} to its generation ${t.generation - 1}`);
    await applyRollback(ctx.target, ctx.root, r.node, r, t.previous!, t.current!);
    step.finish();
  }
  await ctx.target.sh('rm -f -- "$1"', [journalFile]);
  return { cluster, target: ctx.target.shown, nodes: planned.map((p) => p.r) };
}
