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
import type { EmulatedBoard } from '../board.js';
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

/**
 * One boot of one board, from power-on to its login prompt, stage by stage.
 * Fails at the first stage that does not complete within its bound.
 */
export async function bootBoard(
  board: EmulatedBoard,
  ctx: { cluster: Cluster; cleanup: Cleanup; bounds: BoardBounds },
  boot: number,
): Promise<BoardBoot> {
  const { node } = board;
  const { cluster, bounds } = ctx;
  const stages: BoardBoot['stages'] = {};
  const result = (failedStage: Stage | undefined, detail: string): BoardBoot => ({
    node: node.name,
    boot,
    pass: failedStage === undefined,
    ...(failedStage ? { failedStage } : {}),
    detail: failedStage ? `${failedStage}: ${detail}\n--- last console lines (${board.consoleLog}):\n${board.tail()}` : detail,
    stages,
    console: board.consoleLog,
  });
  const why = (m: { ok: false; reason: string; line?: { text: string } }, what: string, bound: number): string =>
    m.reason === 'timeout'
      ? `waited ${bound} s for ${what} in vain`
      : m.reason === 'powered off'
        ? `the board stopped before ${what}`
        : `"${m.line?.text.trim()}" before ${what}`;

  await board.powerOn(ctx.cleanup);
  // U-Boot: stop its autoboot (which tries disks, then a boot script) and ask for a PXE boot, as a board's bootcmd would.
  const prompt = await board.waitFor(/Hit any key to stop autoboot/, { timeoutMs: bounds.firmwareSeconds * 1000, partial: true });
  if (!prompt.ok) return result('DHCP', why(prompt, "U-Boot's autoboot prompt", bounds.firmwareSeconds));
  board.send('\r');
  const ready = await board.waitFor(/^=> ?$/, { from: prompt.index, timeoutMs: 20_000, partial: true });
  if (!ready.ok) return result('DHCP', why(ready, "U-Boot's command prompt", 20));
  board.send('setenv autoload no; dhcp && pxe get && pxe boot\r');

  const lease = await board.waitFor(/DHCP client bound to address ([0-9.]+)/, {
    from: ready.index,
    timeoutMs: bounds.dhcpSeconds * 1000,
    failures: [/Retry (count|time) exceeded|No ethernet found|TIMEOUT/],
  });
  if (!lease.ok) return result('DHCP', why(lease, 'a DHCP lease', bounds.dhcpSeconds));
  if (lease.match[1] !== node.ip) return result('DHCP', `U-Boot was given ${lease.match[1]}, not the node's address ${node.ip}`);

  const file = `pxelinux.cfg/${pxelinuxName(node.mac)}`;
  const tftpFailures = [
    /Config file not found|Error reading config file|Couldn't retrieve|Skipping \S+ for failure|Wrong Image|Bad Linux ARM64 Image|[Nn]o label/,
  ];
  const config = await board.waitFor(new RegExp(`Retrieving file: ${file.replace(/\./g, '\\.')}`), {
    from: lease.index,
    timeoutMs: bounds.tftpSeconds * 1000,
    failures: tftpFailures,
  });
  if (!config.ok) return result('TFTP file', why(config, `a fetch of ${file}`, bounds.tftpSeconds));
  const kernelStart = await board.waitFor(/Starting kernel \.\.\./, {
    from: config.index,
    timeoutMs: bounds.tftpSeconds * 1000,
    failures: [...tftpFailures, /TFTP error/],
  });
  if (!kernelStart.ok) return result('TFTP file', why(kernelStart, 'the kernel and initrd from TFTP', bounds.tftpSeconds));
  stages.ubootToKernel = seconds(kernelStart.line.at);

  const kernel = await board.waitFor(/Booting Linux on physical CPU/, {
    from: kernelStart.index,
    timeoutMs: bounds.kernelSeconds * 1000,
    failures: [/Kernel panic/],
  });
  if (!kernel.ok) return result('kernel', why(kernel, "the kernel's first words", bounds.kernelSeconds));

  const root = `${cluster.profile.network.nfsServer}:${cluster.profile.exports.root}/${node.name}`;
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
    return result(
      'NFS mount',
      waiting
        ? `the initrd found no network device: the NIC's driver is not in it (board.modules)`
        : why(network, "the initrd's network (IP-Config: … complete)", bounds.networkSeconds),
    );
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
    return result('NFS mount', hint);
  }
  stages.kernelToNfsRoot = seconds(mounted.line.at - kernelStart.line.at);

  // systemd shows its progress on the console until the serial getty takes it over: whichever
  // comes first, multi-user.target or the getty's greeting, ends this stage on the console. The
  // node's own systemd says when it reached multi-user.target (NodeFacts.multiUserSeconds).
  const multiUser = await board.waitFor(/Reached target .*(multi-user\.target|Multi-User System)|(?:^|\s)\S+ login:/, {
    from: mounted.index,
    timeoutMs: bounds.multiUserSeconds * 1000,
    failures: [/Kernel panic/, /emergency mode/i],
    partial: true,
  });
  if (!multiUser.ok) return result('systemd', why(multiUser, 'multi-user.target', bounds.multiUserSeconds));
  if (/Reached target/.test(multiUser.line.text)) {
    stages.nfsRootToMultiUser = seconds(multiUser.line.at - mounted.line.at);
    stages.powerOnToMultiUser = seconds(multiUser.line.at);
  }
  const failed = board.lines
    .slice(mounted.index, multiUser.index)
    .filter((l) => /\[FAILED\]/.test(l.text))
    .map((l) => stripVTControlCharacters(l.text).trim());
  if (failed.length) return result('unit', `failed while booting: ${failed.join('; ')}`);
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

export async function netbootArm64(ctx: NetbootArm64Context): Promise<{ result: ScenarioResult; report: BoardReport }> {
  const bounds: BoardBounds = { ...BOARD_BOUNDS, ...ctx.bounds };
  const { cluster, topology, boards, datastore, log } = ctx;
  const started = Date.now();
  const report: BoardReport = { boots: [] };
  const fail = (stage: Stage, detail: string): { result: ScenarioResult; report: BoardReport } => ({
    result: { name: 'netboot-arm64', pass: false, seconds: seconds(Date.now() - started), detail: `${stage}: ${detail}` },
    report,
  });

  log(
    `netboot-arm64: powering on ${boards.length} emulated arm64 board${boards.length === 1 ? '' : 's'}; each console goes to console-1.log in ${boards.map((b) => path.dirname(b.consoleLog)).join(', ')}`,
  );
  const boots = await Promise.all(boards.map((board) => bootBoard(board, { cluster, cleanup: ctx.cleanup, bounds }, 1)));
  report.boots.push(...boots);
  for (const b of boots) log(`netboot-arm64: ${b.node}: ${b.pass ? 'booted' : 'FAILED'}: ${b.detail.split('\n')[0]}`);
  const broken = boots.filter((b) => !b.pass);
  if (broken.length) {
    return {
      result: {
        name: 'netboot-arm64',
        pass: false,
        seconds: seconds(Date.now() - started),
        detail: broken.map((b) => `${b.node}: ${b.detail}`).join('\n'),
      },
      report,
    };
  }

  const booted = boards.map((b) => b.node);
  const servers = booted.filter((n) => n.isServer);
  const whole = servers.length === topology.nodes.filter((n) => n.isServer).length && booted.length === topology.nodes.length;
  if (!whole) {
    // One board alone (--node): it boots, but a cluster of one server does not form (it waits for the others, by design).
    return {
      result: {
        name: 'netboot-arm64',
        pass: true,
        seconds: seconds(Date.now() - started),
        detail: `${booted.map((n) => n.name).join(', ')} booted to multi-user.target; the cluster is checked only when every node boots`,
      },
      report,
    };
  }

  // The cluster: every server in one primary component, one VIP holder, the k3s database through the VIP.
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
  if (!formed) return fail('Galera', `no formed cluster within ${bounds.clusterSeconds} s: ${lastState}`);
  report.clusterSeconds = seconds(Date.now() - started);
  log(`netboot-arm64: cluster formed ${report.clusterSeconds} s after power-on: ${lastState}`);

  // Each node as it reports itself, once systemd has finished starting (bounded).
  for (const node of booted) {
    let problems: string[] = ['no answer from its stand-in'];
    const settled = await waitFor(
      async () => {
        const facts = await nodeFacts(topology, node);
        if (!facts) return undefined;
        problems = unitProblems(facts, node, cluster);
        return facts.system === 'starting' ? undefined : facts;
      },
      bounds.unitsSeconds * 1000,
      5_000,
    );
    if (!settled || problems.length) return fail('unit', `${node.name}: ${problems.join('; ')}`);
    const boot = boots.find((b) => b.node === node.name);
    if (boot && typeof settled.multiUserSeconds === 'number') boot.stages.kernelToMultiUser = settled.multiUserSeconds;
  }

  // A second boot of one server (not the bootstrap node): what the first boot wrote is still there.
  const again = boards.filter((b) => b.node.isServer && b.node.name !== cluster.bootstrapNode).at(-1) ?? boards[0]!;
  const before = await nodeFacts(topology, again.node);
  const marker = `boot-${Date.now()}`;
  const wrote = await sqlThroughVip(
    topology,
    datastore,
    `CREATE TABLE IF NOT EXISTS netroot_lab_netboot (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64)); INSERT INTO netroot_lab_netboot (note) VALUES ('${marker}')`,
  );
  if (!before || !wrote.ok)
    return fail('Galera', `before the second boot of ${again.node.name}: ${wrote.ok ? 'its stand-in did not answer' : wrote.stderr}`);
  log(`netboot-arm64: pulling the power of ${again.node.name}, then booting it again`);
  await again.powerOff();
  const second = await bootBoard(again, { cluster, cleanup: ctx.cleanup, bounds }, 2);
  report.boots.push(second);
  if (!second.pass)
    return {
      result: {
        name: 'netboot-arm64',
        pass: false,
        seconds: seconds(Date.now() - started),
        detail: `${again.node.name}, second boot: ${second.detail}`,
      },
      report,
    };
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
  if (!back) return fail('Galera', `${again.node.name} after its second boot: ${secondState}`);
  const kept: string[] = [];
  if (typeof back.multiUserSeconds === 'number') second.stages.kernelToMultiUser = back.multiUserSeconds;
  if (back.bootId === before.bootId)
    return fail('systemd', `${again.node.name} reports the same boot id after a power cut: it did not boot again`);
  if (cluster.profile.storage.enabled) {
    if (back.rancher.uuid !== before.rancher.uuid)
      return fail(
        'unit',
        `${again.node.name}'s local storage is a new filesystem (${back.rancher.uuid ?? '?'}, was ${before.rancher.uuid ?? '?'}): its loop image was not kept`,
      );
    kept.push(`its local storage (ext4 ${before.rancher.uuid})`);
  }
  kept.push('its Galera data (the row written before the power cut, read from it directly)');

  const stageLine = boots
    .map((b) => `${b.node} ${b.stages.ubootToKernel} + ${b.stages.kernelToNfsRoot} + ${b.stages.kernelToMultiUser ?? '?'} s`)
    .join(', ');
  return {
    result: {
      name: 'netboot-arm64',
      pass: true,
      seconds: seconds(Date.now() - started),
      detail:
        `${boots.length} emulated arm64 boards booted over PXE and NFS (power-on to U-Boot's "Starting kernel" + kernel to NFS root + kernel to multi-user.target by the node's clock: ${stageLine}); ` +
        `Galera size ${servers.length}, VIP on ${formed.holders[0]}, the k3s database through it ${report.clusterSeconds} s after power-on; every node running with no failed unit; ` +
        `${again.node.name} booted again (multi-user.target ${second.stages.kernelToMultiUser ?? '?'} s after its kernel started) and kept ${kept.join(' and ')}`,
    },
    report,
  };
}
