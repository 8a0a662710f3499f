/**
 * Targets: how `--to` is read, and a missing program (here or on the target
 * host) named with its Debian package before any work.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { openTarget, parseTarget } from '../../src/deploy/target.js';
import { requireTools } from '../../src/deploy/read.js';
import { UsageError } from '../../src/errors.js';
import { rejects } from '../support/assert.js';

const Target = suite('deploy targets');

Target('--to: a local directory, or [user@]host:/dir', () => {
  assert.equal(parseTarget('/srv/nfs/opz3', '/w'), { kind: 'local', dir: '/srv/nfs/opz3' });
  assert.equal(parseTarget('exports', '/w'), { kind: 'local', dir: '/w/exports' });
  assert.equal(parseTarget('./a:b', '/w'), { kind: 'local', dir: '/w/a:b' });
  assert.equal(parseTarget('root@nfs1:/srv/nfs/opz3/', '/w'), { kind: 'ssh', host: 'root@nfs1', dir: '/srv/nfs/opz3' });
  assert.equal(parseTarget('127.0.0.1:/x', '/w'), { kind: 'ssh', host: '127.0.0.1', dir: '/x' });
  assert.ok(rejectsSync(() => parseTarget('nfs1:srv', '/w')) instanceof UsageError, 'a relative remote directory is refused');
});

function rejectsSync(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

Target('no ssh here: named with its package', async () => {
  const target = openTarget({ kind: 'ssh', host: 'root@nfs1', dir: '/srv' }, ['/nonexistent/ssh']);
  await rejects(() => target.sh('true'), /^\/nonexistent\/ssh is not installed on this machine: install the Debian package openssh-client/);
  await target.close();
});

Target('no rsync on the target host: named with its package, before any work', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-target-'));
  try {
    // An "ssh" that runs the remote command here, with a PATH that has sh and no rsync.
    await mkdir(path.join(dir, 'bin'));
    await symlink('/bin/sh', path.join(dir, 'bin', 'sh'));
    const ssh = path.join(dir, 'fake-ssh');
    await writeFile(ssh, `#!/bin/sh\nfor a; do last=$a; done\nexec env PATH=${dir}/bin /bin/sh -c "$last"\n`);
    await chmod(ssh, 0o755);
    const target = openTarget({ kind: 'ssh', host: 'root@nfs1', dir: '/srv' }, [ssh]);
    await rejects(
      () => requireTools(target),
      /^rsync is not installed on root@nfs1: install the Debian package rsync \(apt-get install rsync\)$/,
    );
    await target.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
