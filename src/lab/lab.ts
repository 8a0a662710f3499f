/**
 * The convergence lab: build a profile's export trees, netboot-check every
 * node against the real boot server, boot the trees with their own systemd,
 * and run the scenarios. Everything it starts is undone on success, failure
 * and Ctrl-C; the report goes to <out>/report.json.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from '../build.js';
import { loadProfile } from '../profile/load.js';
import { UsageError } from '../errors.js';
import { isRoot } from '../privileges.js';
import { startBootServer } from './boot-server.js';
import { labHierarchies, NodeCgroup, removeStaleCgroups } from './cgroups.js';
import { readHostWorkarounds } from './host-workarounds.js';
import { Cleanup } from './cleanup.js';
import { startLabDns } from './dns.js';
import { LabError } from './errors.js';
import { EmulatedBoard } from './board.js';
import { ExportRoot } from './exports.js';
import { Machine } from './machine.js';
import { netbootArm64, type BoardBounds, type BoardReport } from './netboot-arm64.js';
import { createLabNetwork, deleteNamespace, plugIn, staleNamespaces } from './network.js';
import { netbootNode, type NetbootResult } from './netboot.js';
import { readDatastore } from './probes.js';
import { run, tryRun, waitFor } from './run-command.js';
import { kineSequence } from './kine.js';
import {
  bootstrapDatadirLost,
  mariadbRestartBootstrap,
  powerCut,
  powerLastLeaverMissing,
  powerOneSurvivor,
  powerOrderly,
  powerStaleFlag,
  powerStaleNode,
} from './recovery.js';
import { rogueGaleraNode } from './rogue-galera.js';
import { impostorK3sServer } from './scenarios/impostor-k3s-server.js';
import { rollingRedeploy } from './rolling-redeploy.js';
import {
  boundsFor,
  coldStart,
  galeraNodeLoss,
  mariadbDown,
  SCENARIOS,
  vipFailover,
  type LabBounds,
  type LabContext,
  type LabScenario,
  type ScenarioName,
  type ScenarioResult,
} from './scenarios.js';
import { labTopology } from './topology.js';

export const LAB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const K3S_STANDIN = path.join(LAB_DIR, 'scripts/lab/k3s-standin');

/** What a container cannot do, switched off by the lab profile (never by patching the trees); what this host lacks is added (host-workarounds.ts). */
export const SWITCHED_OFF_EMULATED = [
  'k3s itself: a stand-in (scripts/lab/k3s-standin) at /usr/local/bin/k3s checks its config, token and datastore instead',
];
export const SWITCHED_OFF = [
  'local storage for /var/lib/rancher (storage.enabled: false): a container cannot loop-mount the ext4 image',
  'Longhorn and iscsid (longhorn.enabled: false): they need kernel modules a container cannot load',
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

const elapsed = (start: number): number => Math.round((Date.now() - start) / 100) / 10;

async function checkHost(emulated: boolean): Promise<void> {
  if (!isRoot())
    throw new UsageError(
      'the lab needs root: it creates network namespaces, mounts and containers. Run it as root (sudo npm run lab -- …)',
    );
  const missing: string[] = [];
  for (const program of [...PROGRAMS, ...(emulated ? ['qemu-system-aarch64'] : [])])
    if (!(await tryRun('sh', ['-c', `command -v ${program}`])).ok) missing.push(program);
  if (missing.length) throw new UsageError(`the lab needs ${missing.join(', ')}: install its packages with scripts/install-lab-deps.sh`);
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

const SCENARIO_RUNS: Record<Exclude<ScenarioName, 'cold-start'>, (ctx: LabContext) => Promise<ScenarioResult>> = {
  'vip-failover': vipFailover,
  'galera-node-loss': galeraNodeLoss,
  'mariadb-down': mariadbDown,
  'mariadb-restart-bootstrap': mariadbRestartBootstrap,
  'kine-sequence': kineSequence,
  'power-orderly': powerOrderly,
  'power-cut': powerCut,
  'power-stale-node': powerStaleNode,
  'power-one-survivor': powerOneSurvivor,
  'power-last-leaver-missing': powerLastLeaverMissing,
  'power-stale-flag': powerStaleFlag,
  'rolling-redeploy': rollingRedeploy,
  'bootstrap-datadir-lost': bootstrapDatadirLost,
  'rogue-galera-node': rogueGaleraNode,
  'impostor-k3s-server': impostorK3sServer,
};

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

export async function runLab(options: LabOptions): Promise<LabReport> {
  const started = Date.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`lab: ${line}\n`));
  const cwd = options.cwd ?? process.cwd();
  const labDir = path.resolve(cwd, options.out ?? 'out/lab');
  const buildOut = path.join(labDir, 'build');
  const runDir = path.join(labDir, 'run');
  const emulated = options.scenarios?.includes('netboot-arm64') ?? false;
  if (emulated && options.scenarios!.length > 1) {
    throw new UsageError(
      'netboot-arm64 runs on its own: it boots emulated boards, the other scenarios containers (run them in another lab run)',
    );
  }
  if (options.nodes && !emulated) throw new UsageError('--node is for --scenario netboot-arm64');
  await checkHost(emulated);

  // The lab needs only the cluster; the build validates the rest (secrets, templates) itself.
  const { cluster, profile } = await loadProfile(options.profile, { cwd });
  if (!options.skipBuild) {
    const base = options.arch ? baseForArch(profile.base, options.arch) : undefined;
    log(`building ${cluster.name} with the k3s stand-in into ${path.relative(cwd, buildOut) || '.'}`);
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
  const buildDir = path.join(buildOut, cluster.name);
  if (!existsSync(path.join(buildDir, 'rootfs')))
    throw new UsageError(`${buildDir}/rootfs does not exist: run the lab without --skip-build first`);

  await mkdir(runDir, { recursive: true });
  await clearLeftovers(runDir, log);
  // Containers share the host's kernel: what it lacks is switched off on every node, whatever the profile says.
  const workarounds = emulated ? [] : await readHostWorkarounds();
  for (const w of workarounds) log(`this host: ${w.switchedOff}`);
  const topology = labTopology(cluster, process.pid);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const bounds: LabBounds = { ...boundsFor(profile, cluster.servers.length), ...options.bounds };
  log(
    `seed ${seed} (--seed ${seed} repeats this order); bounds from the profile: cold start ${bounds.coldStartSeconds} s, systemd running ${bounds.systemRunningSeconds} s, VIP failover ${bounds.failoverSeconds} s, rejoin ${bounds.rejoinSeconds} s, recovery ${bounds.recoverySeconds} s`,
  );
  const cleanup = new Cleanup();
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

  const scenarios: ScenarioResult[] = [];
  let netboot: NetbootResult[] = [];
  let boards: BoardReport | undefined;
  try {
    log(
      `network: bridge, boot server at ${topology.boot.addresses.join(', ')}, ${topology.nodes.length} nodes (namespaces ${topology.prefix}-*)`,
    );
    await createLabNetwork(topology, cleanup);
    const dns = await startLabDns(topology, runDir, cleanup);
    log(`DNS: ${dns.record.name} served on ${dns.address} (the nodes' network.dns)`);
    // Containers run from the lab's export root, which the boot server serves too; emulated boards write the build's trees over NFS.
    const exportRoot = emulated ? undefined : new ExportRoot(path.join(buildDir, 'rootfs'), path.join(runDir, 'exports'));
    await exportRoot?.mount(cleanup);
    await startBootServer(
      cluster,
      topology,
      { buildDir, workDir: runDir, ...(exportRoot ? { exportRoot: exportRoot.root } : {}) },
      cleanup,
    );

    if (emulated) {
      const unknown = (options.nodes ?? []).filter((name) => !topology.nodes.some((n) => n.name === name));
      if (unknown.length)
        throw new UsageError(`--node ${unknown.join(', ')}: ${cluster.name} has the nodes ${topology.nodes.map((n) => n.name).join(', ')}`);
      const picked = options.nodes ? topology.nodes.filter((n) => options.nodes!.includes(n.name)) : topology.nodes;
      const firstServer = cluster.servers[0];
      if (!firstServer) throw new LabError(`${cluster.name} has no server to test`);
      const run = await netbootArm64({
        cluster,
        topology,
        boards: picked.map((node) => new EmulatedBoard(node, { workDir: path.join(runDir, 'nodes', node.name) })),
        datastore: await readDatastore(path.join(buildDir, 'rootfs', firstServer.name), runDir),
        cleanup,
        log,
        ...(options.boardBounds ? { bounds: options.boardBounds } : {}),
      });
      boards = run.report;
      scenarios.push(await logged(run.result));
      return await finish();
    }

    const netbootStart = Date.now();
    netboot = [];
    for (const node of topology.nodes) netboot.push(await netbootNode(cluster, topology, node, buildDir, runDir));
    const bad = netboot.filter((r) => !r.pass);
    scenarios.push({
      name: 'netboot',
      pass: bad.length === 0,
      seconds: elapsed(netbootStart),
      detail: bad.length
        ? bad.map((r) => `${r.node}: ${r.problems.join('; ')}`).join('\n')
        : `${netboot.length} nodes: DHCP lease, pxelinux file, kernel and initrd over TFTP, own NFS root served and another node's refused`,
    });
    if (bad.length) return await finish();

    const hierarchies = await labHierarchies();
    const machines = topology.nodes.map(
      (node) =>
        new Machine(node, {
          tree: path.join(buildDir, 'rootfs', node.name),
          root: exportRoot!.node(node.name),
          workDir: path.join(runDir, 'nodes', node.name),
          cgroup: new NodeCgroup(hierarchies, node.ns),
          hostArguments: workarounds.flatMap((w) => w.systemdArguments),
        }),
    );
    cleanup.add('nodes', async () => {
      for (const machine of machines) await machine.powerOff();
    });
    for (const machine of machines) {
      await machine.reset();
      machine.kernelArgs = netboot.find((r) => r.node === machine.node.name)?.kernelArgs ?? [];
    }
    const firstServer = machines.find((m) => m.node.isServer);
    if (!firstServer) throw new LabError(`${cluster.name} has no server to test`);
    const ctx: LabContext = {
      topology,
      machines,
      datastore: await readDatastore(path.join(buildDir, 'rootfs', firstServer.node.name), runDir),
      log,
      bounds,
      dns,
      runDir,
      cleanup,
      deployment: {
        profile: options.profile,
        cwd,
        buildOut,
        exportRoot: exportRoot!.root,
        k3sBinary: K3S_STANDIN,
        ...(options.secrets ? { secrets: options.secrets } : {}),
        ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
      },
      recoveryPolicy: profile.galera.recovery.policy,
      bootstrapNode: cluster.bootstrapNode!,
      shuffle: (items) => shuffled(items, random),
      async powerOn(machine) {
        await plugIn(machine.node);
        const again = await netbootNode(cluster, topology, machine.node, buildDir, runDir);
        if (!again.pass) throw new LabError(`${machine.node.name} could not netboot again: ${again.problems.join('; ')}`);
        machine.kernelArgs = again.kernelArgs ?? [];
        await machine.boot();
      },
    };

    log(`cold start: booting ${machines.length} nodes at once`);
    const coldStarted = Date.now();
    for (const machine of machines) await machine.boot();
    const cold = await coldStart(ctx, coldStarted);
    scenarios.push(cold);
    log(`cold-start: ${cold.pass ? 'pass' : 'FAIL'} (${cold.seconds} s) ${cold.detail}`);
    const wanted = (options.scenarios ?? [...SCENARIOS]).filter(
      (name): name is Exclude<ScenarioName, 'cold-start'> => name !== 'cold-start' && name !== 'netboot-arm64',
    );
    if (!cold.pass || wanted.length === 0) return await finish();

    // Each scenario starts from a whole cluster, so any order must pass: a shuffled one proves it.
    const order = shuffled(wanted, random);
    log(`scenarios in the order ${order.join(', ')}`);
    for (const name of order) {
      if (stopping) break;
      scenarios.push(await logged(await SCENARIO_RUNS[name](ctx)));
    }
    return await finish();
  } catch (error) {
    scenarios.push({ name: 'lab', pass: false, seconds: elapsed(started), detail: (error as Error).message });
    return await finish();
  } finally {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    await cleanup.run(log);
  }

  async function logged(result: ScenarioResult): Promise<ScenarioResult> {
    log(`${result.name}: ${result.pass ? 'pass' : 'FAIL'} (${result.seconds} s) ${result.detail}`);
    return result;
  }

  async function finish(): Promise<LabReport> {
    if (stopping)
      scenarios.push({
        name: 'interrupted',
        pass: false,
        seconds: elapsed(started),
        detail: `${stopping} arrived: the lab was stopped, and results after it are not meaningful`,
      });
    const report: LabReport = {
      profile: options.profile,
      cluster: cluster.name,
      seconds: elapsed(started),
      pass: scenarios.length > 0 && scenarios.every((s) => s.pass),
      seed,
      ...(bounds ? { bounds } : {}),
      scenarios,
      netboot,
      ...(boards ? { boards } : {}),
      switchedOff: emulated ? SWITCHED_OFF_EMULATED : [...SWITCHED_OFF, ...workarounds.map((w) => w.switchedOff)],
    };
    const file = path.join(labDir, 'report.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
    return report;
  }
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
