/**
 * netboot-arm64 fails at the right stage: three emulated arm64 boards boot at
 * once from the opz3-netboot build, each with one thing broken in what the
 * boot server hands out, and the report names the stage and the cause.
 *   - opz3-1-onder's export is opened to another node's address (Ganesha refuses it);
 *   - opz3-2-midden's pxelinux file names a wrong nfsroot= path;
 *   - opz3-4-top gets an initrd without the virtio NIC's modules.
 * The passing run is `npm run lab -- --profile opz3-netboot --scenario netboot-arm64`,
 * which .ci/run runs and counts. Needs root, qemu-system-aarch64 and u-boot-qemu
 * (scripts/install-lab-deps.sh), and the cached arm64 base (test/build/debootstrap
 * builds it first).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { build } from '../../src/build.js';
import { UBOOT_ARM64 } from '../../src/lab/board.js';
import { K3S_STANDIN, runLab } from '../../src/lab/lab.js';
import { pxelinuxName } from '../../src/lab/scenarios/netboot-arm64.js';
import { silentReporter } from '../../src/progress.js';
import { loadProfile } from '../../src/profile/load.js';
import { inspectInitrd } from '../../src/base/check/initrd.js';
import { requires } from '../support/requires.js';
import { isRoot } from '../../src/privileges.js';

const PROFILE = path.resolve('profiles/opz3-netboot.yaml');
const qemu = (await execa('sh', ['-c', 'command -v qemu-system-aarch64'], { reject: false })).exitCode === 0;
const it = requires(isRoot() && qemu && existsSync(UBOOT_ARM64), 'root, qemu-system-aarch64 and u-boot-qemu (scripts/install-lab-deps.sh)');

/** The initrd without the named modules' files: unpacked, pruned and packed again as one newc archive. */
async function initrdWithout(source: string, target: string, modules: string[], work: string): Promise<void> {
  const info = await inspectInitrd(source);
  assert.is(info.format, 'raw', 'a plain initramfs (Debian arm64)');
  const decompress: Record<string, string[]> = { gzip: ['gzip', '-dc'], zstd: ['zstd', '-dc'], xz: ['xz', '-dc'], none: ['cat'] };
  const command = decompress[info.compression];
  if (!command) throw new Error(`unexpected initrd compression ${info.compression}`);
  const [tool, ...args] = command;
  const dir = path.join(work, 'initrd');
  await mkdir(dir, { recursive: true });
  await execa('sh', ['-c', `${tool} ${args.join(' ')} "$1" | cpio -idm --quiet`, 'sh', source], { cwd: dir, timeout: 120_000 });
  const removed = (
    await execa('find', ['.', '(', ...modules.flatMap((m, i) => [...(i ? ['-o'] : []), '-name', `${m}.ko*`]), ')', '-print', '-delete'], {
      cwd: dir,
    })
  ).stdout
    .split('\n')
    .filter(Boolean);
  assert.ok(removed.length >= 1, `the initrd held ${modules.join(', ')}: ${removed.join(', ')}`);
  await execa('sh', ['-c', `find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 > "$1"`, 'sh', target], {
    cwd: dir,
    timeout: 120_000,
  });
  await rm(dir, { recursive: true, force: true });
}

it('a node whose export is opened to another address, a wrong nfsroot path, an initrd without the NIC: each fails at the NFS mount, saying why', async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-netboot-arm64-'));
  try {
    const secrets = path.join(tmp, 'secrets.yaml');
    await build({
      profile: PROFILE,
      out: path.join(tmp, 'build'),
      formats: ['tree'],
      k3sBinary: K3S_STANDIN,
      secrets,
      reporter: silentReporter,
    });
    const { cluster } = await loadProfile(PROFILE);
    const out = path.join(tmp, 'build', cluster.name);
    const [onder, midden, , top] = cluster.nodes;
    const exportsRoot = cluster.profile.exports.root;

    // 1. opz3-1-onder's export admits opz3-2-midden's address instead of its own.
    const ganesha = path.join(out, 'exports', `${cluster.name}.ganesha.conf`);
    const conf = await readFile(ganesha, 'utf8');
    const opened = conf.replace(
      new RegExp(`(Path = "${exportsRoot}/${onder!.name}";[\\s\\S]*?Clients = )${onder!.ip.replace(/\./g, '\\.')};`),
      `$1${midden!.ip};`,
    );
    assert.is.not(opened, conf, 'the export of opz3-1-onder was edited');
    await writeFile(ganesha, opened);

    // 2. opz3-2-midden's pxelinux file points nfsroot= at a directory that is not exported.
    const pxe = (node: { mac: string }) => path.join(out, 'tftp/pxelinux.cfg', pxelinuxName(node.mac));
    const middenPxe = await readFile(pxe(midden!), 'utf8');
    await writeFile(
      pxe(midden!),
      middenPxe.replace(
        `nfsroot=${cluster.profile.network.nfsServer}:${exportsRoot}/${midden!.name}`,
        `nfsroot=${cluster.profile.network.nfsServer}:${exportsRoot}/no-such-node`,
      ),
    );
    assert.match(await readFile(pxe(midden!), 'utf8'), '/no-such-node,');

    // 3. opz3-4-top boots an initrd without virtio_net, net_failover and failover.
    const boardDir = path.join(out, 'tftp/boot', top!.board.name);
    await initrdWithout(
      path.join(boardDir, 'initrd.img'),
      path.join(boardDir, 'initrd-without-nic.img'),
      ['virtio_net', 'net_failover', 'failover'],
      tmp,
    );
    const topPxe = await readFile(pxe(top!), 'utf8');
    await writeFile(pxe(top!), topPxe.replace(/(initrd \S+\/)initrd\.img/, '$1initrd-without-nic.img'));
    assert.match(await readFile(pxe(top!), 'utf8'), 'initrd-without-nic.img');

    const report = await runLab({
      profile: PROFILE,
      out: tmp,
      skipBuild: true,
      secrets,
      scenarios: ['netboot-arm64'],
      nodes: [onder!.name, midden!.name, top!.name],
      log: () => undefined,
    });
    assert.not.ok(report.pass, 'the lab must fail');
    const boots = Object.fromEntries((report.boards?.boots ?? []).map((b) => [b.node, b]));
    assert.equal(Object.keys(boots).sort(), [midden!.name, onder!.name, top!.name].sort(), JSON.stringify(report.scenarios));
    for (const b of Object.values(boots)) {
      assert.is(b.failedStage, 'NFS mount', `${b.node}: ${b.detail}`);
      // It got that far: its lease, its pxelinux file, the kernel.
      assert.ok(b.stages.ubootToKernel! > 0, `${b.node}: U-Boot reached the kernel`);
    }
    assert.match(boots[onder!.name]!.detail, `could not mount ${cluster.profile.network.nfsServer}:${exportsRoot}/${onder!.name} as /`);
    assert.match(boots[onder!.name]!.detail, /Permission denied|denied/i);
    assert.match(
      boots[midden!.name]!.detail,
      `could not mount ${cluster.profile.network.nfsServer}:${exportsRoot}/no-such-node as / (nfsroot= on the kernel command line names`,
    );
    assert.match(boots[top!.name]!.detail, "the initrd found no network device: the NIC's driver is not in it (board.modules)");
    assert.match(report.scenarios[0]!.detail, '--- last console lines');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
