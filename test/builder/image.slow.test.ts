/**
 * The builder image for real (the CI recipe in docs/tests-and-ci.md): Dockerfile.builder is built
 * with podman on a Debian + Node base imported from the cache (no registry is
 * reachable; scripts/builder-base.sh), then Dockerfile.artifacts runs
 * `build-images --profile opz3 --format tar` inside it and hands the output back
 * with `--output` (no `podman run`). Its SHA256SUMS must equal those of the same
 * build on this machine, outside the image: the artifacts depend on the inputs,
 * not on the environment that built them.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { execa, type Options } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeArmbianBase } from '../support/armbian-base.js';
import { hasProgram } from '../support/peers.js';
import { requires } from '../support/requires.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TSX = import.meta.resolve('tsx');
const BUILDER = 'localhost/netroot-builder:slow-test';
const NODES = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven', 'opz3-4-top'];
const MINUTE = 60_000;
// Cold (empty podman storage and cache): the Debian base, apt-get and npm ci inside the image.
const TEST_TIMEOUT = 45 * MINUTE;

const isRoot = process.getuid?.() === 0;
const missing = ['podman', 'mmdebstrap', 'mkimage', 'setcap'].filter((p) => !hasProgram(p));
const it = requires(
  isRoot && missing.length === 0,
  `building the builder image needs root${missing.length ? ` and ${missing.join(', ')} (apt-get install podman mmdebstrap u-boot-tools libcap2-bin)` : ''}`,
);

let tmp = '';
let inputs = '';

/** A child bounded by a timeout; a failure shows the end of its output (a podman build prints thousands of lines). */
async function run(file: string, args: string[], options: Options & { timeout: number }): Promise<string> {
  const child = await execa(file, args, { reject: false, stdin: 'ignore', all: true, ...options });
  if (child.exitCode !== 0) {
    const tail = String(child.all ?? '')
      .split('\n')
      .slice(-40)
      .join('\n');
    throw new Error(`${file} ${args.join(' ')} failed (${child.timedOut ? 'timed out' : `exit ${child.exitCode}`}):\n${tail}`);
  }
  return String(child.stdout ?? '');
}

const sums = (out: string): string => readFileSync(path.join(out, 'opz3/artifacts/SHA256SUMS'), 'utf8');

test.after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

it('build-images inside the builder image writes the SHA256SUMS of the same build outside it', { timeout: TEST_TIMEOUT }, async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-builder-'));
  // The build context of the artifacts step: only the inputs, bound at /in.
  inputs = path.join(tmp, 'inputs');
  await mkdir(inputs);
  const base = path.join(tmp, 'armbian');
  await makeArmbianBase(base, path.join(tmp, 'work'));
  await run('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', base, '-cf', path.join(inputs, 'base.tar'), '.'], {
    timeout: 2 * MINUTE,
  });
  await writeFile(path.join(inputs, 'k3s'), '#!/bin/sh\necho k3s stand-in for tests\n', { mode: 0o755 });
  const secretsDir = path.join(tmp, 'secrets');
  await mkdir(secretsDir, { mode: 0o700 });
  const secrets = path.join(secretsDir, 'opz3.secrets.yaml');

  // Outside: the command line on this machine; its first build generates the cluster's secrets.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NETROOT_') && k !== 'SOURCE_DATE_EPOCH'));
  const outside = path.join(tmp, 'outside');
  await run(
    process.execPath,
    [
      '--import',
      TSX,
      path.join(REPO, 'src/cli.ts'),
      'build',
      '--profile',
      'opz3',
      '--format',
      'tar',
      '--compress',
      'gz,zst',
      '--base',
      path.join(inputs, 'base.tar'),
      '--k3s-binary',
      path.join(inputs, 'k3s'),
      '--secrets',
      secrets,
      '--cache-dir',
      path.join(tmp, 'cache'),
      '--out',
      outside,
    ],
    { cwd: tmp, env, extendEnv: false, timeout: 10 * MINUTE },
  );
  assert.ok(existsSync(secrets), 'the outside build generated the secrets');

  // The base image is made once and cached (~/.cache/netroot/builder); podman's layer cache keeps the rest.
  const from = (await run(path.join(REPO, 'scripts/builder-base.sh'), [], { timeout: 20 * MINUTE })).trim();
  assert.match(from, /^localhost\/netroot-node-bookworm:/);
  await run(
    'podman',
    ['build', '--isolation', 'chroot', '--network', 'host', '--from', from, '-f', 'Dockerfile.builder', '-t', BUILDER, '.'],
    { cwd: REPO, timeout: 30 * MINUTE },
  );

  // Inside: --layers=false, because a layer cache keyed by the RUN line would hand back an earlier
  // run's artifacts for other inputs (bind-mounted files are not part of the key); and no stage
  // is kept as an image, but the last one, removed here.
  const inside = path.join(tmp, 'inside');
  const iid = path.join(tmp, 'artifacts.iid');
  try {
    await run(
      'podman',
      [
        'build',
        '--isolation',
        'chroot',
        '--network',
        'host',
        '--layers=false',
        '--iidfile',
        iid,
        '-f',
        path.join(REPO, 'Dockerfile.artifacts'),
        '--build-arg',
        `BUILDER=${BUILDER}`,
        '--secret',
        `id=netroot-secrets,src=${secrets}`,
        '--output',
        `type=local,dest=${inside}`,
        inputs,
      ],
      { timeout: 10 * MINUTE },
    );
  } finally {
    if (existsSync(iid)) await execa('podman', ['rmi', readFileSync(iid, 'utf8').trim()], { reject: false, timeout: MINUTE });
  }

  const expected = sums(outside);
  for (const node of NODES) {
    assert.match(expected, new RegExp(`^[0-9a-f]{64}  ${node}\\.tar\\.gz$`, 'm'), `${node}.tar.gz is summed`);
    assert.match(expected, new RegExp(`^[0-9a-f]{64}  ${node}\\.tar\\.zst$`, 'm'), `${node}.tar.zst is summed`);
  }
  assert.fixture(sums(inside), expected, 'SHA256SUMS inside the image = outside');
  // The files handed out are the ones summed (SHA256SUMS is not just copied text).
  const check = await execa('sha256sum', ['--strict', '-c', 'SHA256SUMS'], {
    cwd: path.join(inside, 'opz3/artifacts'),
    reject: false,
    timeout: MINUTE,
  });
  assert.is(check.exitCode, 0, check.stdout + check.stderr);
});
