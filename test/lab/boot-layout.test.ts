/**
 * The boot server's layout for the export and TFTP roots profiles name: built
 * for real in a private mount namespace, every mount point checked there, and
 * the host left as it was.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { bootServerMounts, layoutScript, spineDirectories, type LayoutMount } from '../../src/lab/boot-layout.js';
import { LabError } from '../../src/lab/errors.js';
import { loadProfile } from '../../src/profile/load.js';
import { isRoot } from '../../src/privileges.js';
import { requires } from '../support/requires.js';
import { test } from '../support/test.js';

const opz3 = (await loadProfile('opz3-lab')).profile.exports;
const opz5 = (await loadProfile('opz5-lab')).profile.exports;

test('the directories on the way to the mount points are laid out, and none inside a mount', () => {
  const mounts = bootServerMounts({ root: '/srv/netboot', tftpRoot: '/srv/netboot/tftp' }, { exportRoot: '/e', tftp: '/t' });
  assert.equal(spineDirectories(mounts), ['/', '/srv', '/var', '/var/lib']);
  const debian = bootServerMounts({ root: '/export/opz4-lab', tftpRoot: '/var/lib/tftpboot' }, { exportRoot: '/e', tftp: '/t' });
  assert.equal(spineDirectories(debian), ['/', '/export', '/var', '/var/lib']);
});

test('two things at one place, or the root itself, are refused by name', () => {
  const at = (root: string, tftpRoot: string): string[] =>
    layoutScript(bootServerMounts({ root, tftpRoot }, { exportRoot: '/e', tftp: '/t' }), '/tmp/x');
  assert.throws(
    () => at('/srv/tftp', '/srv/tftp'),
    (e: Error) => e instanceof LabError && /two things at \/srv\/tftp/.test(e.message),
  );
  assert.throws(
    () => at('/var/lib/nfs', '/srv/tftp'),
    (e: Error) => e instanceof LabError && /two things at \/var\/lib\/nfs/.test(e.message),
  );
  assert.throws(
    () => at('/', '/srv/tftp'),
    (e: Error) => e instanceof LabError && /cannot lay out \//.test(e.message),
  );
});

const LAYOUTS: { name: string; exports: { root: string; tftpRoot: string } }[] = [
  { name: 'opz3-lab (/srv)', exports: opz3 },
  { name: 'opz5-lab (/export, which hosts lack)', exports: opz5 },
  { name: "Debian's TFTP root under /var next to /var/lib/nfs", exports: { root: '/export/opz4-lab', tftpRoot: '/var/lib/tftpboot' } },
  { name: 'the TFTP root inside the export root', exports: { root: '/srv/netboot', tftpRoot: '/srv/netboot/tftp' } },
  { name: 'deep and at the top', exports: { root: '/var/lib/netroot/exports/opz', tftpRoot: '/tftpboot' } },
];

/** Inside the laid-out namespace: each mount point a mount point, each bind showing its source, the host's neighbours still there. */
function checks(mounts: LayoutMount[]): string[] {
  return [
    ...mounts.map((m) => `if mountpoint -q '${m.path}'; then echo 'mounted ${m.path}'; else echo 'not mounted ${m.path}'; fi`),
    ...mounts.filter((m) => m.source).map((m) => `[ -f '${m.path}/marker' ] && echo 'serves ${m.path}' || echo 'empty ${m.path}'`),
    '[ -f /var/lib/dpkg/status ] && echo "host /var/lib/dpkg/status" || echo "hidden /var/lib/dpkg/status"',
    '[ -x /bin/sh ] && echo "host /bin/sh" || echo "hidden /bin/sh"',
  ];
}

const rootOnly = requires(isRoot(), 'a mount namespace needs root');
for (const { name, exports } of LAYOUTS) {
  rootOnly(`the boot server lays out ${name}: ${exports.root} and ${exports.tftpRoot}`, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-layout-'));
    try {
      const sources = { exportRoot: path.join(dir, 'exports'), tftp: path.join(dir, 'tftp') };
      for (const source of Object.values(sources)) {
        await mkdir(source);
        await writeFile(path.join(source, 'marker'), '');
      }
      await mkdir(path.join(dir, 'root'));
      const mounts = bootServerMounts(exports, sources);
      const hostHad = mounts.map((m) => [m.path, existsSync(m.path)] as const);
      const script = [...layoutScript(mounts, path.join(dir, 'root')), ...checks(mounts)].join('\n');
      const result = await execa('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-euc', script], {
        reject: false,
        timeout: 30_000,
      });
      assert.is(result.exitCode, 0, `the layout failed: ${result.stderr}`);
      const said = result.stdout.split('\n');
      for (const m of mounts) assert.ok(said.includes(`mounted ${m.path}`), `${m.path} is a mount point: ${result.stdout}`);
      for (const m of mounts.filter((m) => m.source)) assert.ok(said.includes(`serves ${m.path}`), `${m.path} shows ${m.source}`);
      assert.ok(said.includes('host /var/lib/dpkg/status'), "the host's /var/lib stays visible next to the mounts");
      assert.ok(said.includes('host /bin/sh'));
      for (const [p, had] of hostHad) assert.is(existsSync(p), had, `the host's ${p} is as it was`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
