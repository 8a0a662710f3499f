/**
 * The netboot-arm64 scenario: every node boots as an emulated arm64 board
 * (board.ts) from the lab's boot server running the build's own dnsmasq,
 * TFTP tree and Ganesha exports, with the build's kernel and initrd, and
 * forms the cluster. Each board passes stage by stage, read from its serial
 * console: DHCP (U-Boot's lease), TFTP file (pxelinux file, kernel, initrd),
 * kernel (it runs), NFS mount (the initrd mounts SERVER:EXPORT/NODE as /),
 * systemd (multi-user.target, no unit failed on the way), unit (its hostname, no
 * failed unit, its own units active, local storage mounted from its loop
 * image); then the cluster: Galera across the servers, one VIP holder, the
 * k3s database through the VIP. A second boot of one server must find what
 * its first boot wrote. A failure names its stage and shows the console's
 * last lines.
 */
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import type { Cluster } from '../../profile/resolve.js';
import type { ConsoleMatch, EmulatedBoard } from '../board.js';
import type { Cleanup } from '../cleanup.js';
import type { ScenarioResult } from '../context.js';
import { sqlAt, sqlThroughVip, type Datastore } from '../probes.js';
import { tryInNet, waitFor } from '../run-command.js';
import type { LabTopology } from '../topology.js';

export const STAGES = ['DHCP', 'TFTP file', 'kernel', 'NFS mount', 'systemd', 'unit', 'Galera'] as const;
export type Stage = (typeof STAGES)[number];

/** Bounds of each stage on an emulated CPU (TCG), generous for four boards sharing two cores. */
export interface BoardBounds {
  firmwareSeconds: number;
  dhcpSeconds: number;
  tftpSeconds: number;
  kernelSeconds: number;
  /** From the kernel's start to the initrd's network up (the NIC's driver loaded, DHCP answered). */
  networkSeconds: number;
  nfsSeconds: number;
  multiUserSeconds: number;
  unitsSeconds: number;
  clusterSeconds: number;
}

export const BOARD_BOUNDS: BoardBounds = {
  firmwareSeconds: 120,
  dhcpSeconds: 60,
  tftpSeconds: 180,
  kernelSeconds: 120,
  networkSeconds: 120,
  nfsSeconds: 420,
  // multi-user.target waits for MariaDB (Galera formed, state transferred) and k3s: the cluster's time.
  multiUserSeconds: 1500,
  unitsSeconds: 600,
  clusterSeconds: 900,
};

export interface BoardBoot {
  node: string;
  boot: number;
  pass: boolean;
  /** The stage that failed. */
  failedStage?: Stage;
  detail: string;
  /** Seconds: power-on to U-Boot's "Starting kernel", kernel to the NFS root mounted (systemd's banner), root to multi-user.target. */
  stages: {
    ubootToKernel?: number;
    kernelToNfsRoot?: number;
    nfsRootToMultiUser?: number;
    powerOnToMultiUser?: number;
    kernelToMultiUser?: number;
  };
  console: string;
}

export interface BoardReport {
  boots: BoardBoot[];
  /** From powering every board on to a formed cluster (Galera, one VIP holder, the datastore through it). */
  clusterSeconds?: number;
}

/** What the k3s stand-in reports of its node (GET /netroot/node). */
export interface NodeFacts {
  hostname: string;
  bootId: string;
  addresses: string[];
  system: string;
  failed: string[];
  root: { target?: string; source?: string; fstype?: string };
  rancher: { target?: string; source?: string; fstype?: string; label?: string; uuid?: string };
  units: Record<string, string>;
  /** Seconds from the kernel's start to multi-user.target, by the node's own clock (null while not reached). */
  multiUserSeconds?: number | null;
}

export interface NetbootArm64Context {
  cluster: Cluster;
  topology: LabTopology;
  boards: EmulatedBoard[];
  datastore: Datastore & { optionsFile: string };
  cleanup: Cleanup;
  log: (line: string) => void;
  bounds?: Partial<BoardBounds>;
}

const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/** MAC as pxelinux names its file: 01-aa-bb-cc-dd-ee-ff. */
export const pxelinuxName = (mac: string): string => `01-${mac.toLowerCase().replace(/:/g, '-')}`;

/** A console line that a stage waited for, and where it is in the console's lines. */
type Seen = Extract<ConsoleMatch, { ok: true }> & { index: number };
/** The stage that failed, and why. */
interface StageFailure {
  stage: Stage;
  detail: string;
}
const failed = (step: Seen | StageFailure): step is StageFailure => 'stage' in step;

/** Why a wait on the console ended without its line: its bound passed, the board stopped, or a failure line came. */
const why = (m: { ok: false; reason: string; line?: { text: string } }, what: string, bound: number): string =>
  m.reason === 'timeout'
    ? `waited ${bound} s for ${what} in vain`
    : m.reason === 'powered off'
      ? `the board stopped before ${what}`
      : `"${m.line?.text.trim()}" before ${what}`;

/** U-Boot: stop its autoboot (which tries disks, then a boot script) and ask for a PXE boot, as a board's bootcmd would. */
async function ubootPxe(board: EmulatedBoard, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const prompt = await board.waitFor(/Hit any key to stop autoboot/, { timeoutMs: bounds.firmwareSeconds * 1000, partial: true });
  if (!prompt.ok) return { stage: 'DHCP', detail: why(prompt, "U-Boot's autoboot prompt", bounds.firmwareSeconds) };
  board.send('\r');
  const ready = await board.waitFor(/^=> ?$/, { from: prompt.index, timeoutMs: 20_000, partial: true });
  if (!ready.ok) return { stage: 'DHCP', detail: why(ready, "U-Boot's command prompt", 20) };
  board.send('setenv autoload no; dhcp && pxe get && pxe boot\r');
  return ready;
}

/** U-Boot's DHCP lease, for the node's own address. */
async function dhcpLease(board: EmulatedBoard, from: number, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const lease = await board.waitFor(/DHCP client bound to address ([0-9.]+)/, {
    from,
    timeoutMs: bounds.dhcpSeconds * 1000,
    failures: [/Retry (count|time) exceeded|No ethernet found|TIMEOUT/],
  });
  if (!lease.ok) return { stage: 'DHCP', detail: why(lease, 'a DHCP lease', bounds.dhcpSeconds) };
  if (lease.match[1] !== board.node.ip)
    return { stage: 'DHCP', detail: `U-Boot was given ${lease.match[1]}, not the node's address ${board.node.ip}` };
  return lease;
}

/** The node's pxelinux file, then its kernel and initrd, over TFTP, until U-Boot starts the kernel. */
async function tftpFiles(board: EmulatedBoard, from: number, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const file = `pxelinux.cfg/${pxelinuxName(board.node.mac)}`;
  const tftpFailures = [
    /Config file not found|Error reading config file|Couldn't retrieve|Skipping \S+ for failure|Wrong Image|Bad Linux ARM64 Image|[Nn]o label/,
  ];
  const config = await board.waitFor(new RegExp(`Retrieving file: ${file.replace(/\./g, '\\.')}`), {
    from,
    timeoutMs: bounds.tftpSeconds * 1000,
    failures: tftpFailures,
  });
  if (!config.ok) return { stage: 'TFTP file', detail: why(config, `a fetch of ${file}`, bounds.tftpSeconds) };
  const kernelStart = await board.waitFor(/Starting kernel \.\.\./, {
    from: config.index,
    timeoutMs: bounds.tftpSeconds * 1000,
    failures: [...tftpFailures, /TFTP error/],
  });
  if (!kernelStart.ok) return { stage: 'TFTP file', detail: why(kernelStart, 'the kernel and initrd from TFTP', bounds.tftpSeconds) };
  return kernelStart;
}

/** The kernel's first words. */
async function kernelRuns(board: EmulatedBoard, from: number, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const kernel = await board.waitFor(/Booting Linux on physical CPU/, {
    from,
    timeoutMs: bounds.kernelSeconds * 1000,
    failures: [/Kernel panic/],
  });
  if (!kernel.ok) return { stage: 'kernel', detail: why(kernel, "the kernel's first words", bounds.kernelSeconds) };
  return kernel;
}

/** The initrd brings the network up and mounts the node's export as / (systemd's banner says it did). */
async function nfsRootMounted(board: EmulatedBoard, cluster: Cluster, kernel: Seen, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const root = `${cluster.profile.network.nfsServer}:${cluster.profile.exports.root}/${board.node.name}`;
  // The initrd first brings the NIC up (klibc's ipconfig, "IP-Config: eth0 complete"). Without the
  // NIC's driver it would wait 180 s for any network device: a network that is not up while the
  // initrd waits for one is the missing driver, said without waiting that out.
  const network = await board.waitFor(/IP-Config: \S+ complete/, {
    from: kernel.index,
    timeoutMs: bounds.networkSeconds * 1000,
    failures: [/Kernel panic/, /Network device did not appear in time/, /\(initramfs\)/],
  });
  if (!network.ok) {
    // "Begin: Waiting up to 180 secs for any network device to become available ... " ends in "done." once one appears.
    const said = [...board.lines.slice(kernel.index).map((l) => l.text), board.partial];
    const waiting = said.some(
      (t) =>
        (/Waiting up to \d+ secs for .*network device/.test(t) && !/done\./.test(t)) || /Network device did not appear in time/.test(t),
    );
    return {
      stage: 'NFS mount',
      detail: waiting
        ? `the initrd found no network device: the NIC's driver is not in it (board.modules)`
        : why(network, "the initrd's network (IP-Config: … complete)", bounds.networkSeconds),
    };
  }
  const mounted = await board.waitFor(/Welcome to .*Debian/, {
    from: network.index,
    timeoutMs: bounds.nfsSeconds * 1000,
    failures: [
      /Kernel panic/,
      /Retrying nfs mount/,
      /Network device did not appear in time/,
      /\(initramfs\)/,
      /ALERT!/,
      /Gave up waiting for root/,
    ],
  });
  if (!mounted.ok) {
    const lines = board.lines.slice(kernel.index).map((l) => l.text);
    const hint = lines.some((l) => /Network device did not appear in time/.test(l))
      ? `the initrd found no network device: the NIC's driver is not in it (board.modules)`
      : lines.some((l) => /Retrying nfs mount/.test(l))
        ? nfsProblem(lines, root)
        : why(mounted, `the root ${root} mounted`, bounds.nfsSeconds);
    return { stage: 'NFS mount', detail: hint };
  }
  return mounted;
}

/**
 * systemd shows its progress on the console until the serial getty takes it over: whichever
 * comes first, multi-user.target or the getty's greeting, ends this stage on the console. The
 * node's own systemd says when it reached multi-user.target (NodeFacts.multiUserSeconds).
 */
async function multiUserOnConsole(board: EmulatedBoard, mounted: Seen, bounds: BoardBounds): Promise<Seen | StageFailure> {
  const multiUser = await board.waitFor(/Reached target .*(multi-user\.target|Multi-User System)|(?:^|\s)\S+ login:/, {
    from: mounted.index,
    timeoutMs: bounds.multiUserSeconds * 1000,
    failures: [/Kernel panic/, /emergency mode/i],
    partial: true,
  });
  if (!multiUser.ok) return { stage: 'systemd', detail: why(multiUser, 'multi-user.target', bounds.multiUserSeconds) };
  return multiUser;
}

/** A board's boot as the report holds it, once its stages are known. */
function boardBoot(board: EmulatedBoard, boot: number, stages: BoardBoot['stages']) {
  return (failedStage: Stage | undefined, detail: string): BoardBoot => ({
    node: board.node.name,
    boot,
    pass: failedStage === undefined,
    ...(failedStage ? { failedStage } : {}),
    detail: failedStage ? `${failedStage}: ${detail}\n--- last console lines (${board.consoleLog}):\n${board.tail()}` : detail,
    stages,
    console: board.consoleLog,
  });
}

/**
 * One boot of one board, from power-on to its login prompt, stage by stage.
 * Fails at the first stage that does not complete within its bound.
 */
export async function bootBoard(
  board: EmulatedBoard,
  ctx: { cluster: Cluster; cleanup: Cleanup; bounds: BoardBounds },
  boot: number,
): Promise<BoardBoot> {
  const { cluster, bounds } = ctx;
  const stages: BoardBoot['stages'] = {};
  const result = boardBoot(board, boot, stages);

  await board.powerOn(ctx.cleanup);
  const ready = await ubootPxe(board, bounds);
  if (failed(ready)) return result(ready.stage, ready.detail);
  const lease = await dhcpLease(board, ready.index, bounds);
  if (failed(lease)) return result(lease.stage, lease.detail);
  const kernelStart = await tftpFiles(board, lease.index, bounds);
  if (failed(kernelStart)) return result(kernelStart.stage, kernelStart.detail);
  stages.ubootToKernel = seconds(kernelStart.line.at);
  const kernel = await kernelRuns(board, kernelStart.index, bounds);
  if (failed(kernel)) return result(kernel.stage, kernel.detail);
  const mounted = await nfsRootMounted(board, cluster, kernel, bounds);
  if (failed(mounted)) return result(mounted.stage, mounted.detail);
  stages.kernelToNfsRoot = seconds(mounted.line.at - kernelStart.line.at);
  const multiUser = await multiUserOnConsole(board, mounted, bounds);
  if (failed(multiUser)) return result(multiUser.stage, multiUser.detail);
  if (/Reached target/.test(multiUser.line.text)) {
    stages.nfsRootToMultiUser = seconds(multiUser.line.at - mounted.line.at);
    stages.powerOnToMultiUser = seconds(multiUser.line.at);
  }
  const failedUnits = board.lines
    .slice(mounted.index, multiUser.index)
    .filter((l) => /\[FAILED\]/.test(l.text))
    .map((l) => stripVTControlCharacters(l.text).trim());
  if (failedUnits.length) return result('unit', `failed while booting: ${failedUnits.join('; ')}`);
  // Its hostname, systemd's final state and its units are read from the node itself once the
  // cluster runs (unitProblems): the serial getty's greeting is no witness on an emulated CPU,
  // where udev may announce /dev/ttyAMA0 after systemd gave up waiting for it.
  return result(
    undefined,
    `U-Boot to kernel ${stages.ubootToKernel} s, kernel to NFS root ${stages.kernelToNfsRoot} s, on the console ${/Reached target/.test(multiUser.line.text) ? `multi-user.target ${stages.nfsRootToMultiUser} s later` : `the login prompt ${seconds(multiUser.line.at - mounted.line.at)} s later`}`,
  );
}

/** Why the initrd's NFS mount failed: what it tried (the kernel command line's nfsroot=) and what it was told. */
function nfsProblem(lines: string[], root: string): string {
  const tried = lines.map((l) => /Kernel command line:.*\bnfsroot=([^\s,]+)/.exec(l)?.[1]).find(Boolean) ?? root;
  const said = lines
    .filter((l) => /nfsmount|mount:|Permission denied|No such file|denied|refused/i.test(l) && !/Retrying/.test(l))
    .slice(-2)
    .map((l) => l.trim())
    .join(' / ');
  const wrongPath = tried !== root ? ` (nfsroot= on the kernel command line names ${tried}; the node's export is ${root})` : '';
  return `the initrd could not mount ${tried} as /${wrongPath}: ${said || 'see the console'}`;
}

/** GET /netroot/node from the node's stand-in (servers on 6443, agents on 10250), from the bridge namespace. */
export async function nodeFacts(topology: LabTopology, node: { ip: string; isServer: boolean }): Promise<NodeFacts | undefined> {
  const url = `http://${node.ip}:${node.isServer ? 6443 : 10250}/netroot/node`;
  // The stand-in asks systemd, findmnt and ip: seconds each on an emulated CPU.
  const got = await tryInNet(topology.bridgeNs, 'curl', ['-sf', '--max-time', '120', url], { timeoutMs: 130_000 });
  if (!got.ok) return undefined;
  try {
    return JSON.parse(got.stdout) as NodeFacts;
  } catch {
    return undefined;
  }
}

/** wsrep status of one server, over the network with the k3s user (status needs no privilege). */
async function galeraOf(
  topology: LabTopology,
  datastore: Datastore & { optionsFile: string },
  ip: string,
): Promise<{ size: number; status: string } | undefined> {
  const got = await sqlAt(
    topology,
    datastore,
    ip,
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_cluster_status')",
    { database: false },
  );
  if (!got.ok) return undefined;
  const values = Object.fromEntries(got.stdout.split('\n').map((l) => l.split('\t') as [string, string]));
  return { size: Number(values.wsrep_cluster_size ?? 0), status: values.wsrep_cluster_status ?? '?' };
}

/** The checks a node passes once it runs: its state as it reports it. */
export function unitProblems(facts: NodeFacts, node: { name: string; isServer: boolean }, cluster: Cluster): string[] {
  const problems: string[] = [];
  const { profile } = cluster;
  if (facts.hostname !== node.name) problems.push(`hostname ${facts.hostname}, not ${node.name}`);
  if (facts.system !== 'running')
    problems.push(`systemd says ${facts.system}${facts.failed.length ? `; failed: ${facts.failed.join(', ')}` : ''}`);
  const root = `${profile.network.nfsServer}:${profile.exports.root}/${node.name}`;
  if (facts.root.source !== root || !/^nfs/.test(facts.root.fstype ?? ''))
    problems.push(`/ is ${facts.root.source ?? '?'} (${facts.root.fstype ?? '?'}), not ${root} over NFS`);
  if (profile.storage.enabled) {
    const r = facts.rancher;
    if (r.fstype !== 'ext4' || !/^\/dev\/loop/.test(r.source ?? '') || r.label !== profile.storage.label) {
      problems.push(
        `/var/lib/rancher is ${r.source ?? '?'} (${r.fstype ?? '?'}, label ${r.label ?? 'none'}), not the ext4 loop image labelled ${profile.storage.label}`,
      );
    }
  }
  const wanted = [
    ...(node.isServer ? ['keepalived.service', 'mariadb.service', 'k3s.service'] : ['k3s-agent.service']),
    ...(profile.storage.enabled ? ['netroot-local-storage.service'] : []),
    ...(profile.longhorn.enabled ? ['iscsid.service'] : []),
  ];
  const inactive = wanted.filter((u) => facts.units[u] !== 'active');
  if (inactive.length) problems.push(`not active: ${inactive.map((u) => `${u} (${facts.units[u] ?? '?'})`).join(', ')}`);
  return problems;
}

type Outcome = { result: ScenarioResult; report: BoardReport };

/** The scenario's outcome: its result, timed from `started`, with the boards' report so far. */
const outcome = (started: number, report: BoardReport, pass: boolean, detail: string): Outcome => ({
  result: { name: 'netboot-arm64', pass, seconds: seconds(Date.now() - started), detail },
  report,
});

/** Every board powered on at once and booted stage by stage; each one's first boot, logged. */
async function bootEveryBoard(ctx: NetbootArm64Context, bounds: BoardBounds): Promise<BoardBoot[]> {
  const { cluster, boards, log } = ctx;
  log(
    `netboot-arm64: powering on ${boards.length} emulated arm64 board${boards.length === 1 ? '' : 's'}; each console goes to console-1.log in ${boards.map((b) => path.dirname(b.consoleLog)).join(', ')}`,
  );
  const boots = await Promise.all(boards.map((board) => bootBoard(board, { cluster, cleanup: ctx.cleanup, bounds }, 1)));
  for (const b of boots) log(`netboot-arm64: ${b.node}: ${b.pass ? 'booted' : 'FAILED'}: ${b.detail.split('\n')[0]}`);
  return boots;
}

type BootedNode = EmulatedBoard['node'];

/** The cluster: every server in one primary component, one VIP holder, the k3s database through the VIP; its last state either way. */
async function clusterFormed(
  ctx: NetbootArm64Context,
  booted: BootedNode[],
  servers: BootedNode[],
  bounds: BoardBounds,
): Promise<{ formed: { holders: string[]; facts: NodeFacts[] } | undefined; lastState: string }> {
  const { topology, datastore } = ctx;
  let lastState = '';
  const formed = await waitFor(
    async () => {
      const galera = await Promise.all(servers.map((n) => galeraOf(topology, datastore, n.ip)));
      const facts = await Promise.all(booted.map((n) => nodeFacts(topology, n)));
      const holders = booted.filter((n, i) => facts[i]?.addresses.includes(topology.vip)).map((n) => n.name);
      const through = await sqlThroughVip(topology, datastore, 'SELECT 1', 10_000);
      lastState = `Galera ${servers.map((n, i) => `${n.name}: ${galera[i] ? `size ${galera[i]!.size}, ${galera[i]!.status}` : 'not answering'}`).join('; ')}; VIP on ${holders.join(', ') || 'nobody'}; stand-ins answering on ${booted.filter((_, i) => facts[i]).length} of ${booted.length}; datastore through the VIP: ${through.ok ? 'answers' : 'no answer'}`;
      const ok =
        galera.every((g) => g && g.size === servers.length && g.status === 'Primary') &&
        holders.length === 1 &&
        through.ok &&
        facts.every(Boolean);
      return ok ? { holders, facts: facts as NodeFacts[] } : undefined;
    },
    bounds.clusterSeconds * 1000,
    5_000,
  );
  return { formed, lastState };
}

/** Each node as it reports itself, once systemd has finished starting (bounded); the first node's problems, if any. */
async function unitsSettled(
  ctx: NetbootArm64Context,
  booted: BootedNode[],
  boots: BoardBoot[],
  bounds: BoardBounds,
): Promise<string | undefined> {
  for (const node of booted) {
    let problems: string[] = ['no answer from its stand-in'];
    const settled = await waitFor(
      async () => {
        const facts = await nodeFacts(ctx.topology, node);
        if (!facts) return undefined;
        problems = unitProblems(facts, node, ctx.cluster);
        return facts.system === 'starting' ? undefined : facts;
      },
      bounds.unitsSeconds * 1000,
      5_000,
    );
    if (!settled || problems.length) return `${node.name}: ${problems.join('; ')}`;
    const boot = boots.find((b) => b.node === node.name);
    if (boot && typeof settled.multiUserSeconds === 'number') boot.stages.kernelToMultiUser = settled.multiUserSeconds;
  }
  return undefined;
}

/** Before the power cut: the node's facts, and a row written through the VIP that its second boot must still hold. */
async function markBeforePowerCut(ctx: NetbootArm64Context, again: EmulatedBoard): Promise<{ before: NodeFacts; marker: string } | string> {
  const before = await nodeFacts(ctx.topology, again.node);
  const marker = `boot-${Date.now()}`;
  const wrote = await sqlThroughVip(
    ctx.topology,
    ctx.datastore,
    `CREATE TABLE IF NOT EXISTS netroot_lab_netboot (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64)); INSERT INTO netroot_lab_netboot (note) VALUES ('${marker}')`,
  );
  if (!before || !wrote.ok)
    return `before the second boot of ${again.node.name}: ${wrote.ok ? 'its stand-in did not answer' : wrote.stderr}`;
  return { before, marker };
}

/** After its second boot the node answers, rejoins Galera and holds the row written before; its facts, or its state. */
async function backAfterPowerCut(
  ctx: NetbootArm64Context,
  again: EmulatedBoard,
  marker: string,
  servers: BootedNode[],
  bounds: BoardBounds,
): Promise<NodeFacts | string> {
  const { topology, datastore } = ctx;
  let secondState = '';
  const back = await waitFor(
    async () => {
      const facts = await nodeFacts(topology, again.node);
      const galera = await galeraOf(topology, datastore, again.node.ip);
      const row = await sqlAt(topology, datastore, again.node.ip, `SELECT COUNT(*) FROM netroot_lab_netboot WHERE note = '${marker}'`);
      secondState = `stand-in ${facts ? 'answers' : 'silent'}; Galera ${galera ? `size ${galera.size}, ${galera.status}` : 'not answering'}; row written before the power cut ${row.ok ? (row.stdout.trim() === '1' ? 'there' : 'missing') : 'not readable'}`;
      return facts && galera?.size === servers.length && row.ok && row.stdout.trim() === '1' ? facts : undefined;
    },
    bounds.clusterSeconds * 1000,
    5_000,
  );
  return back ?? `${again.node.name} after its second boot: ${secondState}`;
}

/** What the second boot kept of the first (it did boot again: a new boot id), or the stage that lost it. */
function keptAcrossPowerCut(cluster: Cluster, again: EmulatedBoard, before: NodeFacts, back: NodeFacts): string[] | StageFailure {
  const kept: string[] = [];
  if (back.bootId === before.bootId)
    return { stage: 'systemd', detail: `${again.node.name} reports the same boot id after a power cut: it did not boot again` };
  if (cluster.profile.storage.enabled) {
    if (back.rancher.uuid !== before.rancher.uuid)
      return {
        stage: 'unit',
        detail: `${again.node.name}'s local storage is a new filesystem (${back.rancher.uuid ?? '?'}, was ${before.rancher.uuid ?? '?'}): its loop image was not kept`,
      };
    kept.push(`its local storage (ext4 ${before.rancher.uuid})`);
  }
  kept.push('its Galera data (the row written before the power cut, read from it directly)');
  return kept;
}

export async function netbootArm64(ctx: NetbootArm64Context): Promise<Outcome> {
  const bounds: BoardBounds = { ...BOARD_BOUNDS, ...ctx.bounds };
  const { cluster, topology, boards, log } = ctx;
  const started = Date.now();
  const report: BoardReport = { boots: [] };
  const fail = (stage: Stage, detail: string): Outcome => outcome(started, report, false, `${stage}: ${detail}`);

  const boots = await bootEveryBoard(ctx, bounds);
  report.boots.push(...boots);
  const broken = boots.filter((b) => !b.pass);
  if (broken.length) return outcome(started, report, false, broken.map((b) => `${b.node}: ${b.detail}`).join('\n'));

  const booted = boards.map((b) => b.node);
  const servers = booted.filter((n) => n.isServer);
  const whole = servers.length === topology.nodes.filter((n) => n.isServer).length && booted.length === topology.nodes.length;
  // One board alone (--node): it boots, but a cluster of one server does not form (it waits for the others, by design).
  if (!whole)
    return outcome(
      started,
      report,
      true,
      `${booted.map((n) => n.name).join(', ')} booted to multi-user.target; the cluster is checked only when every node boots`,
    );

  const { formed, lastState } = await clusterFormed(ctx, booted, servers, bounds);
  if (!formed) return fail('Galera', `no formed cluster within ${bounds.clusterSeconds} s: ${lastState}`);
  report.clusterSeconds = seconds(Date.now() - started);
  log(`netboot-arm64: cluster formed ${report.clusterSeconds} s after power-on: ${lastState}`);
  const units = await unitsSettled(ctx, booted, boots, bounds);
  if (units) return fail('unit', units);

  // A second boot of one server (not the bootstrap node): what the first boot wrote is still there.
  const again = boards.filter((b) => b.node.isServer && b.node.name !== cluster.bootstrapNode).at(-1) ?? boards[0]!;
  const marked = await markBeforePowerCut(ctx, again);
  if (typeof marked === 'string') return fail('Galera', marked);
  log(`netboot-arm64: pulling the power of ${again.node.name}, then booting it again`);
  await again.powerOff();
  const second = await bootBoard(again, { cluster, cleanup: ctx.cleanup, bounds }, 2);
  report.boots.push(second);
  if (!second.pass) return outcome(started, report, false, `${again.node.name}, second boot: ${second.detail}`);
  const back = await backAfterPowerCut(ctx, again, marked.marker, servers, bounds);
  if (typeof back === 'string') return fail('Galera', back);
  if (typeof back.multiUserSeconds === 'number') second.stages.kernelToMultiUser = back.multiUserSeconds;
  const kept = keptAcrossPowerCut(cluster, again, marked.before, back);
  if (!Array.isArray(kept)) return fail(kept.stage, kept.detail);

  const stageLine = boots
    .map((b) => `${b.node} ${b.stages.ubootToKernel} + ${b.stages.kernelToNfsRoot} + ${b.stages.kernelToMultiUser ?? '?'} s`)
    .join(', ');
  return outcome(
    started,
    report,
    true,
    `${boots.length} emulated arm64 boards booted over PXE and NFS (power-on to U-Boot's "Starting kernel" + kernel to NFS root + kernel to multi-user.target by the node's clock: ${stageLine}); ` +
      `Galera size ${servers.length}, VIP on ${formed.holders[0]}, the k3s database through it ${report.clusterSeconds} s after power-on; every node running with no failed unit; ` +
      `${again.node.name} booted again (multi-user.target ${second.stages.kernelToMultiUser ?? '?'} s after its kernel started) and kept ${kept.join(' and ')}`,
  );
}
