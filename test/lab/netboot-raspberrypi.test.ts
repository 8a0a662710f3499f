/**
 * A Raspberry Pi 4 and 5 network boot without the boards: profiles/pi4.yaml and a Pi 5 profile are
 * built over a base holding the Pi files as Debian and Raspberry Pi OS install them, the build's
 * dnsmasq and nfs-ganesha are started as the lab starts them (in network namespaces this test makes,
 * on 203.0.113.0/24), and each node's bootloader is replayed from its own namespace with its MAC:
 * the documented DHCP request, every TFTP read in the bootloader's order, and the NFS root its
 * cmdline.txt names. Expected values come from the profiles and the base, not from the build.
 */
import * as assert from 'uvu/assert';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../../src/build.js';
import { scratchBuildOptions } from '../support/build.js';
import { loadProfile } from '../../src/profile/load.js';
import { isRoot } from '../../src/privileges.js';
import { Cleanup } from '../../src/lab/cleanup.js';
import { createLabNetwork } from '../../src/lab/network.js';
import { startBootServer } from '../../src/lab/boot-server.js';
import { labTopology } from '../../src/lab/topology.js';
import { PI_BOOT_SERVICE, pxeMenu, replayPiBoot, type PiModel, type PiReplay } from '../../src/lab/netboot-raspberrypi.js';
import { makeArmbianBase } from '../support/armbian-base.js';
import { addRaspberryPiFiles } from '../support/raspberrypi-base.js';
import { hasProgram } from '../support/peers.js';
import { requires } from '../support/requires.js';
import { test } from '../support/test.js';

// busybox (udhcpc, tftp) and libnfs-utils (nfs-ls): the bootloader's side; dnsmasq, nfs-ganesha, rpcbind: the server's.
const PROGRAMS = ['busybox', 'dnsmasq', 'ganesha.nfsd', 'rpcbind', 'rpcinfo', 'nfs-ls', 'ip', 'nsenter', 'unshare', 'ss'];
const missing = PROGRAMS.filter((p) => !hasProgram(p));
const netTest = requires(
  isRoot() && missing.length === 0,
  isRoot() ? `missing ${missing.join(', ')} (scripts/install-lab-deps.sh installs them)` : 'network namespaces need root',
);

let tmp: string;
let base: string;

const setup = async (): Promise<void> => {
  if (tmp) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-pi-'));
  base = path.join(tmp, 'base');
  await makeArmbianBase(base, path.join(tmp, 'work'));
  await addRaspberryPiFiles(base, path.join(tmp, 'work'));
  await writeFile(path.join(tmp, 'k3s'), '#!/bin/sh\necho k3s stand-in for tests\n', { mode: 0o755 });
};

/** What each model's bootloader and firmware must be served, as the base holds it (name in the serial directory → file in the base). */
const SERVED: Record<PiModel, Record<string, string>> = {
  4: {
    'start4.elf': 'usr/lib/raspi-firmware/start4.elf',
    'fixup4.dat': 'usr/lib/raspi-firmware/fixup4.dat',
    'bcm2711-rpi-4-b.dtb': 'boot/firmware/bcm2711-rpi-4-b.dtb',
    vmlinuz: 'boot/vmlinuz-6.1.0-21-arm64',
    'initrd.img': 'boot/initrd.img-6.1.0-21-arm64',
  },
  5: {
    'start4.elf': 'boot/firmware/start4.elf',
    'bcm2712-rpi-5-b.dtb': 'boot/firmware/bcm2712-rpi-5-b.dtb',
    'kernel_2712.img': 'boot/firmware/kernel_2712.img',
    initramfs_2712: 'boot/firmware/initramfs_2712',
  },
};
const CONSOLE: Record<PiModel, string> = { 4: 'console=ttyS1,115200', 5: 'console=ttyAMA10,115200' };

async function replayCluster(profile: string, model: PiModel): Promise<void> {
  await setup();
  const out = path.join(tmp, `out-${model}`);
  await build(scratchBuildOptions(tmp, profile, base, `out-${model}`, { secrets: path.join(tmp, `secrets-${model}.yaml`) }));
  const { cluster } = await loadProfile(profile);
  const buildDir = path.join(out, cluster.name);
  const topology = labTopology(cluster, `${process.pid}p${model}`);
  const cleanup = new Cleanup();
  const replays: PiReplay[] = [];
  try {
    await createLabNetwork(topology, cleanup);
    const server = await startBootServer(cluster, topology, { buildDir, workDir: path.join(tmp, `run-${model}`) }, cleanup);
    for (const node of topology.nodes) {
      const serial = cluster.nodes.find((n) => n.name === node.name)!.serial!;
      replays.push(await replayPiBoot(topology, node, { model, serial, exportsRoot: cluster.profile.exports.root, workDir: tmp }));
    }
    const dnsmasqLog = await readFile(server.logs.dnsmasq, 'utf8').catch(() => '');
    const { network, exports } = cluster.profile;
    for (const replay of replays) {
      const node = cluster.nodes.find((n) => n.name === replay.node)!;
      const lease = replay.lease;
      const context = `${node.name}: ${replay.dhcpOutput}\n${dnsmasqLog.split('\n').slice(-15).join('\n')}`;
      assert.ok(lease, `a DHCP lease for ${node.mac}: ${context}`);
      assert.is(lease!.ip, node.ip, context);
      assert.is(lease!.vendor, 'PXEClient', 'the reply names the PXE vendor class');
      assert.equal(pxeMenu(lease!.opt43 ?? ''), [PI_BOOT_SERVICE], `option 43 offers the "Raspberry Pi Boot" service: ${lease!.opt43}`);
      assert.is(lease!.tftp, network.tftpServer, 'option 66 names the TFTP server');

      const dir = node.serial!;
      const missed = replay.fetches.filter((f) => !f.optional && !f.served);
      assert.equal(missed, [], `every file the bootloader needs is served to ${node.name}`);
      for (const f of replay.fetches.filter((x) => x.optional && !x.served))
        assert.match(f.error ?? '', /not found/i, `${f.file}: the server answers a read of a file it lacks with "file not found"`);
      const served = new Map(replay.fetches.filter((f) => f.served).map((f) => [f.file, f.local!]));
      for (const [name, inBase] of Object.entries(SERVED[model])) {
        const local = served.get(`${dir}/${name}`);
        assert.ok(local, `${dir}/${name} was asked for and served (asked: ${replay.fetches.map((f) => f.file).join(', ')})`);
        assert.ok((await readFile(local!)).equals(await readFile(path.join(base, inBase))), `${dir}/${name} is the base's /${inBase}`);
      }

      // The kernel line the firmware passes on: the NFS root of this node, as on every other board.
      const args = (replay.cmdline ?? '').split(' ');
      assert.not.match(replay.cmdline ?? '', /\n/, 'cmdline.txt is one line');
      for (const arg of [
        'root=/dev/nfs',
        `nfsroot=${network.nfsServer}:${exports.root}/${node.name},vers=3,tcp`,
        'ip=dhcp',
        'rw',
        'rootwait',
        CONSOLE[model],
        'cgroup_enable=memory',
        'cgroup_memory=1',
      ])
        assert.ok(args.includes(arg), `${node.name}'s cmdline.txt has ${arg}: ${replay.cmdline}`);
      assert.ok(replay.nfs?.listing && /\betc\b/.test(replay.nfs.listing), `its NFS root is served to it: ${replay.nfs?.error}`);
      assert.ok(replay.nfs?.foreign?.refused, `another node's root (${replay.nfs?.foreign?.path}) is refused to ${node.name}`);
    }
    // Each Pi read its own directory: four nodes, four kernel lines.
    assert.is(new Set(replays.map((r) => r.cmdline)).size, cluster.nodes.length);
  } finally {
    await cleanup.run();
  }
}

netTest('a Raspberry Pi 4 (Debian base): DHCP, every TFTP read of its bootloader and its NFS root, for every node', async () => {
  await replayCluster(path.resolve('profiles/pi4.yaml'), 4);
});

netTest('a Raspberry Pi 5 (Raspberry Pi OS base): DHCP, every TFTP read of its bootloader and its NFS root, for every node', async () => {
  await replayCluster(path.resolve('test/fixtures/profiles/pi5.yaml'), 5);
});

test.after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});
