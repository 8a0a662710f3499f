/**
 * The importable API: the pipeline as a flat list of named steps.
 * profile → secrets → overlays → plan → emit.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SecretsChangedError, UsageError } from './errors.js';
import { loadProfile, displayPath, type FindOptions, type LoadedProfile } from './profile/load.js';
import { loadSecrets, type LoadedSecrets } from './profile/secrets.js';
import { clusterSecretsFile, fingerprint, legacySecretsFiles, secretChanges } from './profile/store.js';
import { readOutputRecord } from './emit/owner.js';
import { checkWritableDir } from './paths.js';
import { BUNDLED_OVERLAYS_DIR, loadOverlays, type OverlaySet } from './overlays/load.js';
import { planCluster, type BuildPlan, type PlannedFile } from './plan/plan.js';
import { emitCluster } from './emit/cluster.js';
import { OUTPUT_FORMATS, type OutputFormat, type RootfsInputs } from './emit/rootfs.js';
import { defaultReporter, type Reporter } from './progress.js';
import { classifyBase, debootstrapWithPackages, extractedInCache, openBaseSource } from './base/source.js';
import { quickIdentity, readBuildInputs } from './build-inputs.js';
import { debootstrapCachePath, parseDebootstrapSpec } from './base/debootstrap.js';
import { boardModules, hasNetbootCopy, netbootBase, netbootIdentity } from './base/netboot.js';
import { nodeKey, prefixKey } from './emit/state.js';
import { PACKING } from './emit/packed.js';
import { decideRebuild, readPreviousOutput } from './emit/rebuild.js';
import { baseNotes, bootDir, bootFilePaths, isRaspberryPi, type BaseFacts } from './plan/context.js';
import { type BaseIndex } from './base/open.js';
import { isRoot } from './privileges.js';
import { existsSync } from 'node:fs';
import { allRequiredPackages, checkBase } from './base/check/requirements.js';
import { clusterWarnings } from './profile/rules.js';
import { clusterFile, K3S_PATH, planBootFiles } from './base/boot-files.js';
import { defaultCacheDir } from './base/open.js';
import { ARCHIVE_LAYOUT, compressors, epochFromEnv, newestMtime, resolveFormats } from './emit/artifact.js';
import { resolveK3sBinary } from './k3s/binary.js';
import { withClusterLayer } from './emit/layer.js';
import { mergeOverlay } from './emit/overlay.js';
import { readFile } from 'node:fs/promises';
import { buildPrograms } from './preflight.js';
import { requirePrograms, type ProgramNeed } from './tools.js';

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
}

/**
 * Read the base, check it, find k3s and the boot files: everything the root
 * filesystems need, before anything is written. When the previous build was
 * made from the same base and nothing a node depends on changed, the base is
 * not read at all.
 */
async function prepareRootfs(
  options: BuildOptions,
  prepared: Prepared,
  spec: string,
  relativeTo: string,
  outDir: string,
  reporter: Reporter,
): Promise<RootfsPrepared> {
  const { cluster, profile } = prepared.loaded;
  const env = options.env ?? process.env;
  const cacheDir = options.cacheDir ?? defaultCacheDir(env);
  const formats = options.formats ?? ['tar'];
  const explicitEpoch = epochFromEnv(env);
  const packages = allRequiredPackages(cluster);
  const source = classifyBase(spec, relativeTo);
  const clusterDir = path.join(outDir, cluster.name);
  const neededBoot = [...new Set(cluster.nodes.flatMap((n) => bootFilePaths(n).map((f) => `tftp/${f}`)))];
  const previous = await readPreviousOutput(
    clusterDir,
    cluster.nodes.map((n) => n.name),
    neededBoot,
  );
  const prevState = previous?.state;

  const quick = await quickIdentity(source, cacheDir, packages);
  // A base whose initrd an earlier build regenerated is known by its regenerated copy.
  const modules = boardModules(cluster);
  const knownId = quick && hasNetbootCopy(cacheDir, quick, modules) ? netbootIdentity(quick, modules) : quick;
  const sameBase = knownId !== undefined && prevState !== undefined && prevState.baseIdentity.startsWith(`${knownId}|`);
  // What rendered files depend on in the base; a state that lacks any of it means reading the base again.
  const recorded =
    sameBase &&
    prevState.mariadbVersion !== undefined &&
    prevState.systemdResolved !== undefined &&
    prevState.chrony !== undefined &&
    prevState.timesyncd !== undefined;
  const known = recorded
    ? {
        arch: prevState.arch,
        facts: {
          mariadbVersion: prevState.mariadbVersion!,
          systemdResolved: prevState.systemdResolved!,
          chrony: prevState.chrony!,
          timesyncd: prevState.timesyncd!,
        },
      }
    : undefined;
  const readBase = async (): Promise<ReadBase> => {
    const log = (line: string): void => reporter.info(line);
    const reading = reporter.step(`reading base ${spec}`);
    const identity = source.kind === 'directory' ? quick!.slice('directory:'.length) : undefined;
    const opened = await openBaseSource(source, { cacheDir, packages, log, ...(identity ? { identity } : {}) });
    reading.finish(`${opened.entries.length} entries`);
    const checked = await checkBase(opened, cluster);
    const facts = {
      mariadbVersion: checked.mariadbVersion,
      systemdResolved: checked.systemdResolved,
      chrony: checked.chrony,
      timesyncd: checked.timesyncd,
    };
    // A debootstrap base's identity is known once it is built.
    const plain = quick ?? (await quickIdentity(source, cacheDir, packages))!;
    const netboot = await netbootBase(opened, cluster, { cacheDir, identity: plain, arch: checked.arch, log });
    return {
      index: netboot.base,
      arch: checked.arch,
      facts,
      identity: netboot.identity,
      ...(netboot.regenerated ? { regenerated: netboot.regenerated } : {}),
    };
  };
  // Read now only when the previous build did not record what the plan needs of this base, or (without
  // SOURCE_DATE_EPOCH) the base's newest mtime, which dates what netroot writes.
  const epochKnown = explicitEpoch !== undefined || (sameBase && prevState.baseNewestMtime !== undefined);
  const early = known && epochKnown ? undefined : await readBase();
  const arch = known?.arch ?? early!.arch;
  const sourceId = early?.identity ?? knownId!;
  const baseFacts = known?.facts ?? early!.facts;
  const baseNewestMtime = early ? newestMtime(early.index) : prevState?.baseNewestMtime;
  const sourceDateEpoch = explicitEpoch ?? baseNewestMtime!;
  const plan = planCluster(cluster, prepared.secrets.secrets, prepared.overlays, prepared.secrets.identities, baseFacts);

  const given = k3sBinaryGiven(options, prepared.loaded).k3sBinary;
  const releaseUrl = options.k3sReleaseUrl ?? env.NETROOT_K3S_RELEASE_URL;
  const k3s = await resolveK3sBinary({
    version: profile.k3s.version,
    arch,
    cacheDir,
    ...(given ? { binary: given } : {}),
    ...(releaseUrl ? { releaseUrl } : {}),
  });

  const baseIdentity = `${sourceId}|k3s:${k3s.sha256}`;
  // What "gz, plus zst where installed" means on this machine today, and the compressors' versions: installing,
  // removing or upgrading zstd changes the artifacts.
  const compress = formats.includes('tar') ? await compressors(await resolveFormats(options.compress)) : '';
  const privileged = isRoot();
  const keyContext = {
    baseIdentity,
    // How chunks are packed is in the keys too: a kept prefix must be what a fresh build would pack.
    generator: `${GENERATOR} ${ARCHIVE_LAYOUT} ${PACKING}`,
    sourceDateEpoch,
    compress,
    // A tree made without root lacks owners, devices and capabilities: never reuse it for a root build.
    privileged,
  };
  const nodeKeys = new Map(plan.nodes.map((n) => [n.node.name, nodeKey(n, keyContext)]));
  const prefixKeys = new Map(plan.nodes.map((n) => [n.node.name, prefixKey(n, keyContext)]));
  // Which base files the boot files come from: another kernel path with the same name is another kernel.
  const bootSources = JSON.stringify(
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
  const { nodes: decisions, reuseEverything } = decideRebuild(previous, {
    formats,
    baseIdentity,
    bootSources,
    bootFiles: neededBoot,
    nodeKeys,
    prefixKeys,
    privileged,
  });

  const common = {
    bootSources,
    formats,
    ...(options.compress ? { compress: options.compress } : {}),
    sourceDateEpoch,
    baseNewestMtime,
    cacheDir,
    baseIdentity,
    arch,
    ...baseFacts,
    nodeKeys,
    prefixKeys,
    decisions,
    ...(prevState ? { previous: { dir: clusterDir, state: prevState } } : {}),
  };
  const k3sFacts = { path: displayPath(k3s.path, options.cwd ?? process.cwd()), sha256: k3s.sha256, source: k3s.source };
  if (reuseEverything) {
    return {
      plan,
      inputs: { ...common, layerFiles: [] },
      bootFiles: [],
      reuseBootFiles: { dir: clusterDir, paths: neededBoot },
      facts: {
        source: spec,
        kind: source.kind,
        arch,
        ...(prevState?.baseEntries !== undefined ? { entries: prevState.baseEntries } : {}),
        reused: true,
      },
      k3s: k3sFacts,
      notes: baseNotes(baseFacts),
    };
  }
  const read = early ?? (await readBase());
  const index = read.index;
  const boot = await planBootFiles(index, cluster);
  const layered = await withClusterLayer(index, [{ path: K3S_PATH, content: k3s.path, mode: 0o755 }], sourceDateEpoch);
  // Every node's overlay must fit the base (no write through a base symlink, no file over a directory)
  // before anything is written.
  for (const { files, removes } of plan.nodes) mergeOverlay(layered, files, { mtime: sourceDateEpoch, removes });
  const layerFiles = formats.includes('tree') ? [clusterFile(K3S_PATH, await readFile(k3s.path), 0o755, 'k3s binary')] : [];
  return {
    plan,
    inputs: { ...common, base: index, layered, layerFiles },
    bootFiles: boot,
    facts: {
      source: spec,
      kind: source.kind,
      arch,
      entries: index.entries.length,
      reused: false,
      ...(read.regenerated ? { initrdRegenerated: read.regenerated } : {}),
    },
    k3s: k3sFacts,
    notes: baseNotes(baseFacts),
  };
}

/** The k3s binary given as a file (`--k3s-binary`, relative to where the command runs, or the profile's k3s.binary, to the profile), absolute. */
export function k3sBinaryGiven(options: { k3sBinary?: string; cwd?: string }, loaded: LoadedProfile): { k3sBinary?: string } {
  if (options.k3sBinary) return { k3sBinary: path.resolve(options.cwd ?? process.cwd(), options.k3sBinary) };
  const binary = loaded.profile.k3s.binary;
  return binary ? { k3sBinary: path.resolve(path.dirname(loaded.file), binary) } : {};
}

/** The programs a build with these options will run (src/preflight.ts); none without a base. */
export async function programsForBuild(options: BuildOptions, loaded: LoadedProfile): Promise<ProgramNeed[]> {
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
    privileged: isRoot(),
    debootstrapCached,
    extracted: await extractedInCache(source, cacheDir),
  });
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  const cwd = options.cwd ?? process.cwd();
  const reporter = options.reporter ?? defaultReporter();
  const prepared = await prepare(options);
  const { loaded, secrets, secretsFile } = prepared;
  const outDir = path.resolve(cwd, options.out ?? 'out');
  const clusterDir = path.join(outDir, loaded.cluster.name);
  // Checks of the output come before reading a base: a bad --out fails in a second, not after minutes.
  await checkWritableDir(outDir, `--out ${options.out ?? 'out'}`);
  const previous = await readOutputRecord(clusterDir, displayPath(clusterDir, cwd));
  const nodeNames = loaded.cluster.nodes.map((n) => n.name);
  if (previous?.kind === 'netroot-output' && previous.secrets && !options.rotateSecrets) {
    const changes = secretChanges(previous.secrets, secrets.secrets, secrets.identities);
    if (changes.length) throw new SecretsChangedError(`the previous build in ${displayPath(clusterDir, cwd)}`, changes);
  }
  // --base is relative to where the command runs; the profile's base: to the profile.
  const spec = options.base ?? loaded.profile.base;
  if (!spec && options.formats?.length) {
    throw new UsageError(`--format ${options.formats.join(',')} needs a base root filesystem: give --base or base: in the profile`);
  }
  // Every program the build will run, checked before any work: one error names all that are missing.
  requirePrograms(await programsForBuild(options, loaded));
  const rootfs = spec
    ? await prepareRootfs(options, prepared, spec, options.base ? cwd : path.dirname(loaded.file), outDir, reporter)
    : undefined;
  const plan = rootfs?.plan ?? prepared.plan;
  // What this build is made from, recorded so that a deploy knows whether it is still the profile's build.
  const inputs = await readBuildInputs(loaded, prepared.overlays.dir, {
    ...(spec ? { base: { spec, relativeTo: options.base ? cwd : path.dirname(loaded.file) } } : {}),
    ...(spec ? k3sBinaryGiven(options, loaded) : {}),
    cacheDir: options.cacheDir ?? defaultCacheDir(options.env ?? process.env),
    generator: GENERATOR,
  });
  // Secrets are saved only once the profile, every template and the base proved good.
  const saved = await secrets.save();
  const secretsCreated = saved && secrets.generated.length ? saved : undefined;
  const emitted = await emitCluster(plan, outDir, GENERATOR, {
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
  const shortNames: Record<string, (path: string) => boolean> = {
    'pxelinux.cfg': (p) => p.startsWith('tftp/pxelinux.cfg/') && p.endsWith(nodePlan.node.mac.replace(/:/g, '-')),
    dnsmasq: (p) => p.startsWith('dnsmasq/'),
    exports: (p) => p.startsWith('exports/') && p.endsWith('.exports'),
    ganesha: (p) => p.startsWith('exports/') && p.endsWith('.ganesha.conf'),
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
