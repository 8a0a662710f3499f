/**
 * The build checks every program it will run before any work: which ones
 * follow from the base, the formats and root; a machine that lacks some fails
 * at once (exit 3), naming each program's package in one apt-get line, and
 * nothing is written.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from './support/test.js';
import { CLI_ARGS } from './support/cli.js';
import { binWithout } from './support/bin-without.js';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { EXIT_MISSING_PROGRAM } from '../src/errors.js';
import { buildPrograms } from '../src/preflight.js';
import { extractedInCache, type BaseSource } from '../src/base/source.js';
import { extractedTarballDir, INDEX_FILE } from '../src/base/open.js';
import { createHash } from 'node:crypto';

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-preflight-'));
});
test.after(() => rm(tmp, { recursive: true, force: true }));

const programs = async (source: BaseSource, more: Partial<Parameters<typeof buildPrograms>[0]> = {}) =>
  (await buildPrograms({ source, formats: ['tar'], privileged: false, ...more })).map((n) => n.program);

test('which programs follow from the base, the formats, the compressions and root', async () => {
  const dir = path.join(tmp, 'base');
  await mkdir(dir, { recursive: true });
  assert.equal(await programs({ kind: 'directory', spec: dir, path: dir }), ['find', 'getfattr']);
  assert.equal(
    await programs({ kind: 'directory', spec: dir, path: dir }, { privileged: true }),
    ['find', 'getfattr'],
    'a directory base is not extracted',
  );
  assert.equal(await programs({ kind: 'directory', spec: dir, path: dir }, { privileged: true, formats: ['tree', 'tar'] }), [
    'find',
    'getfattr',
    'setfattr',
    'cp',
  ]);
  assert.equal(await programs({ kind: 'directory', spec: dir, path: dir }, { compress: ['gz', 'zst'] }), ['find', 'getfattr', 'zstd']);

  // Compression by magic bytes, not by name.
  const xz = path.join(tmp, 'base.tar');
  await writeFile(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
  const gz = path.join(tmp, 'base.tar.xz');
  await writeFile(gz, Buffer.from([0x1f, 0x8b, 8, 0]));
  assert.equal(await programs({ kind: 'tarball', spec: 'base.tar', path: xz }), ['xz']);
  assert.equal(await programs({ kind: 'tarball', spec: 'base.tar.xz', path: gz }), [], 'gzip is read in-process');
  assert.equal(await programs({ kind: 'tarball', spec: 'base.tar', path: xz }, { privileged: true }), ['xz', 'setfattr']);

  const image = path.join(tmp, 'armbian.img.xz');
  await writeFile(image, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
  assert.equal(await programs({ kind: 'image', spec: 'armbian.img.xz', path: image }), ['xz', 'sfdisk', 'debugfs']);

  // Extracted into the cache by an earlier build: nothing decompresses, partitions or extracts it again.
  assert.equal(await programs({ kind: 'tarball', spec: 'base.tar', path: xz }, { extracted: true }), []);
  assert.equal(await programs({ kind: 'tarball', spec: 'base.tar', path: xz }, { extracted: true, privileged: true }), []);
  assert.equal(
    await programs({ kind: 'tarball', spec: 'base.tar', path: xz }, { extracted: true, privileged: true, formats: ['tree'] }),
    ['setfattr', 'cp'],
    'node trees still get the capabilities written back',
  );
  assert.equal(await programs({ kind: 'image', spec: 'armbian.img.xz', path: image }, { extracted: true }), []);

  assert.equal(await programs({ kind: 'debootstrap', spec: 'debootstrap:bookworm:arm64' }), ['mmdebstrap']);
  assert.equal(
    await programs({ kind: 'debootstrap', spec: 'debootstrap:bookworm:arm64' }, { debootstrapCached: true }),
    [],
    'built before: mmdebstrap does not run',
  );
});

test('a build on a machine without attr and zstd fails before any work: exit 3, both packages in one apt-get line, nothing written', async () => {
  const base = path.join(tmp, 'directory-base');
  await mkdir(base, { recursive: true });
  const out = path.join(tmp, 'out');
  const cache = path.join(tmp, 'cache');
  const secrets = path.join(tmp, 'secrets');
  const run = await execa(
    process.execPath,
    [
      ...CLI_ARGS,
      '--profile',
      path.resolve('profiles/opz3.yaml'),
      '--cache-dir',
      cache,
      '--base',
      base,
      '--format',
      'tree,tar',
      '--compress',
      'gz,zst',
      '--out',
      out,
    ],
    {
      env: { PATH: await binWithout(tmp, ['getfattr', 'setfattr', 'zstd']), HOME: tmp, NETROOT_SECRETS_DIR: secrets },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
      cwd: path.resolve('.'),
    },
  );
  assert.is(run.exitCode, EXIT_MISSING_PROGRAM, run.stderr);
  assert.match(run.stderr, /getfattr \(Debian package attr\), for the file capabilities of the directory base/);
  assert.match(run.stderr, /zstd \(Debian package zstd\), for \.tar\.zst artifacts/);
  assert.match(run.stderr, /Install them \(apt-get install attr zstd\)\./);
  assert.not.ok(existsSync(out), 'no output directory');
  assert.not.ok(existsSync(cache), 'no cache');
  assert.not.ok(existsSync(secrets), 'no secrets saved');
});

test("a deploy that must build first checks its own programs and the build's together, before any work", async () => {
  const base = path.join(tmp, 'directory-base');
  await mkdir(base, { recursive: true });
  const out = path.join(tmp, 'out-deploy');
  const exportRoot = path.join(tmp, 'export');
  const run = await execa(
    process.execPath,
    [...CLI_ARGS, 'deploy', '--profile', path.resolve('profiles/opz3.yaml'), '--to', exportRoot, '--base', base, '--out', out],
    {
      env: {
        PATH: await binWithout(tmp, ['getfattr', 'setfattr', 'rsync']),
        HOME: tmp,
        NETROOT_SECRETS_DIR: path.join(tmp, 'secrets-deploy'),
      },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
      cwd: path.resolve('.'),
    },
  );
  assert.is(run.exitCode, EXIT_MISSING_PROGRAM, run.stderr);
  assert.match(run.stderr, /rsync \(Debian package rsync\), for deploying/);
  assert.match(run.stderr, /getfattr \(Debian package attr\)/);
  assert.match(run.stderr, /Install them \(apt-get install attr rsync\)\./);
  assert.not.ok(existsSync(out), 'no build output');
  assert.not.ok(existsSync(exportRoot), 'nothing on the target');
});

test('a tarball base counts as extracted once the cache holds its index, under the sha256 of its bytes', async () => {
  const cache = path.join(tmp, 'extracted-cache');
  const tarball = path.join(tmp, 'extracted.tar');
  await writeFile(tarball, Buffer.alloc(1024));
  const source: BaseSource = { kind: 'tarball', spec: 'extracted.tar', path: tarball };
  assert.is(await extractedInCache(source, cache), false);
  const dir = extractedTarballDir(cache, createHash('sha256').update(Buffer.alloc(1024)).digest('hex'));
  await mkdir(dir, { recursive: true });
  assert.is(await extractedInCache(source, cache), false, 'a directory without an index is not an extraction');
  await writeFile(path.join(dir, INDEX_FILE), '');
  assert.is(await extractedInCache(source, cache), true);
  assert.is(await extractedInCache({ kind: 'tarball', spec: 'gone.tar', path: path.join(tmp, 'gone.tar') }, cache), false);
});
