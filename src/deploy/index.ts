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
import { MissingProgramError, NothingToUndoError, SecretsChangedError, TargetRecordError, UsageError } from '../errors.js';
import { debianPackage, requirePrograms } from '../tools.js';
import { readOutputRecord } from '../emit/owner.js';
import { checkWritableDir } from '../paths.js';
import { displayPath } from '../profile/load.js';
import { bootDir } from '../plan/context.js';
import { fingerprint, secretChanges, type SecretsFingerprint } from '../profile/store.js';
import { silentReporter, type Reporter } from '../progress.js';
import { loadHashCache, readManifest, saveHashCache, type Manifest } from './manifest.js';
import { defaultCacheDir } from '../base/open.js';
import {
  decideRollback,
  diffBootFiles,
  diffNode,
  statePaths,
  type BootFile,
  type BootFileChange,
  type NodeChanges,
  type NodeTarget,
  NOTHING_RECORDED,
  type Operation,
  type RollbackInput,
} from './plan.js';
import {
  finishOperation,
  keepBootFiles,
  keptBootFiles,
  readJournal,
  readRecord,
  recordedClusters,
  restoreBootFiles,
  writeJournal,
  type ClusterRecord,
} from './records.js';
import { applyNode, applyRollback, existingEntries, lockTarget, META, readNodeTarget, undoList } from './apply.js';
import { checkBuild } from './current.js';
import { deployPrograms, openTarget, parseTarget, requireTools, rsync, type Target } from './target.js';

export { STATE_PATHS, statePaths, type NodeChanges, type BootFileChange, type Operation } from './plan.js';

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
  /** Set when the build was stale and rebuilt first: why. */
  rebuilt?: string[];
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
export async function planDeploy(options: TargetOptions & Pick<DeployOptions, 'build'>): Promise<DeployPlan> {
  const prepared = await prepare(options);
  // A stale build is refused, with the command that rebuilds it: plan writes nothing, not even a build.
  await checkBuild(options, prepared, 'plan');
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
  // A deploy puts the profile's build in place: none yet, or a stale one, is built first.
  const check = await checkBuild(options, prepared, 'deploy');
  const buildOptions = check.status === 'current' ? undefined : { ...check.rebuild, reporter };
  // What the deploy and the build it may need run here, checked together before any work.
  requirePrograms([
    ...deployPrograms(parseTarget(options.to, cwd), options.ssh),
    ...(buildOptions ? await programsForBuild(buildOptions, prepared.loaded) : []),
  ]);
  let ctx = await open(options, prepared);
  targets.push(ctx.target);
  checkSecrets(ctx, options);
  let built = false;
  if (buildOptions && check.status !== 'current') {
    const why = check.status === 'none' ? 'there is no build to deploy yet' : `the build is stale: ${check.reasons.join('; ')}`;
    const step = reporter.step(`building ${prepared.loaded.cluster.name} (${why})`);
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
    const result = await deployLocked(ctx, prepared, options, reporter, built);
    return check.status === 'stale' ? { ...result, rebuilt: check.reasons } : result;
  } finally {
    await release();
  }
}

async function deployLocked(
  opened: Context,
  prepared: Prepared,
  options: DeployOptions,
  reporter: Reporter,
  built: boolean,
): Promise<DeployResult> {
  const { target, root } = opened;
  // Read again under the lock: a deploy or rollback that ended while this one waited changed it.
  const { record: _before, ...rest } = opened;
  const record = await readRecord(target, root, prepared.loaded.cluster.name);
  const ctx: Context = { ...rest, ...(record ? { record } : {}) };
  const planned = await planWith(ctx, options, true);
  const cluster = planned.cluster;
  // An unchanged node is left alone, unless a deploy cut short left its generation unfinished.
  const writing = planned.nodes.filter((changes) => {
    const s = planned.sources[changes.node]!;
    const work = changes.added.length + changes.changed.length + changes.removed.length + changes.seeded.length + changes.orphans.length;
    return work > 0 || s.target.pending || !s.target.current;
  });
  const bootTouched = planned.boot.filter((b) => b.status !== 'unchanged').map((b) => b.path);
  // The journal names every node this deploy changes before the first change: a rollback undoes exactly those.
  const unfinished = await readJournal(target, root, cluster);
  const resumed = unfinished?.kind === 'deploy' ? unfinished : undefined;
  let operation: Operation | undefined = resumed;
  if (writing.length || bootTouched.length) {
    const nodes: Operation['nodes'] = Object.fromEntries(
      writing.map((c) => [c.node, { from: planned.sources[c.node]!.target.generation, to: c.generation }]),
    );
    operation = {
      kind: 'deploy',
      op: resumed?.op ?? (ctx.record?.last?.op ?? 0) + 1,
      at: resumed?.at ?? new Date().toISOString(),
      // A node the cut-short run already finished keeps the generation it started from.
      nodes: { ...nodes, ...resumed?.nodes },
    };
    await writeJournal(target, root, cluster, operation);
    // A rollback cut short is superseded: what it kept is not this deploy's.
    await keepBootFiles(target, root, cluster, operation.op, bootTouched, !resumed);
  }
  const deployed: string[] = [];
  for (const changes of writing) {
    const s = planned.sources[changes.node]!;
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
  await applyBootFiles(target, planned);
  const exportsTouched = planned.boot.some((b) => b.what === 'exports' && b.status !== 'unchanged') || deployed.length > 0;
  const exportfs = await runExportfs(
    target,
    options,
    exportsTouched,
    planned.files.some((f) => f.what === 'ganesha'),
  );
  const { secrets, identities } = prepared.secrets;
  const last = operation ?? ctx.record?.last;
  await finishOperation(target, root, {
    kind: 'netroot-deploy',
    cluster,
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
    ...(last ? { last } : {}),
  });
  return { ...publicPlan(planned), deployed, exportfs, ...(built ? { built } : {}) };
}

/** `exportfs -ra` on the target host when the exports changed (Ganesha reads its own file: the kernel server's exportfs is not needed there). */
async function runExportfs(target: Target, options: TargetOptions, needed: boolean, ganesha: boolean): Promise<DeployResult['exportfs']> {
  if (options.exportfs === false) return 'skipped';
  if (!needed) return 'not needed';
  const { code } = await target.sh('command -v exportfs >/dev/null || exit 3; exportfs -ra');
  if (code === 0) return 'ran';
  if (ganesha) return 'skipped';
  throw new MissingProgramError(
    [{ program: 'exportfs', package: debianPackage('exportfs') }],
    target.spec.kind === 'ssh' ? target.spec.host : 'this machine',
  );
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
  /** The deploy (or rollback) undone: when it ran, and the nodes it had changed. */
  undid: { kind: Operation['kind']; at: string; nodes: string[] };
  /** The nodes rolled back (a rollback cut short and finished now: those left). */
  nodes: NodeChanges[];
  /** The nodes the undone operation did not change: not touched. */
  untouched: string[];
  /** The boot server's files put back as they were, or removed (the undone operation created them). */
  boot: { what?: BootFile['what']; path: string; status: 'restored' | 'removed' }[];
  exportfs: DeployResult['exportfs'];
}

/** Undo exactly the last deploy (or rollback): the nodes it changed and the boot server's files; all nodes or none. */
export async function rollback(options: TargetOptions): Promise<RollbackResult> {
  const reporter = options.reporter ?? silentReporter;
  const prepared = await prepare(options);
  const ctx = await open(options, prepared);
  try {
    // Said before the lock is taken: a rollback with nothing to undo writes nothing at all.
    if (!ctx.record?.last && !(await readJournal(ctx.target, ctx.root, ctx.prepared.loaded.cluster.name)))
      throw new NothingToUndoError(`nothing to undo on ${ctx.target.shown}: ${NOTHING_RECORDED}; nothing was changed`);
    const release = await lockTarget(ctx.target, ctx.root);
    try {
      return await rollbackWith(ctx, prepared, options, reporter);
    } finally {
      await release();
    }
  } finally {
    await ctx.target.close();
  }
}

async function rollbackWith(ctx: Context, prepared: Prepared, options: TargetOptions, reporter: Reporter): Promise<RollbackResult> {
  const { target, root } = ctx;
  const cluster = prepared.loaded.cluster.name;
  // Read again under the lock: a deploy that ended while this rollback waited is the one to undo.
  const record = await readRecord(target, root, cluster);
  const unfinished = await readJournal(target, root, cluster);
  const last = record?.last;
  const named = Object.keys((unfinished?.kind === 'rollback' ? unfinished : last)?.nodes ?? {});
  const nodes: RollbackInput['nodes'] = {};
  for (const node of named) {
    const t = await readNodeTarget(target, root, node, ctx.state);
    nodes[node] = { ...t, undo: t.generation > 0 ? await undoList(target, root, node, t.generation) : [] };
  }
  const decision = decideRollback({
    ...(last ? { last } : {}),
    ...(unfinished ? { unfinished } : {}),
    nodes,
    state: ctx.state,
    now: new Date().toISOString(),
  });
  if (decision.action === 'nothing')
    throw new NothingToUndoError(`nothing to undo on ${target.shown}: ${decision.reason}; nothing was changed`);
  if (decision.action === 'refuse')
    throw new UsageError(`cannot roll back ${target.shown}; nothing was changed:\n${decision.problems.map((p) => `  ${p}`).join('\n')}`);
  const { undoing, operation } = decision;
  const kept = await keptBootFiles(target, root, cluster, undoing.op);
  if (!decision.resumed) await writeJournal(target, root, cluster, operation);
  // What this rollback replaces is kept in turn, so that a second rollback redoes what it undid.
  await keepBootFiles(target, root, cluster, operation.op, [...kept.restore, ...kept.remove], !decision.resumed);
  for (const r of decision.nodes) {
    const t = nodes[r.node]!;
    const step = reporter.step(`rolling back ${r.node} to its generation ${t.generation - 1}`);
    await applyRollback(target, root, r.node, r, t.previous!, t.current!);
    step.finish();
  }
  await restoreBootFiles(target, root, cluster, undoing.op);
  const whatOf = new Map([...(record?.bootFiles ?? []), ...(kept.record?.bootFiles ?? [])].map((f) => [f.path, f.what]));
  const boot: RollbackResult['boot'] = [
    ...kept.restore.map((p) => ({ path: p, status: 'restored' as const })),
    ...kept.remove.map((p) => ({ path: p, status: 'removed' as const })),
  ].map((b) => ({ ...(whatOf.has(b.path) ? { what: whatOf.get(b.path)! } : {}), ...b }));
  const exportfs = await runExportfs(
    target,
    options,
    boot.some((b) => b.what === 'exports') || decision.nodes.length > 0,
    boot.some((b) => b.what === 'ganesha'),
  );
  // The cluster's record as it was before the undone operation (its boot files, its secrets), with this rollback as the last.
  await finishOperation(target, root, { ...(kept.record ?? { ...record!, bootFiles: [] }), last: operation });
  return {
    cluster,
    target: target.shown,
    undid: { kind: undoing.kind, at: undoing.at, nodes: Object.keys(undoing.nodes) },
    nodes: decision.nodes,
    untouched: prepared.plan.nodes.map((n) => n.node.name).filter((n) => !(n in operation.nodes)),
    boot,
    exportfs,
  };
}
