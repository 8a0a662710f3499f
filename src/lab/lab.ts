/**
 * The convergence lab: build a profile's export trees, netboot-check every
 * node against the real boot server, boot the trees with their own systemd,
 * and run the scenarios. Everything it starts is undone on success, failure
 * and Ctrl-C; the report goes to <out>/report.json. `runLab` is the list of
 * its steps: prepare, clear the host, start the services, then the emulated
 * boards or the containers with their scenarios, and the report.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from '../build.js';
import { loadProfile, type LoadedProfile } from '../profile/load.js';
import { UsageError } from '../errors.js';
import { isRoot } from '../privileges.js';
import { requirePrograms } from '../tools.js';
import { startBootServer } from './boot-server.js';
import { labHierarchies, NodeCgroup, removeStaleCgroups } from './cgroups.js';
import { readHostWorkarounds, type HostWorkaround } from './host-workarounds.js';
import { Cleanup } from './cleanup.js';
import { elapsed, boundsFor, scenario, type LabBounds, type LabContext, type ScenarioResult } from './context.js';
import { startLabDns, type LabDns } from './dns.js';
import { LabError } from './errors.js';
import { EmulatedBoard } from './board.js';
import { ExportRoot } from './exports.js';
import { Machine } from './machine.js';
import { createLabNetwork, deleteNamespace, plugIn, staleNamespaces } from './network.js';
import { netbootNode, type NetbootResult } from './netboot.js';
import { readDatastore } from './probes.js';
import { run, waitFor } from './run-command.js';
import { coldStart } from './scenarios/cold-start.js';
import { SCENARIO_RUNS, SCENARIOS, type LabScenario } from './scenarios/index.js';
import { netbootArm64, type BoardBounds, type BoardReport } from './scenarios/netboot-arm64.js';
import { labTopology, type LabTopology } from './topology.js';

export const LAB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const K3S_STANDIN = path.join(LAB_DIR, 'scripts/lab/k3s-standin');

/** What a container never does, whatever the profile; what it cannot do of what the profile turns on, and what this host lacks, are added (host-workarounds.ts). */
export const SWITCHED_OFF_EMULATED = [
  'k3s itself: a stand-in (scripts/lab/k3s-standin) at /usr/local/bin/k3s checks its config, token and datastore instead',
];
export const SWITCHED_OFF = [
  "k3s's modprobe of br_netfilter and overlay fails in a container; the unit ignores it ('-' prefix)",
  'k3s itself: a stand-in (scripts/lab/k3s-standin) at /usr/local/bin/k3s checks its config, token and datastore instead',
];

const PROGRAMS = [
  'ip',
  'nsenter',
  'unshare',
  'systemd-nspawn',
  'dnsmasq',
  'ganesha.nfsd',
  'rpcbind',
  'rpcinfo',
  'nfs-ls',
  'busybox',
  'mariadb',
  'mariadbd',
  'mariadb-install-db',
  'openssl',
  'python3',
  'curl',
  'ss',
  'mount',
];

export interface LabOptions {
  profile: string;
  /** Lab directory (default out/lab): build/, run/ and report.json. */
  out?: string;
  /** Only these scenarios (after the cold start they need); default: all, in an order shuffled with `seed`. */
  scenarios?: LabScenario[];
  /** Seed of the scenarios' order and of power-on orders (default: random, printed and reported). */
  seed?: number;
  /** Architecture of the nodes; a foreign one runs under qemu-user (binfmt). Default: the profile's base. */
  arch?: string;
  /** netboot-arm64: boot only these nodes (default: all). */
  nodes?: string[];
  /** Use the trees already in <out>/build instead of building. */
  skipBuild?: boolean;
  cacheDir?: string;
  /** Secrets file (default: the cluster's own, see docs/secrets.md). */
  secrets?: string;
  /** Time bounds of the checks (defaults: boundsFor the profile). */
  bounds?: Partial<LabBounds>;
  /** netboot-arm64: time bounds of the boot stages (default BOARD_BOUNDS). */
  boardBounds?: Partial<BoardBounds>;
  cwd?: string;
  log?: (line: string) => void;
}

export interface LabReport {
  profile: string;
  cluster: string;
  seconds: number;
  pass: boolean;
  /** `--seed N` repeats this run's order of scenarios and power-ons. */
  seed: number;
  /** The time bounds the checks used, derived from the profile. */
  bounds?: LabBounds;
  scenarios: ScenarioResult[];
  netboot: NetbootResult[];
  /** netboot-arm64: every board's boots, stage by stage, and the time to a formed cluster. */
  boards?: BoardReport;
  switchedOff: string[];
}

/** What the lab runs on the host, checked before anything starts (the emulated boards need qemu too). */
export function labPrograms(emulated: boolean): string[] {
  return [...PROGRAMS, ...(emulated ? ['qemu-system-aarch64'] : [])];
}

function checkHost(emulated: boolean): void {
  if (!isRoot())
    throw new UsageError(
      'the lab needs root: it creates network namespaces, mounts and containers. Run it as root (sudo npm run lab -- …)',
    );
  requirePrograms(
    labPrograms(emulated).map((program) => ({ program, why: 'the lab (scripts/install-lab-deps.sh installs what it needs)' })),
  );
}

/** The base for another architecture: the profile's debootstrap spec with the arch swapped, its kernel package too. */
export function baseForArch(spec: string | undefined, arch: string): string {
  const parts = spec?.split(':') ?? [];
  if (parts[0] !== 'debootstrap' || parts.length < 3)
    throw new UsageError(`--arch needs a profile whose base is debootstrap:SUITE:ARCH[:pkgs], not ${spec ?? 'none'}`);
  const from = parts[2];
  parts[2] = arch;
  if (parts[3])
    parts[3] = parts[3]
      .split(',')
      .map((p) => (p === `linux-image-${from}` ? `linux-image-${arch}` : p))
      .join(',');
  return parts.join(':');
}

/** A small seeded generator (mulberry32): the same seed gives the same orders. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffled<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Processes whose root filesystem is a node's overlay in the lab's run
 * directory: the nodes' systemd and everything under it, which outlive a lab
 * (and its systemd-nspawn) killed with SIGKILL, re-parented to PID 1. Their
 * root is seen as "/" from outside, so it is found by its mount: an overlay
 * mounted on / whose upper layer is in the run directory.
 */
export async function containerProcesses(runDir: string): Promise<number[]> {
  const pids: number[] = [];
  const upper = `upperdir=${runDir}/`;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const mounts = await readFile(`/proc/${entry}/mountinfo`, 'utf8').catch(() => '');
    // mountinfo: id parent dev root mountpoint options … - fstype source superoptions
    if (mounts.split('\n').some((line) => line.split(' ')[4] === '/' && line.includes(' - overlay ') && line.includes(upper)))
      pids.push(Number(entry));
  }
  return pids;
}

/** Containers, overlay mounts and namespaces left by a lab that was killed before it could clean up. */
async function clearLeftovers(runDir: string, log: (line: string) => void): Promise<void> {
  const stray = await containerProcesses(runDir);
  if (stray.length) {
    log(`stopping ${stray.length} processes of nodes left running by an earlier lab run`);
    for (const pid of stray) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    const gone = await waitFor(async () => ((await containerProcesses(runDir)).length === 0 ? true : undefined), 20_000, 250);
    if (!gone) throw new LabError(`processes of an earlier lab run's nodes do not die: ${(await containerProcesses(runDir)).join(', ')}`);
  }
  for (const held of await removeStaleCgroups(await labHierarchies()))
    log(`the cgroup ${held}, left by an earlier lab run, still holds processes`);
  for (const ns of await staleNamespaces()) {
    log(`removing network namespace ${ns} left by an earlier lab run`);
    await deleteNamespace(ns);
  }
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
  for (const mountPoint of mounts.filter((m) => m.startsWith(`${runDir}/`)).reverse()) {
    log(`unmounting ${mountPoint} left by an earlier lab run`);
    await run('umount', ['-l', mountPoint]);
  }
}

/** A lab run as asked for and prepared, fixed before anything starts: its directories, profile, host and seeded order. */
interface Lab {
  options: LabOptions;
  started: number;
  log: (line: string) => void;
  cwd: string;
  labDir: string;
  buildOut: string;
  runDir: string;
  /** OUT/CLUSTER of the build the nodes boot from. */
  buildDir: string;
  /** Emulated boards (netboot-arm64) instead of containers. */
  emulated: boolean;
  loaded: LoadedProfile;
  /** What this host's kernel lacks, switched off on every node (none for emulated boards). */
  workarounds: HostWorkaround[];
  topology: LabTopology;
  seed: number;
  random: () => number;
  bounds: LabBounds;
}

/** What the report will say, added to as each step ends. */
interface Findings {
  scenarios: ScenarioResult[];
  netboot: NetbootResult[];
  boards?: BoardReport;
}

/** What runs beside the nodes for the whole run: the lab's DNS server and, for containers, the export root they run from. */
interface LabServices {
  dns: LabDns;
  exportRoot: ExportRoot | undefined;
}

export async function runLab(options: LabOptions): Promise<LabReport> {
  const lab = await clearHost(await prepare(options));
  const cleanup = new Cleanup();
  const signals = watchSignals(cleanup, lab.log);
  const found: Findings = { scenarios: [], netboot: [] };
  try {
    try {
      const services = await startServices(lab, cleanup);
      if (lab.emulated) await bootBoards(lab, cleanup, found);
      else await runContainers(lab, services, cleanup, found, signals.stopping);
    } catch (error) {
      found.scenarios.push(scenario('lab', lab.started).result(false, (error as Error).message));
    }
    return await writeReport(lab, found, signals.stopping());
  } finally {
    signals.release();
    await cleanup.run(lab.log);
  }
}

/** Checks the request and the host, loads the profile and builds its trees (unless --skip-build). */
async function prepare(options: LabOptions): Promise<Omit<Lab, 'workarounds' | 'topology' | 'seed' | 'random' | 'bounds'>> {
  const started = Date.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`lab: ${line}\n`));
  const cwd = options.cwd ?? process.cwd();
  const labDir = path.resolve(cwd, options.out ?? 'out/lab');
  const buildOut = path.join(labDir, 'build');
  const emulated = options.scenarios?.includes('netboot-arm64') ?? false;
  if (emulated && options.scenarios!.length > 1) {
    throw new UsageError(
      'netboot-arm64 runs on its own: it boots emulated boards, the other scenarios containers (run them in another lab run)',
    );
  }
  if (options.nodes && !emulated) throw new UsageError('--node is for --scenario netboot-arm64');
  checkHost(emulated);

  // The lab needs only the cluster; the build validates the rest (secrets, templates) itself.
  const loaded = await loadProfile(options.profile, { cwd });
  if (!options.skipBuild) {
    const base = options.arch ? baseForArch(loaded.profile.base, options.arch) : undefined;
    log(`building ${loaded.cluster.name} with the k3s stand-in into ${path.relative(cwd, buildOut) || '.'}`);
    await build({
      profile: options.profile,
      cwd,
      out: buildOut,
      formats: ['tree'],
      k3sBinary: K3S_STANDIN,
      ...(options.secrets ? { secrets: options.secrets } : {}),
      ...(base ? { base } : {}),
      ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
    });
  }
  const buildDir = path.join(buildOut, loaded.cluster.name);
  if (!existsSync(path.join(buildDir, 'rootfs')))
    throw new UsageError(`${buildDir}/rootfs does not exist: run the lab without --skip-build first`);
  return { options, started, log, cwd, labDir, buildOut, runDir: path.join(labDir, 'run'), buildDir, emulated, loaded };
}

/** Clears what an earlier run left, reads what this host lacks, and fixes the lab's addresses, seed and bounds. */
async function clearHost(prepared: Awaited<ReturnType<typeof prepare>>): Promise<Lab> {
  const { options, log, runDir, emulated } = prepared;
  const { cluster, profile } = prepared.loaded;
  await mkdir(runDir, { recursive: true });
  await clearLeftovers(runDir, log);
  // Containers share the host's kernel: what it lacks, and what a container cannot do, is switched off
  // or stood in for on every node, whatever the profile says.
  const workarounds = emulated
    ? []
    : await readHostWorkarounds({
        localStorage: cluster.nodes.some((n) => n.storage.enabled),
        longhorn: profile.longhorn.enabled,
      });
  for (const w of workarounds) log(`this host: ${w.switchedOff}`);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const bounds: LabBounds = { ...boundsFor(profile, cluster.servers.length), ...options.bounds };
  log(
    `seed ${seed} (--seed ${seed} repeats this order); bounds from the profile: cold start ${bounds.coldStartSeconds} s, systemd running ${bounds.systemRunningSeconds} s, VIP failover ${bounds.failoverSeconds} s, rejoin ${bounds.rejoinSeconds} s, recovery ${bounds.recoverySeconds} s`,
  );
  return { ...prepared, workarounds, topology: labTopology(cluster, process.pid), seed, random: seededRandom(seed), bounds };
}

/** Ctrl-C or SIGTERM: the cleanup runs at once and the process ends (130); `stopping` says which signal came. */
function watchSignals(cleanup: Cleanup, log: (line: string) => void): { stopping: () => NodeJS.Signals | undefined; release(): void } {
  let stopping: NodeJS.Signals | undefined;
  const interrupted = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = signal;
    log(`${signal}: stopping the lab and cleaning up`);
    void cleanup.run(log).finally(() => process.exit(130));
  };
  // `on`, not `once`: execa's exit hook re-raises a signal that no other listener
  // handles any more, which would end the process before the cleanup is done.
  process.on('SIGINT', interrupted);
  process.on('SIGTERM', interrupted);
  return {
    stopping: () => stopping,
    release() {
      process.removeListener('SIGINT', interrupted);
      process.removeListener('SIGTERM', interrupted);
    },
  };
}

/** The lab's network, DNS server, export root (containers only) and boot server. */
async function startServices(lab: Lab, cleanup: Cleanup): Promise<LabServices> {
  const { topology, runDir, buildDir } = lab;
  lab.log(
    `network: bridge, boot server at ${topology.boot.addresses.join(', ')}, ${topology.nodes.length} nodes (namespaces ${topology.prefix}-*)`,
  );
  await createLabNetwork(topology, cleanup);
  const dns = await startLabDns(topology, runDir, cleanup);
  lab.log(`DNS: ${dns.record.name} served on ${dns.address} (the nodes' network.dns)`);
  // Containers run from the lab's export root, which the boot server serves too; emulated boards write the build's trees over NFS.
  const exportRoot = lab.emulated ? undefined : new ExportRoot(path.join(buildDir, 'rootfs'), path.join(runDir, 'exports'));
  await exportRoot?.mount(cleanup);
  await startBootServer(
    lab.loaded.cluster,
    topology,
    { buildDir, workDir: runDir, ...(exportRoot ? { exportRoot: exportRoot.root } : {}) },
    cleanup,
  );
  return { dns, exportRoot };
}

/** netboot-arm64: the chosen boards boot the build over the network, stage by stage. */
async function bootBoards(lab: Lab, cleanup: Cleanup, found: Findings): Promise<void> {
  const { options, topology, runDir, buildDir } = lab;
  const { cluster } = lab.loaded;
  const unknown = (options.nodes ?? []).filter((name) => !topology.nodes.some((n) => n.name === name));
  if (unknown.length)
    throw new UsageError(`--node ${unknown.join(', ')}: ${cluster.name} has the nodes ${topology.nodes.map((n) => n.name).join(', ')}`);
  const picked = options.nodes ? topology.nodes.filter((n) => options.nodes!.includes(n.name)) : topology.nodes;
  const firstServer = cluster.servers[0];
  if (!firstServer) throw new LabError(`${cluster.name} has no server to test`);
  const boot = await netbootArm64({
    cluster,
    topology,
    boards: picked.map((node) => new EmulatedBoard(node, { workDir: path.join(runDir, 'nodes', node.name) })),
    datastore: await readDatastore(path.join(buildDir, 'rootfs', firstServer.name), runDir),
    cleanup,
    log: lab.log,
    ...(options.boardBounds ? { bounds: options.boardBounds } : {}),
  });
  found.boards = boot.report;
  found.scenarios.push(logged(lab, boot.result));
}

/** The container lab: every node netbooted, booted at once (the cold start), then the scenarios from the cluster it formed. */
async function runContainers(
  lab: Lab,
  services: LabServices,
  cleanup: Cleanup,
  found: Findings,
  stopping: () => NodeJS.Signals | undefined,
): Promise<void> {
  if (!(await netbootAll(lab, found))) return;
  const machines = await machinesFor(lab, services.exportRoot!, found.netboot, cleanup);
  const ctx = await labContext(lab, services, machines, cleanup);

  lab.log(`cold start: booting ${machines.length} nodes at once`);
  const coldStarted = Date.now();
  for (const machine of machines) await machine.boot();
  const cold = logged(lab, await coldStart(ctx, coldStarted));
  found.scenarios.push(cold);
  const wanted = (lab.options.scenarios ?? [...SCENARIOS]).filter((name): name is keyof typeof SCENARIO_RUNS =>
    Object.hasOwn(SCENARIO_RUNS, name),
  );
  if (!cold.pass || wanted.length === 0) return;

  // Each scenario starts from a whole cluster, so any order must pass: a shuffled one proves it.
  const order = shuffled(wanted, lab.random);
  lab.log(`scenarios in the order ${order.join(', ')}`);
  for (const name of order) {
    if (stopping()) break;
    found.scenarios.push(logged(lab, await SCENARIO_RUNS[name](ctx)));
  }
}

/** Every node's DHCP lease, pxelinux file, kernel, initrd and NFS root, from the boot server; whether all passed. */
async function netbootAll(lab: Lab, found: Findings): Promise<boolean> {
  const s = scenario('netboot', Date.now());
  for (const node of lab.topology.nodes)
    found.netboot.push(await netbootNode(lab.loaded.cluster, lab.topology, node, lab.buildDir, lab.runDir));
  const bad = found.netboot.filter((r) => !r.pass);
  found.scenarios.push(
    s.result(
      bad.length === 0,
      bad.length
        ? bad.map((r) => `${r.node}: ${r.problems.join('; ')}`).join('\n')
        : `${found.netboot.length} nodes: DHCP lease, pxelinux file, kernel and initrd over TFTP, own NFS root served and another node's refused`,
    ),
  );
  return bad.length === 0;
}

/** A container for every node, in its own cgroup, with the kernel arguments it netbooted with; all powered off at the end. */
async function machinesFor(lab: Lab, exportRoot: ExportRoot, netboot: NetbootResult[], cleanup: Cleanup): Promise<Machine[]> {
  const hierarchies = await labHierarchies();
  const machines = lab.topology.nodes.map(
    (node) =>
      new Machine(node, {
        tree: path.join(lab.buildDir, 'rootfs', node.name),
        root: exportRoot.node(node.name),
        workDir: path.join(lab.runDir, 'nodes', node.name),
        cgroup: new NodeCgroup(hierarchies, node.ns),
        hostArguments: lab.workarounds.flatMap((w) => w.systemdArguments),
        localStorage:
          lab.workarounds.some((w) => w.localStorage) && lab.loaded.cluster.nodes.find((n) => n.name === node.name)!.storage.enabled,
      }),
  );
  cleanup.add('nodes', async () => {
    for (const machine of machines) await machine.powerOff();
  });
  for (const machine of machines) {
    await machine.reset();
    machine.kernelArgs = netboot.find((r) => r.node === machine.node.name)?.kernelArgs ?? [];
  }
  return machines;
}

/** What every scenario is given (context.ts). */
async function labContext(lab: Lab, services: LabServices, machines: Machine[], cleanup: Cleanup): Promise<LabContext> {
  const { options, topology, buildDir, runDir } = lab;
  const { cluster, profile } = lab.loaded;
  const firstServer = machines.find((m) => m.node.isServer);
  if (!firstServer) throw new LabError(`${cluster.name} has no server to test`);
  return {
    topology,
    machines,
    datastore: await readDatastore(path.join(buildDir, 'rootfs', firstServer.node.name), runDir),
    log: lab.log,
    bounds: lab.bounds,
    dns: services.dns,
    runDir,
    cleanup,
    deployment: {
      profile: options.profile,
      cwd: lab.cwd,
      buildOut: lab.buildOut,
      exportRoot: services.exportRoot!.root,
      k3sBinary: K3S_STANDIN,
      ...(options.secrets ? { secrets: options.secrets } : {}),
      ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
    },
    recoveryPolicy: profile.galera.recovery.policy,
    bootstrapNode: cluster.bootstrapNode!,
    shuffle: (items) => shuffled(items, lab.random),
    async powerOn(machine) {
      await plugIn(machine.node);
      const again = await netbootNode(cluster, topology, machine.node, buildDir, runDir);
      if (!again.pass) throw new LabError(`${machine.node.name} could not netboot again: ${again.problems.join('; ')}`);
      machine.kernelArgs = again.kernelArgs ?? [];
      await machine.boot();
    },
  };
}

function logged(lab: Lab, result: ScenarioResult): ScenarioResult {
  lab.log(`${result.name}: ${result.pass ? 'pass' : 'FAIL'} (${result.seconds} s) ${result.detail}`);
  return result;
}

/** The report, written atomically to <out>/report.json; a signal that stopped the run is one more failed result. */
async function writeReport(lab: Lab, found: Findings, stopped: NodeJS.Signals | undefined): Promise<LabReport> {
  if (stopped)
    found.scenarios.push(
      scenario('interrupted', lab.started).result(
        false,
        `${stopped} arrived: the lab was stopped, and results after it are not meaningful`,
      ),
    );
  const report: LabReport = {
    profile: lab.options.profile,
    cluster: lab.loaded.cluster.name,
    seconds: elapsed(lab.started),
    pass: found.scenarios.length > 0 && found.scenarios.every((s) => s.pass),
    seed: lab.seed,
    bounds: lab.bounds,
    scenarios: found.scenarios,
    netboot: found.netboot,
    ...(found.boards ? { boards: found.boards } : {}),
    switchedOff: lab.emulated ? SWITCHED_OFF_EMULATED : [...SWITCHED_OFF, ...lab.workarounds.map((w) => w.switchedOff)],
  };
  const file = path.join(lab.labDir, 'report.json');
  await writeFile(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
  return report;
}

export function summary(report: LabReport): string {
  const lines = [`lab ${report.cluster}: ${report.pass ? 'PASS' : 'FAIL'} in ${report.seconds} s (seed ${report.seed})`];
  for (const s of report.scenarios) {
    const primary = s.primarySeconds !== undefined ? `  [primary of all servers after ${s.primarySeconds} s]` : '';
    lines.push(
      `  ${s.pass ? 'pass' : 'FAIL'}  ${s.name.padEnd(25)} ${String(s.seconds).padStart(6)} s  ${s.detail.split('\n').join('\n' + ' '.repeat(43))}${primary}`,
    );
  }
  lines.push('  switched off in containers:', ...report.switchedOff.map((s) => `    - ${s}`));
  return lines.join('\n');
}
