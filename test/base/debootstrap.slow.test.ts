/**
 * Real mmdebstrap builds of a `debootstrap:` base for the host's architecture:
 * one is made once and then reused, a failed one leaves nothing in the cache.
 *
 * The real build downloads about 70 MB from the host's Debian mirror and took
 * about 60 s here (2 cores). Needs mmdebstrap (root mode: run as root) and tar.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { NetrootError } from '../../src/errors.js';
import { buildDebootstrapBase, debootstrapCachePath, hostArchitecture, parseDebootstrapSpec } from '../../src/base/debootstrap.js';
import { parseDpkgStatus } from '../../src/base/dpkg.js';
import { rejects } from '../support/assert.js';

let tmp: string;
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-debootstrap-'));
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('a real minbase build for the host architecture is made once and reused', async () => {
  const cacheDir = path.join(tmp, 'cache');
  const spec = `debootstrap:bookworm:${hostArchitecture()}:netbase`;
  const logs: string[] = [];
  const started = Date.now();
  const tarball = await buildDebootstrapBase(spec, { cacheDir, log: (l) => logs.push(l) });
  console.log(`  mmdebstrap ${spec}: ${Math.round((Date.now() - started) / 1000)} s`);
  assert.is(tarball, debootstrapCachePath(cacheDir, parseDebootstrapSpec(spec)));
  assert.equal(await readdir(path.dirname(tarball)), [path.basename(tarball)], 'no temporaries left');
  const status = await execa('tar', ['-xOf', tarball, './var/lib/dpkg/status'], { timeout: 60_000 });
  const installed = parseDpkgStatus(status.stdout);
  assert.ok(installed.has('netbase'));
  assert.is(installed.get('base-files')?.architecture, hostArchitecture());
  assert.not.ok(installed.has('systemd'), 'minbase');
  const first = await stat(tarball);
  const again = Date.now();
  assert.is(
    await buildDebootstrapBase('debootstrap:bookworm:' + hostArchitecture() + ':netbase,netbase', { cacheDir, log: (l) => logs.push(l) }),
    tarball,
  );
  assert.ok(Date.now() - again < 5_000, 'the second call does not rebuild');
  assert.is((await stat(tarball)).mtimeMs, first.mtimeMs);
  assert.ok(logs.some((l) => l.includes('built earlier')));
  assert.ok(
    logs.some((l) => l.startsWith('mmdebstrap: I: ')),
    'mmdebstrap progress reaches the log',
  );
});

test("a failed build leaves nothing in the cache and shows the end of mmdebstrap's output", async () => {
  const cacheDir = path.join(tmp, 'cache-fail');
  const spec = `debootstrap:bookworm:${hostArchitecture()}:netroot-no-such-package`;
  const error = await rejects(() => buildDebootstrapBase(spec, { cacheDir }), /building debootstrap:\S+ failed \(mmdebstrap exit \d+\)/);
  assert.instance(error, NetrootError);
  assert.match(error.message, /netroot-no-such-package/);
  assert.equal(await readdir(path.join(cacheDir, 'debootstrap')), []);
});
