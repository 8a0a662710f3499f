/**
 * SIGTERM to build-images alone while mmdebstrap builds a base: netroot tells
 * mmdebstrap and waits while it cleans up (unmounts /proc, /sys and /dev from
 * its chroot), instead of ending first and leaving mmdebstrap to die of the
 * closed pipe it reports on. A stand-in mmdebstrap on PATH does what the real
 * one does on SIGTERM: reports its cleanup on stderr for two seconds, then
 * marks it done.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { test } from '../support/test.js';
import { CLI_ARGS } from '../support/cli.js';
import { opz3With, tempDir } from '../profile/helpers.js';

const STANDIN = `#!/bin/sh
# mmdebstrap stand-in: on SIGTERM it reports its cleanup on stderr (as mmdebstrap does) before it is done.
trap 'echo "I: cleaning up" >&2; sleep 1; echo "I: unmounting /proc /sys /dev" >&2; sleep 1; echo "I: done" >&2; touch "$MARKS/cleaned"; exit 1' TERM
touch "$MARKS/started"
while :; do echo "I: still building" >&2; sleep 0.2; done
`;

test('SIGTERM to build-images during mmdebstrap: mmdebstrap is waited for until its cleanup is done', { timeout: 120_000 }, async () => {
  const dir = await tempDir('netroot-mmdebstrap-stop-');
  const bin = path.join(dir, 'bin');
  const marks = path.join(dir, 'marks');
  await mkdir(bin);
  await mkdir(marks);
  await writeFile(path.join(bin, 'mmdebstrap'), STANDIN, { mode: 0o755 });
  await writeFile(path.join(dir, 'opz3.yaml'), opz3With());
  const env = {
    PATH: `${bin}:${process.env.PATH}`,
    MARKS: marks,
    SOURCE_DATE_EPOCH: '1700000000',
    NETROOT_SECRETS_DIR: path.join(dir, 'secrets'),
    XDG_CACHE_HOME: path.join(dir, 'xdg'),
  };
  const args = ['build', '-p', path.join(dir, 'opz3.yaml'), '--base', 'debootstrap:bookworm:amd64', '--k3s-binary', '/bin/true'];
  const child = spawn(process.execPath, [...CLI_ARGS, ...args, '--out', 'out'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<string | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  try {
    for (let i = 0; i < 600 && !existsSync(path.join(marks, 'started')); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(existsSync(path.join(marks, 'started')), `mmdebstrap never started within 60 s:\n${stderr}`);
    child.kill('SIGTERM');
    const signal = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running after 30 s'), 30_000))]);
    assert.is(signal, 'SIGTERM', stderr);
    assert.ok(existsSync(path.join(marks, 'cleaned')), `mmdebstrap did not finish its cleanup before build-images ended:\n${stderr}`);
    assert.match(stderr, /mmdebstrap: I: done/, 'its cleanup was read to the end');
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
