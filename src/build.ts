/**
 * The importable API: the pipeline as a flat list of named steps.
 * profile → secrets → overlays → plan → emit.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from './errors.js';
import { loadProfile, displayPath, type FindOptions, type LoadedProfile } from './profile/load.js';
import { loadSecrets, type LoadedSecrets } from './profile/secrets.js';
import { clusterSecretsFile, fingerprint, legacySecretsFiles, refuseChangedSecrets } from './profile/store.js';
import { readOutputRecord } from './emit/owner.js';
import { checkWritableDir } from './paths.js';
import { BUNDLED_OVERLAYS_DIR, loadOverlays, type OverlaySet } from './overlays/load.js';
import { planCluster, type BuildPlan, type PlannedFile } from './plan/plan.js';
import { emitCluster } from './emit/cluster.js';
import type { RootfsInputs } from './emit/rootfs.js';
import { OUTPUT_FORMATS, type OutputFormat } from './emit/formats.js';
import { defaultReporter, type Reporter } from './progress.js';
import { classifyBase, debootstrapWithPackages, extractedInCache, openBaseSource, type BaseSource } from './base/source.js';
import { quickIdentity, readBuildInputs } from './build-inputs.js';
import { debootstrapCachePath, parseDebootstrapSpec } from './base/debootstrap.js';
import { boardModules, hasNetbootCopy, netbootBase, netbootIdentity } from './base/netboot.js';
import { nodeKey, prefixKey, type BuildState } from './emit/state.js';
import { PACKING } from './emit/packed.js';
import { decideBaseReading, decideRebuild, readPreviousOutput } from './emit/rebuild.js';
import { baseNotes, bootDir, bootFilePaths, isRaspberryPi, type BaseFacts } from './plan/context.js';
import { type BaseIndex } from './base/open.js';
import { isRoot } from './privileges.js';
import { existsSync } from 'node:fs';
import { allRequiredPackages, checkBase } from './base/check/requirements.js';
import { clusterWarnings } from './profile/rules.js';
import { clusterFile, K3S_PATH, planBootFiles } from './base/boot-files.js';
import { defaultCacheDir } from './base/open.js';
import { ARCHIVE_LAYOUT } from './emit/artifact.js';
import { compressors, resolveFormats } from './emit/compressors.js';
import { epochFromEnv, newestMtime } from './emit/epoch.js';
import { resolveK3sBinary, type K3sBinary } from './k3s/binary.js';
import type { Cluster } from './profile/resolve.js';
import { withClusterLayer } from './emit/layer.js';
import { mergeOverlay } from './emit/overlay.js';
import { readFile } from 'node:fs/promises';
import { buildPrograms } from './preflight.js';
import { requirePrograms, type ProgramNeed } from './tools.js';
import { bootServerOutputs, TFTP_OUTPUT } from './plan/boot-server-files.js';

export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
export const GENERATOR = `netroot ${VERSION}`;

export interface CommonOptions extends FindOptions {
  /** Profile name (profiles/NAME.yaml) or path. */
  profile: string;
  /** Secrets file (default: the cluster's file in the secrets directory, see profile/store.ts). */
  secrets?: string;
  /** Overlay directory (default: the bundled overlays). */
  overlays?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Prepared {
  loaded: LoadedProfile;
  secrets: LoadedSecrets;
  secretsFile: string;
  overlays: OverlaySet;
  /** Planned without a base: files that depend on the base's packages are re-planned once it is read. */
  plan: BuildPlan;
  /** What the profile allows but the user should hear about (no SSH keys, …). */
  warnings: string[];
}

/** Everything up to a full plan, with nothing written: this is also `validate`. */
export async function prepare(options: CommonOptions): Promise<Prepared> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const loaded = await loadProfile(options.profile, options);
  // The cluster's secrets, wherever the profile lives; a file beside the profile (the old place) is read once and moved over.
  const secretsFile = options.secrets ? path.resolve(cwd, options.secrets) : clusterSecretsFile(loaded.cluster.name, env);
  const fallback = options.secrets ? [] : legacySecretsFiles(loaded.file, loaded.cluster.name);
  const secrets = await loadSecrets({
    file: secretsFile,
    fallback,
    env,
    cwd,
    nodes: loaded.cluster.nodes.map((n) => n.name),
    tls: {
      cluster: loaded.cluster.name,
      vip: loaded.cluster.profile.network.vip,
      servers: loaded.cluster.servers.map((s) => ({ name: s.name, ip: s.ip })),
    },
  });
  const overlays = await loadOverlays(options.overlays ? path.resolve(cwd, options.overlays) : BUNDLED_OVERLAYS_DIR);
  const plan = planCluster(loaded.cluster, secrets.secrets, overlays, secrets.identities);
  return { loaded, secrets, secretsFile, overlays, plan, warnings: clusterWarnings(loaded.cluster) };
}

export interface BuildOptions extends CommonOptions {
  /** Output directory (default: out). */
  out?: string;
  /** Base root filesystem (overrides the profile's `base:`). */
  base?: string;
  /** With a base: what to write per node (default: tar). */
  formats?: OutputFormat[];
  /** Archive compressions (default: gz, plus zst where the zstd program is installed). */
  compress?: ('gz' | 'zst')[];
  /** k3s binary (overrides the profile's `k3s.binary`). */
  k3sBinary?: string;
  /** Where bases, images and k3s downloads are cached (default: $XDG_CACHE_HOME/netroot). */
  cacheDir?: string;
  /** Where k3s releases are downloaded from (default: the k3s project's releases). */
  k3sReleaseUrl?: string;
  /** Build even though the secrets differ from the ones the previous output was made with. */
  rotateSecrets?: boolean;
  reporter?: Reporter;
  /** The profile, secrets and plan already prepared from these options (a deploy that builds first): not read again. */
  prepared?: Prepared;
  /** The base's identity (build-inputs.ts quickIdentity) as the caller took it just before (a deploy's check of its build): not taken again. */
  baseIdentity?: string;
}

export interface BuildResult {
  cluster: string;
  dir: string;
  nodes: { name: string; roles: string[]; files: number }[];
  files: number;
  /** Set when this build generated the cluster's secrets. */
  secretsCreated?: string;
  /** Set when the secrets were copied from the file beside the profile into the cluster's file. */
  secretsMigrated?: { from: string; to: string };
  secretsFile: string;
  /**
   * `reused`: nothing about the base or any node changed since the previous build; the base was not read, and
   * `entries` is what the previous build counted (absent when its state did not record it).
   */
  base?: { source: string; kind: string; arch: string; entries?: number; reused: boolean; initrdRegenerated?: 'now' | 'cached' };
  /** Nodes taken unchanged from the previous build, and nodes built anew. */
  reused?: string[];
  rebuilt?: string[];
  k3s?: { path: string; sha256: string; source: string };
  formats: OutputFormat[];
  artifacts?: { name: string; sha256: string; bytes: number }[];
  /** Things the build did not refuse but the user should know. */
  warnings: string[];
  /** What the rendered files assumed (e.g. of a base that was not read). */
  notes: string[];
}

export function parseCompress(value: string | undefined): ('gz' | 'zst')[] | undefined {
  if (value === undefined) return undefined;
  const items = [
    ...new Set(
      value
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean),
    ),
  ];
  for (const item of items) if (item !== 'gz' && item !== 'zst') throw new UsageError(`--compress ${item}: use gz, zst or gz,zst`);
  return items as ('gz' | 'zst')[];
}

export function parseFormats(value: string | string[] | undefined): OutputFormat[] | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!(OUTPUT_FORMATS as readonly string[]).includes(item)) throw new UsageError(`--format ${item}: use tree, tar or tree,tar`);
  }
  return [...new Set(items)] as OutputFormat[];
}

/** A base read, checked and given an initrd that boots from NFS. */
interface ReadBase {
  index: BaseIndex;
  arch: string;
  facts: BaseFacts;
  identity: string;
  regenerated?: 'now' | 'cached';
}

interface RootfsPrepared {
  /** The plan made with what the base holds. */
  plan: BuildPlan;
  inputs: RootfsInputs;
  bootFiles: PlannedFile[];
  reuseBootFiles?: { dir: string; paths: string[] };
  facts: NonNullable<BuildResult['base']>;
  k3s: NonNullable<BuildResult['k3s']>;
  /** What the rendered files assumed of the base, or what it lacks. */
  notes: { notes: string[]; warnings: string[] };
  /** The base's identity as taken before it was read (build-inputs.ts quickIdentity), if it could be. */
  quickIdentity?: string;
}

/** What every step of a build with a base works from, resolved once. */
interface RootfsContext {
  options: BuildOptions;
  prepared: Prepared;
  spec: string;
  source: BaseSource;
  env: NodeJS.ProcessEnv;
  cacheDir: string;
  formats: OutputFormat[];
  packages: string[];
  clusterDir: string;
  /** The boot files (tftp/…) the nodes boot from. */
  neededBoot: string[];
  /** Running as root: decided once, for every writer. */
  privileged: boolean;
  reporter: Reporter;
}

/** The base as far as the plan needs it: read, or as the previous build recorded it. */
interface KnownBase {
  arch: string;
  facts: BaseFacts;
  /** The base's identity before the cluster layer is added (see state.ts). */
  sourceId: string;
  sourceDateEpoch: number;
  baseNewestMtime: number | undefined;
  /** The identity found without reading the base (build-inputs.ts quickIdentity). */
  quick: string | undefined;
  /** Set when the base was read already. */
  read?: ReadBase;
}

/**
 * Read the base, check it, find k3s and the boot files: everything the root
 * filesystems need, before anything is written. When the previous build was
 * made from the same base and nothing a node depends on changed, the base is
 * not read at all.
 */
async function prepareRootfs(context: RootfsContext): Promise<RootfsPrepared> {
  const { cluster } = context.prepared.loaded;
  const previous = await readPreviousOutput(
    context.clusterDir,
    cluster.nodes.map((n) => n.name),
    context.neededBoot,
  );
  const base = await knowBase(context, previous?.state);
  const plan = planCluster(
    cluster,
    context.prepared.secrets.secrets,
    context.prepared.overlays,
    context.prepared.secrets.identities,
    base.facts,
  );
  const k3s = await findK3s(context, base.arch);
  const baseIdentity = `${base.sourceId}|k3s:${k3s.sha256}`;
  const keys = await rootfsKeys(context, plan, baseIdentity, base.sourceDateEpoch);
  const bootSources = bootSourcesOf(cluster);
  const { nodes: decisions, reuseEverything } = decideRebuild(previous, {
    formats: context.formats,
    baseIdentity,
    bootSources,
    bootFiles: context.neededBoot,
    ...keys,
    privileged: context.privileged,
  });
  const common = {
    bootSources,
    formats: context.formats,
    ...(context.options.compress ? { compress: context.options.compress } : {}),
    sourceDateEpoch: base.sourceDateEpoch,
    baseNewestMtime: base.baseNewestMtime,
    cacheDir: context.cacheDir,
    baseIdentity,
    arch: base.arch,
    facts: base.facts,
    privileged: context.privileged,
    ...keys,
    decisions,
    ...(previous ? { previous: { dir: context.clusterDir, state: previous.state } } : {}),
    clusterDir: context.clusterDir,
  };
  const k3sFacts = { path: displayPath(k3s.path, context.options.cwd ?? process.cwd()), sha256: k3s.sha256, source: k3s.source };
  const described = { source: context.spec, kind: context.source.kind, arch: base.arch };
  if (reuseEverything) {
    const entries = previous?.state.baseEntries;
    return {
      plan,
      inputs: { ...common, layerFiles: [] },
      bootFiles: [],
      reuseBootFiles: { dir: context.clusterDir, paths: context.neededBoot },
      facts: { ...described, ...(entries !== undefined ? { entries } : {}), reused: true },
      k3s: k3sFacts,
      notes: baseNotes(base.facts),
      ...(base.quick ? { quickIdentity: base.quick } : {}),
    };
  }
  const read = base.read ?? (await readBase(context, base.quick));
  const laid = await layCluster(context, read.index, plan, k3s.path, base.sourceDateEpoch);
  return {
    plan,
    inputs: { ...common, base: read.index, ...laid.inputs },
    bootFiles: laid.bootFiles,
    facts: {
      ...described,
      entries: read.index.entries.length,
      reused: false,
      ...(read.regenerated ? { initrdRegenerated: read.regenerated } : {}),
    },
    k3s: k3sFacts,
    notes: baseNotes(base.facts),
    ...(base.quick ? { quickIdentity: base.quick } : {}),
  };
}

function rootfsContext(
  options: BuildOptions,
  prepared: Prepared,
  spec: string,
  relativeTo: string,
  outDir: string,
  reporter: Reporter,
  privileged: boolean,
): RootfsContext {
  const { cluster } = prepared.loaded;
  const env = options.env ?? process.env;
  return {
    options,
    prepared,
    spec,
    source: classifyBase(spec, relativeTo),
    env,
    cacheDir: options.cacheDir ?? defaultCacheDir(env),
    formats: options.formats ?? ['tar'],
    packages: allRequiredPackages(cluster),
    clusterDir: path.join(outDir, cluster.name),
    neededBoot: [...new Set(cluster.nodes.flatMap((n) => bootFilePaths(n).map((f) => `tftp/${f}`)))],
    privileged,
    reporter,
  };
}

/** The base's architecture, facts and date: from the previous build's record where it stands in (rebuild.ts), else read. */
async function knowBase(context: RootfsContext, previous: BuildState | undefined): Promise<KnownBase> {
  const { cacheDir, packages } = context;
  const quick = context.options.baseIdentity ?? (await quickIdentity(context.source, cacheDir, packages));
  // A base whose initrd an earlier build regenerated is known by its regenerated copy.
  const modules = boardModules(context.prepared.loaded.cluster);
  const knownIdentity = quick && hasNetbootCopy(cacheDir, quick, modules) ? netbootIdentity(quick, modules) : quick;
  const explicitEpoch = epochFromEnv(context.env);
  const { recorded, readFirst } = decideBaseReading(previous, { knownIdentity, explicitEpoch });
  if (!readFirst) {
    const newest = recorded!.newestMtime;
    return {
      arch: recorded!.arch,
      facts: recorded!.facts,
      sourceId: knownIdentity!,
      sourceDateEpoch: explicitEpoch ?? newest!,
      baseNewestMtime: newest,
      quick,
    };
  }
  const read = await readBase(context, quick);
  const newest = newestMtime(read.index);
  return {
    arch: read.arch,
    facts: read.facts,
    sourceId: read.identity,
    sourceDateEpoch: explicitEpoch ?? newest,
    baseNewestMtime: newest,
    quick,
    read,
  };
}

async function readBase(context: RootfsContext, quick: string | undefined): Promise<ReadBase> {
  const { source, cacheDir, packages, reporter } = context;
  const cluster = context.prepared.loaded.cluster;
  const log = (line: string): void => reporter.info(line);
  const reading = reporter.step(`reading base ${context.spec}`);
  const identity = source.kind === 'directory' ? quick!.slice('directory:'.length) : undefined;
  const opened = await openBaseSource(source, {
    cacheDir,
    packages,
    log,
    privileged: context.privileged,
    ...(identity ? { identity } : {}),
  });
  reading.finish(`${opened.entries.length} entries`);
  const checked = await checkBase(opened, cluster);
  // A debootstrap base's identity is known once it is built.
  const plain = quick ?? (await quickIdentity(source, cacheDir, packages))!;
  const netboot = await netbootBase(opened, cluster, {
    cacheDir,
    identity: plain,
    arch: checked.arch,
    log,
    privileged: context.privileged,
  });
  return {
    index: netboot.base,
    arch: checked.arch,
    facts: checked.facts,
    identity: netboot.identity,
    ...(netboot.regenerated ? { regenerated: netboot.regenerated } : {}),
  };
}

async function findK3s(context: RootfsContext, arch: string): Promise<K3sBinary> {
  const given = k3sBinaryGiven(context.options, context.prepared.loaded).k3sBinary;
  const releaseUrl = context.options.k3sReleaseUrl ?? context.env.NETROOT_K3S_RELEASE_URL;
  return resolveK3sBinary({
    version: context.prepared.loaded.profile.k3s.version,
    arch,
    cacheDir: context.cacheDir,
    ...(given ? { binary: given } : {}),
    ...(releaseUrl ? { releaseUrl } : {}),
  });
}

/** Per node, the keys of its inputs and of its archives' prefix (state.ts): equal keys, equal outputs. */
async function rootfsKeys(
  context: RootfsContext,
  plan: BuildPlan,
  baseIdentity: string,
  sourceDateEpoch: number,
): Promise<{ nodeKeys: Map<string, string>; prefixKeys: Map<string, string> }> {
  // What "gz, plus zst where installed" means on this machine today, and the compressors' versions: installing,
  // removing or upgrading zstd changes the artifacts.
  const compression = context.formats.includes('tar') ? await compressors(await resolveFormats(context.options.compress)) : '';
  const keyContext = {
    baseIdentity,
    // How chunks are packed is in the keys too: a kept prefix must be what a fresh build would pack.
    generator: `${GENERATOR} ${ARCHIVE_LAYOUT} ${PACKING}`,
    sourceDateEpoch,
    compress: compression,
    // A tree made without root lacks owners, devices and capabilities: never reuse it for a root build.
    privileged: context.privileged,
  };
  return {
    nodeKeys: new Map(plan.nodes.map((n) => [n.node.name, nodeKey(n, keyContext)])),
    prefixKeys: new Map(plan.nodes.map((n) => [n.node.name, prefixKey(n, keyContext)])),
  };
}

/** Which base files the boot files come from: another kernel path with the same name is another kernel. */
function bootSourcesOf(cluster: Cluster): string {
  return JSON.stringify(
    [
      ...new Set(
        cluster.nodes.map((n) =>
          JSON.stringify([
            n.board.name,
            n.board.kernel,
            n.board.initrd,
            n.board.fdt ?? null,
            // Only where there is any, so that a U-Boot board's key stays what earlier builds recorded.
            ...(n.board.firmware.length || isRaspberryPi(n) ? [bootDir(n), ...n.board.firmware] : []),
          ]),
        ),
      ),
    ].sort(),
  );
}

/** The boot files, and the base with the files every node gets the same (k3s), checked against every node's overlay. */
async function layCluster(
  context: RootfsContext,
  index: BaseIndex,
  plan: BuildPlan,
  k3sPath: string,
  sourceDateEpoch: number,
): Promise<{ bootFiles: PlannedFile[]; inputs: Pick<RootfsInputs, 'layered' | 'layerFiles'> }> {
  const boot = await planBootFiles(index, context.prepared.loaded.cluster);
  const layered = await withClusterLayer(index, [{ path: K3S_PATH, content: k3sPath, mode: 0o755 }], sourceDateEpoch);
  // Every node's overlay must fit the base (no write through a base symlink, no file over a directory)
  // before anything is written.
  for (const { files, removes } of plan.nodes) mergeOverlay(layered, files, { mtime: sourceDateEpoch, removes });
  const layerFiles = context.formats.includes('tree') ? [clusterFile(K3S_PATH, await readFile(k3sPath), 0o755, 'k3s binary')] : [];
  return { bootFiles: boot, inputs: { layered, layerFiles } };
}

/** The k3s binary given as a file (`--k3s-binary`, relative to where the command runs, or the profile's k3s.binary, to the profile), absolute. */
export function k3sBinaryGiven(options: { k3sBinary?: string; cwd?: string }, loaded: LoadedProfile): { k3sBinary?: string } {
  if (options.k3sBinary) return { k3sBinary: path.resolve(options.cwd ?? process.cwd(), options.k3sBinary) };
  const binary = loaded.profile.k3s.binary;
  return binary ? { k3sBinary: path.resolve(path.dirname(loaded.file), binary) } : {};
}

/** The programs a build with these options will run (src/preflight.ts); none without a base. */
export async function programsForBuild(options: BuildOptions, loaded: LoadedProfile, privileged = isRoot()): Promise<ProgramNeed[]> {
  const spec = options.base ?? loaded.profile.base;
  if (!spec) return [];
  const source = classifyBase(spec, options.base ? (options.cwd ?? process.cwd()) : path.dirname(loaded.file));
  const cacheDir = options.cacheDir ?? defaultCacheDir(options.env ?? process.env);
  const debootstrapCached =
    source.kind === 'debootstrap' &&
    existsSync(
      debootstrapCachePath(cacheDir, parseDebootstrapSpec(debootstrapWithPackages(source.spec, allRequiredPackages(loaded.cluster)))),
    );
  return buildPrograms({
    source,
    formats: options.formats ?? ['tar'],
    ...(options.compress ? { compress: options.compress } : {}),
    privileged,
    debootstrapCached,
    extracted: await extractedInCache(source, cacheDir),
  });
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  const cwd = options.cwd ?? process.cwd();
  const reporter = options.reporter ?? defaultReporter();
  const prepared = options.prepared ?? (await prepare(options));
  const { loaded, secrets, secretsFile } = prepared;
  const outDir = path.resolve(cwd, options.out ?? 'out');
  const clusterDir = path.join(outDir, loaded.cluster.name);
  // Checks of the output come before reading a base: a bad --out fails in a second, not after minutes.
  await checkWritableDir(outDir, `--out ${options.out ?? 'out'}`);
  const previous = await readOutputRecord(clusterDir, displayPath(clusterDir, cwd));
  const nodeNames = loaded.cluster.nodes.map((n) => n.name);
  if (previous?.kind === 'netroot-output' && !options.rotateSecrets)
    refuseChangedSecrets(previous.secrets, secrets, () => `the previous build in ${displayPath(clusterDir, cwd)}`);
  // --base is relative to where the command runs; the profile's base: to the profile.
  const spec = options.base ?? loaded.profile.base;
  if (!spec && options.formats?.length) {
    throw new UsageError(`--format ${options.formats.join(',')} needs a base root filesystem: give --base or base: in the profile`);
  }
  // Whether the build runs as root decides owners, devices and reuse: asked once, here.
  const privileged = isRoot();
  // Every program the build will run, checked before any work: one error names all that are missing.
  requirePrograms(await programsForBuild(options, loaded, privileged));
  const rootfs = spec
    ? await prepareRootfs(
        rootfsContext(options, prepared, spec, options.base ? cwd : path.dirname(loaded.file), outDir, reporter, privileged),
      )
    : undefined;
  const plan = rootfs?.plan ?? prepared.plan;
  // What this build is made from, recorded so that a deploy knows whether it is still the profile's build.
  const inputs = await readBuildInputs(loaded, prepared.overlays.dir, {
    ...(spec
      ? {
          base: {
            spec,
            relativeTo: options.base ? cwd : path.dirname(loaded.file),
            ...(rootfs?.quickIdentity ? { identity: rootfs.quickIdentity } : {}),
          },
        }
      : {}),
    ...(spec ? k3sBinaryGiven(options, loaded) : {}),
    cacheDir: options.cacheDir ?? defaultCacheDir(options.env ?? process.env),
    generator: GENERATOR,
  });
  // Secrets are saved only once the profile, every template and the base proved good.
  const saved = await secrets.save();
  const secretsCreated = saved && secrets.generated.length ? saved : undefined;
  const emitted = await emitCluster(plan, outDir, GENERATOR, {
    privileged,
    reporter,
    // The previous record's salt: the same secrets give the same record (and scrypt runs once for both checks).
    secrets: fingerprint(
      secrets.secrets,
      secrets.identities,
      nodeNames,
      previous?.kind === 'netroot-output' && previous.secrets && !options.rotateSecrets ? previous.secrets.salt : undefined,
    ),
    inputs,
    formats: rootfs?.inputs.formats ?? [],
    ...(rootfs ? { rootfs: rootfs.inputs, bootFiles: rootfs.bootFiles } : {}),
    ...(rootfs?.reuseBootFiles ? { reuseBootFiles: rootfs.reuseBootFiles } : {}),
    ...(rootfs?.facts.entries !== undefined ? { baseEntries: rootfs.facts.entries } : {}),
  });
  const artifacts = emitted.rootfs?.artifacts;
  return {
    cluster: loaded.cluster.name,
    dir: displayPath(emitted.dir, cwd),
    nodes: plan.nodes.map(({ node, files }) => ({ name: node.name, roles: node.roles, files: files.length })),
    files: emitted.files,
    ...(secretsCreated ? { secretsCreated: displayPath(secretsCreated, cwd) } : {}),
    ...(saved && secrets.migratedFrom
      ? { secretsMigrated: { from: displayPath(secrets.migratedFrom, cwd), to: displayPath(saved, cwd) } }
      : {}),
    secretsFile: displayPath(secretsFile, cwd),
    formats: rootfs?.inputs.formats ?? [],
    warnings: [...prepared.warnings, ...(rootfs ?? { notes: baseNotes(undefined) }).notes.warnings],
    notes: (rootfs ?? { notes: baseNotes(undefined) }).notes.notes,
    ...(rootfs ? { base: rootfs.facts, k3s: rootfs.k3s } : {}),
    // The prefix records are the next build's business, not the caller's.
    ...(artifacts ? { artifacts: artifacts.map(({ name, sha256, bytes }) => ({ name, sha256, bytes })) } : {}),
    ...(emitted.rootfs ? { reused: emitted.rootfs.reused, rebuilt: emitted.rootfs.rebuilt } : {}),
  };
}

/** One rendered file of one node, for review (`build-images render`). */
export function findPlannedFile(
  plan: BuildPlan,
  nodeName: string,
  filePath?: string,
): { node: string; files: PlannedFile[]; bootServer: { name: string; file: PlannedFile }[] } {
  const nodePlan = plan.nodes.find((n) => n.node.name === nodeName);
  if (!nodePlan) throw new UsageError(`no node named ${nodeName}; the nodes are ${plan.nodes.map((n) => n.node.name).join(', ')}`);
  // The boot server's files by their short names: this node's pxelinux file, the cluster's dnsmasq, exports(5) and Ganesha files.
  const written = bootServerOutputs(plan.cluster.name);
  const shortNames: Record<string, (path: string) => boolean> = {
    'pxelinux.cfg': (p) => p.startsWith(`${TFTP_OUTPUT}/pxelinux.cfg/`) && p.endsWith(nodePlan.node.mac.replace(/:/g, '-')),
    dnsmasq: (p) => p === written.dnsmasq,
    exports: (p) => p === written.exports,
    ganesha: (p) => p === written.ganesha,
  };
  const bootServer = Object.entries(shortNames).flatMap(([name, matches]) =>
    plan.bootServer.filter((f) => matches(f.path)).map((file) => ({ name, file })),
  );
  if (filePath === undefined) return { node: nodeName, files: nodePlan.files, bootServer };
  const wanted = filePath.replace(/^\/+/, '');
  const node = nodePlan.files.filter((f) => f.path === wanted);
  const boot = plan.bootServer.filter((f) => f.path === wanted || shortNames[wanted]?.(f.path));
  const found = [...node, ...boot];
  if (found.length === 0)
    throw new UsageError(
      `${nodeName} has no file ${filePath}; run without a path to list its files, or name a boot server file: ${Object.keys(shortNames).join(', ')}`,
    );
  return { node: nodeName, files: found, bootServer };
}
