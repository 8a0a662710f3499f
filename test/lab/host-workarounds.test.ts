/** What the lab switches off because of its host is decided from the host, never from the profile. */
import { readFile } from 'node:fs/promises';
import * as assert from 'uvu/assert';
import { containerWorkarounds, hostWorkarounds } from '../../src/lab/host-workarounds.js';
import { loadProfile } from '../../src/profile/load.js';
import { test } from '../support/test.js';

const WITHOUT_SUNRPC = 'nodev\tsysfs\nnodev\ttmpfs\nnodev\tcgroup2\n\text4\nnodev\toverlay\n';

test("a host kernel without SUNRPC: nfs-common's rpc_pipefs mount is masked on every node, and the report says why", () => {
  const [only, ...more] = hostWorkarounds({ filesystems: WITHOUT_SUNRPC });
  assert.equal(more, []);
  assert.equal(only?.systemdArguments, ['systemd.mask=run-rpc_pipefs.mount']);
  assert.match(only!.switchedOff, /no SUNRPC/);
});

test('a host kernel with SUNRPC: nothing is switched off', () => {
  assert.equal(hostWorkarounds({ filesystems: `${WITHOUT_SUNRPC}nodev\trpc_pipefs\n` }), []);
});

test('the lab profiles carry no host workaround of their own', async () => {
  for (const name of ['opz3-lab', 'opz4-lab', 'opz5-lab']) {
    const { profile } = await loadProfile(name);
    assert.equal(profile.board.append ?? [], [], `${name} board.append`);
    const text = await readFile(`profiles/${name}.yaml`, 'utf8');
    assert.not.match(text, /systemd\.mask/, `profiles/${name}.yaml`);
    // What a container cannot do is the lab's business: the profile keeps a board's storage and Longhorn.
    assert.not.match(text, /enabled: false/, `profiles/${name}.yaml`);
    assert.ok(profile.storage.enabled && profile.longhorn.enabled, `${name}: storage and Longhorn as on a board`);
  }
});

test('local storage and Longhorn on: each node gets a directory for its local filesystem, and iscsid is masked', () => {
  const found = containerWorkarounds({ localStorage: true, longhorn: true });
  assert.equal(
    found.map((w) => [w.localStorage ?? false, w.systemdArguments]),
    [
      [true, []],
      [false, ['systemd.mask=iscsid.service', 'systemd.mask=iscsid.socket']],
    ],
  );
  for (const w of found) assert.match(w.switchedOff, /container/);
});

test('local storage and Longhorn off in the profile: the lab has nothing to stand in for', () => {
  assert.equal(containerWorkarounds({ localStorage: false, longhorn: false }), []);
  assert.equal(
    containerWorkarounds({ localStorage: true, longhorn: false }).map((w) => w.localStorage),
    [true],
  );
});
