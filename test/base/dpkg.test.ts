/**
 * dpkg's status file: only `install ok installed` counts, versions and
 * architectures come through, multiarch pairs are both visible.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingPackages, parseDpkgStatus, parseParagraphs, readInstalledPackages } from '../../src/base/dpkg.js';
import { RootfsError } from '../../src/entries/errors.js';
import { rejects } from '../support/assert.js';

const fixture = fileURLToPath(new URL('../fixtures/rootfs-sources/dpkg-status', import.meta.url));

let root: string;
test.before.each(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'netroot-dpkg-'));
  await mkdir(path.join(root, 'var/lib/dpkg'), { recursive: true });
  await copyFile(fixture, path.join(root, 'var/lib/dpkg/status'));
});
test.after.each(async () => {
  await rm(root, { recursive: true, force: true });
});

test('installed packages with version and architecture; removed and half-configured ones are not installed', async () => {
  const installed = parseDpkgStatus(await readFile(fixture, 'utf8'));
  assert.equal(installed.get('nfs-common'), { name: 'nfs-common', version: '1:2.6.2-4+deb12u1', architecture: 'arm64' });
  assert.equal(installed.get('base-files')?.version, '12.4+deb12u5');
  assert.is(installed.get('initramfs-tools')?.architecture, 'all');
  assert.not.ok(installed.has('open-iscsi'), 'deinstall ok config-files');
  assert.not.ok(installed.has('keepalived'), 'install ok half-configured');
});

test('a multiarch package installed twice is found by name and by name:arch', () => {
  const text =
    'Package: libc6\nStatus: install ok installed\nArchitecture: arm64\nVersion: 2\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: armhf\nVersion: 2\n';
  const installed = parseDpkgStatus(text);
  assert.is(installed.get('libc6')?.architecture, 'arm64');
  assert.ok(installed.has('libc6:arm64'));
  assert.ok(installed.has('libc6:armhf'));
});

test('continuation lines belong to their field and do not start fields of their own', () => {
  const [p] = parseParagraphs('Package: a\nDescription: short\n Version: not a field\n .\n more\nVersion: 1\n');
  assert.is(p?.get('version'), '1');
  assert.is(p?.get('description'), 'short\nVersion: not a field\n.\nmore');
  assert.equal(parseParagraphs('\n\n'), []);
});

test('CRLF line ends and extra blank lines are tolerated', () => {
  const installed = parseDpkgStatus(
    '\r\n\r\nPackage: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\n\r\nPackage: b\r\nStatus: install ok installed\r\nVersion: 2\r\n',
  );
  assert.equal([...installed.keys()], ['a', 'b']);
});

test('missingPackages names what the root lacks, in the order asked', async () => {
  assert.equal(await missingPackages(root, ['nfs-common', 'open-iscsi', 'keepalived', 'libc6:armhf', 'base-files', 'k3s']), [
    'open-iscsi',
    'keepalived',
    'k3s',
  ]);
  assert.equal(await missingPackages(root, []), []);
  assert.is((await readInstalledPackages(root)).get('libc6:armhf')?.version, '2.36-9+deb12u10');
});

test('a root without a dpkg database is an error naming the root', async () => {
  const empty = path.join(root, 'empty');
  await mkdir(empty);
  const error = await rejects(() => missingPackages(empty, ['netbase']), /not a Debian-based root filesystem/);
  assert.instance(error, RootfsError);
  assert.match(error.message, empty);
});
