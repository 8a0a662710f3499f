/** What the lab switches off because of its host is decided from the host, never from the profile. */
import { readFile } from 'node:fs/promises';
import * as assert from 'uvu/assert';
import { hostWorkarounds } from '../../src/lab/host-workarounds.js';
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
  }
});
