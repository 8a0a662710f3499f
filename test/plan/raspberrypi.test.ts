/**
 * profiles/pi4.yaml built without a base (the plan and boot server files): each Pi gets its
 * config.txt and cmdline.txt in the TFTP directory of its serial and no pxelinux file, and the
 * dnsmasq config, which dnsmasq itself accepts, offers it the "Raspberry Pi Boot" PXE service.
 */
import * as assert from 'uvu/assert';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from '../support/test.js';
import { buildToTemp, type TempBuild } from '../support/build.js';
import { dnsmasqTest } from '../support/peers.js';

let pi4: TempBuild;
test.before(async () => {
  pi4 = await buildToTemp('pi4');
});
test.after(async () => {
  await pi4.cleanup();
});

const SERIALS = { 'pi4-1': '5a0c7101', 'pi4-2': '5a0c7102', 'pi4-3': '5a0c7103', 'pi4-4': '5a0c7104' };

test('a Pi 4 profile builds: each node has its serial directory with config.txt and cmdline.txt, and no pxelinux file', async () => {
  const tftp = path.join(pi4.dir, 'tftp');
  assert.equal((await readdir(tftp)).sort(), Object.values(SERIALS).sort());
  for (const [node, serial] of Object.entries(SERIALS)) {
    assert.equal((await readdir(path.join(tftp, serial))).sort(), ['cmdline.txt', 'config.txt']);
    const config = await readFile(path.join(tftp, serial, 'config.txt'), 'utf8');
    // Debian's kernel and initrd as /vmlinuz and /initrd.img link them, loaded by their names in the directory.
    for (const line of ['arm_64bit=1', 'kernel=vmlinuz', 'initramfs initrd.img followkernel'])
      assert.ok(config.split('\n').includes(line), `${serial}/config.txt has ${line}:\n${config}`);
    const cmdline = await readFile(path.join(tftp, serial, 'cmdline.txt'), 'utf8');
    assert.is(cmdline.split('\n').length, 2, 'cmdline.txt is one line');
    assert.match(cmdline, `root=/dev/nfs nfsroot=203.0.113.10:/srv/nfs/pi4/${node},vers=3,tcp ip=dhcp rw rootwait console=ttyS1,115200 `);
  }
});

test('the Pi 4 dnsmasq config passes dnsmasq --test and offers each Pi the Raspberry Pi Boot service and the TFTP server', async () => {
  const conf = await readFile(path.join(pi4.dir, 'dnsmasq/pi4.conf'), 'utf8');
  const checked = await dnsmasqTest(conf);
  assert.ok(checked.ok, checked.output);
  for (const node of Object.keys(SERIALS)) {
    assert.match(conf, `pxe-service=tag:netroot-${node},0,"Raspberry Pi Boot"\n`);
    assert.match(conf, `dhcp-option=tag:netroot-${node},option:tftp-server,203.0.113.10\n`);
  }
  assert.not.match(conf, 'pxelinux.0', 'no Pi is sent to a pxelinux file');
});
