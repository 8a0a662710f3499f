/**
 * What a Raspberry Pi 4 or 5 does on the network before its kernel runs, replayed from the node's
 * namespace with ordinary clients against the boot server the build configured: the EEPROM
 * bootloader's DHCP request (busybox udhcpc sending the bootloader's vendor class and PXE options),
 * then the TFTP reads it makes (busybox tftp), in its order, from the directory named after its
 * serial, and the NFS root its cmdline.txt names (libnfs). No Pi is needed, and none is emulated:
 * what is proven is that every file the bootloader asks for is served, and what it would read.
 *
 * What the bootloader asks, from Raspberry Pi's documentation (github.com/raspberrypi/documentation,
 * documentation/asciidoc/computers/raspberry-pi/):
 * - boot-net.adoc: the DHCP request carries vendor class (60) "PXEClient:Arch:00000:UNDI:002001",
 *   client architecture (93) 0 and a client GUID (97), and asks for option 43; the reply's option 43
 *   must hold "Raspberry Pi Boot", or it is not taken.
 * - eeprom-bootloader.adoc: TFTP_PREFIX=0 (the default) prefixes every file with the serial number
 *   (`9ffefdef/`), and drops the prefix when neither start4.elf nor start.elf is found there; the
 *   TFTP server is TFTP_IP, else the DHCP reply's; DHCP_OPTION97 gives the GUID's layout ("RPi4" or
 *   "RPi5", board revision, the MAC's low 4 bytes, the serial); ENABLE_SELF_UPDATE (default 1) looks
 *   for pieeprom.sig beside the boot files.
 * - bootflow-eeprom.adoc: the Pi 4's bootloader loads start4.elf (and fixup4.dat), which reads
 *   config.txt, the device tree, cmdline.txt, the kernel and the initramfs; the Pi 5's bootloader
 *   has start.elf built in and loads the kernel itself.
 * - configuration.adoc (boot folder): the device tree is chosen by model, bcm2711-rpi-4-b.dtb and
 *   bcm2712-rpi-5-b.dtb; overlays/overlay_map.dtb is read where it exists.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configureNodeAddress } from './network.js';
import { tryInNet } from './run-command.js';
import type { LabNode, LabTopology } from './topology.js';

export type PiModel = 4 | 5;

/** The bootloader's DHCP vendor class (option 60), as boot-net.adoc shows it. */
export const PI_VENDOR_CLASS = 'PXEClient:Arch:00000:UNDI:002001';
/** The PXE menu text the bootloader looks for in option 43 (PXE_OPTION43's default). */
export const PI_BOOT_SERVICE = 'Raspberry Pi Boot';
/** The device tree each model's firmware loads. */
export const PI_DEVICE_TREE: Record<PiModel, string> = { 4: 'bcm2711-rpi-4-b.dtb', 5: 'bcm2712-rpi-5-b.dtb' };
/** DHCP_OPTION97's four-character codes, as sent: "RPi4", "RPi5". */
const FOURCC: Record<PiModel, string> = { 4: '34695052', 5: '35695052' };
/** A board revision of each model (revision-codes.adoc): 4 GB Pi 4 Model B 1.4, 8 GB Pi 5 1.0. */
const REVISION: Record<PiModel, string> = { 4: '00c03114', 5: '00d04170' };

export interface PiLease {
  ip?: string;
  router?: string;
  hostname?: string;
  siaddr?: string;
  /** Option 66, the TFTP server's address as text. */
  tftp?: string;
  /** Option 60 of the reply. */
  vendor?: string;
  /** Option 43 of the reply, as hex. */
  opt43?: string;
}

/** The "bound" lease udhcpc's script printed: `lease KEY=VALUE` lines. */
export function parsePiLease(output: string): PiLease | undefined {
  const fields = Object.fromEntries(
    output
      .split('\n')
      .map((l) => /^lease (\w+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!.trim()]),
  );
  if (!fields.ip) return undefined;
  const lease: PiLease = {};
  for (const key of ['ip', 'router', 'hostname', 'siaddr', 'tftp', 'vendor', 'opt43'] as const) if (fields[key]) lease[key] = fields[key];
  if (lease.router) lease.router = lease.router.split(' ')[0]!;
  return lease;
}

/** The PXE boot menu entries of an option 43 (PXE spec: sub-option 9, each entry type(2) length(1) text). */
export function pxeMenu(opt43Hex: string): string[] {
  const bytes = Buffer.from(opt43Hex, 'hex');
  const menu: string[] = [];
  for (let i = 0; i < bytes.length && bytes[i] !== 0xff;) {
    const code = bytes[i]!;
    const length = bytes[i + 1] ?? 0;
    const value = bytes.subarray(i + 2, i + 2 + length);
    if (code === 9)
      for (let j = 0; j + 3 <= value.length;) {
        const size = value[j + 2]!;
        menu.push(value.subarray(j + 3, j + 3 + size).toString('latin1'));
        j += 3 + size;
      }
    i += 2 + length;
  }
  return menu;
}

/** What config.txt tells the firmware to load (kernel=, initramfs FILE followkernel), as the firmware reads it. */
export function readConfigTxt(text: string): { kernel?: string; initramfs?: string } {
  const out: { kernel?: string; initramfs?: string } = {};
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const kernel = /^kernel=(\S+)$/.exec(line);
    if (kernel) out.kernel = kernel[1]!;
    const initramfs = /^initramfs\s+(\S+)/.exec(line);
    if (initramfs) out.initramfs = initramfs[1]!;
  }
  return out;
}

export interface PiFetch {
  /** The path the bootloader asks for, under the TFTP root. */
  file: string;
  /** Who asks and why. */
  why: string;
  /** The boot goes on without it (the server must still answer: with the file or a TFTP error). */
  optional?: boolean;
}

/** The TFTP reads before config.txt is known: the prefix probe, config.txt, the self-update check. */
export function firstFetches(serial: string): PiFetch[] {
  return [
    { file: `${serial}/start4.elf`, why: 'the bootloader keeps the serial prefix only where start4.elf is (TFTP_PREFIX)' },
    { file: `${serial}/config.txt`, why: 'the bootloader reads config.txt' },
    { file: `${serial}/pieeprom.sig`, why: 'the bootloader looks for a self-update (ENABLE_SELF_UPDATE)', optional: true },
  ];
}

/** The reads after config.txt: the Pi 4's GPU firmware, then (either model) what config.txt and the model name. */
export function laterFetches(model: PiModel, serial: string, config: { kernel?: string; initramfs?: string }): PiFetch[] {
  return [
    ...(model === 4
      ? [
          { file: `${serial}/start4.elf`, why: "the Pi 4's bootloader loads the GPU firmware" },
          { file: `${serial}/fixup4.dat`, why: "the Pi 4's bootloader loads the firmware's memory split" },
        ]
      : []),
    { file: `${serial}/${PI_DEVICE_TREE[model]}`, why: `the firmware loads the Pi ${model}'s device tree` },
    { file: `${serial}/overlays/overlay_map.dtb`, why: 'the firmware looks for the overlay map', optional: true },
    { file: `${serial}/cmdline.txt`, why: "the firmware reads the kernel's command line" },
    { file: `${serial}/${config.kernel ?? (model === 4 ? 'kernel8.img' : 'kernel_2712.img')}`, why: 'the firmware loads the kernel' },
    ...(config.initramfs ? [{ file: `${serial}/${config.initramfs}`, why: 'the firmware loads the initramfs config.txt names' }] : []),
  ];
}

export interface FetchResult extends PiFetch {
  served: boolean;
  /** Where the served copy was saved. */
  local?: string;
  /** The server's answer when it did not serve the file. */
  error?: string;
}

export interface PiReplay {
  node: string;
  lease?: PiLease;
  dhcpOutput: string;
  fetches: FetchResult[];
  /** cmdline.txt as served: the kernel command line the firmware passes on. */
  cmdline?: string;
  /** The NFS root cmdline.txt names, listed from the node's address; and another node's root, which must be refused. */
  nfs?: { server: string; path: string; listing?: string; error?: string; foreign?: { path: string; refused: boolean } };
}

// udhcpc hands the lease to a script in its environment; this one prints what the bootloader reads.
const LEASE_SCRIPT = [
  '#!/bin/sh',
  '[ "$1" = bound ] || exit 0',
  ...['ip', 'router', 'hostname', 'siaddr', 'tftp', 'vendor', 'opt43'].map((key) => `printf 'lease ${key}=%s\\n' "$${key}"`),
  '',
].join('\n');

/** The bootloader's DHCP request from the node's MAC; with a lease, the node's interface gets the address. */
export async function piDhcp(
  topology: LabTopology,
  node: LabNode,
  model: PiModel,
  serial: string,
  workDir: string,
): Promise<{ lease?: PiLease; output: string }> {
  const script = path.join(workDir, 'udhcpc-pi.sh');
  await writeFile(script, LEASE_SCRIPT);
  await chmod(script, 0o755);
  const macLow = node.mac.split(':').slice(2).join('');
  const guid = `00${FOURCC[model]}${REVISION[model]}${macLow}${serial}`;
  const result = await tryInNet(
    node.ns,
    'busybox',
    // Options 93 (client architecture 0), 94 (UNDI 2.1) and 97 (GUID) as boot-net.adoc's capture shows them; 43, 66, 67 asked for.
    ['udhcpc', '-f', '-q', '-n', '-t', '5', '-T', '2', '-i', node.interface, '-s', script, '-V', PI_VENDOR_CLASS].concat([
      '-x',
      '0x5d:0000',
      '-x',
      '0x5e:010201',
      '-x',
      `0x61:${guid}`,
      '-O',
      '43',
      '-O',
      '66',
      '-O',
      '67',
    ]),
    { timeoutMs: 30_000 },
  );
  const output = `${result.stdout}\n${result.stderr}`.trim();
  const lease = parsePiLease(result.stdout);
  if (lease?.ip) await configureNodeAddress(topology, node, lease.ip, lease.router);
  return { ...(lease ? { lease } : {}), output };
}

async function tftpRead(node: LabNode, server: string, file: string, local: string): Promise<string | undefined> {
  await mkdir(path.dirname(local), { recursive: true });
  const result = await tryInNet(node.ns, 'busybox', ['tftp', '-g', '-b', '1468', '-r', file, '-l', local, server], { timeoutMs: 60_000 });
  return result.ok ? undefined : (result.stderr || result.stdout || `exit ${result.exitCode}`).trim();
}

async function fetchAll(node: LabNode, server: string, fetches: PiFetch[], dir: string): Promise<FetchResult[]> {
  const out: FetchResult[] = [];
  for (const [i, fetch] of fetches.entries()) {
    const local = path.join(dir, String(i), fetch.file);
    const error = await tftpRead(node, server, fetch.file, local);
    out.push(error === undefined ? { ...fetch, served: true, local } : { ...fetch, served: false, error });
  }
  return out;
}

/** The whole replay for one node: DHCP, the TFTP reads in the bootloader's order, the NFS root of its cmdline.txt. */
export async function replayPiBoot(
  topology: LabTopology,
  node: LabNode,
  o: { model: PiModel; serial: string; exportsRoot: string; workDir: string },
): Promise<PiReplay> {
  const dir = path.join(o.workDir, 'netboot-raspberrypi', node.name);
  await mkdir(dir, { recursive: true });
  const { lease, output } = await piDhcp(topology, node, o.model, o.serial, dir);
  const replay: PiReplay = { node: node.name, dhcpOutput: output, fetches: [], ...(lease ? { lease } : {}) };
  // The bootloader boots only from a reply that offers its service; the TFTP server is option 66's, else the reply's server.
  const server = lease?.tftp ?? lease?.siaddr;
  if (!lease?.ip || !server || !pxeMenu(lease.opt43 ?? '').includes(PI_BOOT_SERVICE)) return replay;
  const first = await fetchAll(node, server, firstFetches(o.serial), path.join(dir, 'first'));
  const configTxt = first.find((f) => f.file.endsWith('/config.txt'));
  const config = configTxt?.local ? readConfigTxt(await readFile(configTxt.local, 'utf8')) : {};
  const later = await fetchAll(node, server, laterFetches(o.model, o.serial, config), path.join(dir, 'later'));
  replay.fetches = [...first, ...later];
  const cmdline = later.find((f) => f.file.endsWith('/cmdline.txt'));
  if (!cmdline?.local) return replay;
  replay.cmdline = (await readFile(cmdline.local, 'utf8')).replace(/\n$/, '');
  const nfsroot = /(?:^|\s)nfsroot=([^\s,:]+):([^\s,]+)/.exec(replay.cmdline);
  if (!nfsroot) return replay;
  const [, nfsServer, nfsPath] = nfsroot as unknown as [string, string, string];
  const list = await tryInNet(node.ns, 'nfs-ls', [`nfs://${nfsServer}${nfsPath}?version=3`], { timeoutMs: 20_000 });
  const other = topology.nodes.find((n) => n.name !== node.name);
  const foreignPath = other ? path.posix.join(o.exportsRoot, other.name) : undefined;
  const foreign = foreignPath
    ? await tryInNet(node.ns, 'nfs-ls', [`nfs://${nfsServer}${foreignPath}?version=3`], { timeoutMs: 20_000 })
    : undefined;
  replay.nfs = {
    server: nfsServer,
    path: nfsPath,
    ...(list.ok ? { listing: list.stdout } : { error: (list.stderr || list.stdout).trim() }),
    ...(foreignPath && foreign ? { foreign: { path: foreignPath, refused: !foreign.ok } } : {}),
  };
  return replay;
}
