/**
 * The lab checks the programs it runs before anything starts (src/tools.ts
 * requirePrograms, as a build does): each must map to a Debian package that
 * scripts/install-lab-deps.sh installs, or the error's `apt-get install` line
 * would name a package the lab's own installer does not know.
 */
import { readFile } from 'node:fs/promises';
import * as assert from 'uvu/assert';
import { labPrograms } from '../../src/lab/lab.js';
import { debianPackage } from '../../src/tools.js';
import { test } from '../support/test.js';

/** The packages of install-lab-deps.sh's `packages=( … )` array, comments left out. */
async function installedByScript(): Promise<string[]> {
  const script = await readFile('scripts/install-lab-deps.sh', 'utf8');
  const array = /^packages=\(\n([\s\S]*?)^\)/m.exec(script)?.[1];
  assert.ok(array, 'install-lab-deps.sh has a packages=( … ) array');
  return array.split('\n').flatMap((line) => line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean));
}

test('every program the lab checks for comes from a package install-lab-deps.sh installs', async () => {
  const packages = await installedByScript();
  assert.ok(packages.includes('systemd-container') && packages.includes('qemu-system-arm'), `read the array: ${packages.join(' ')}`);
  const unknown = labPrograms(true)
    .map((program) => `${program} (${debianPackage(program)})`)
    .filter((named) => !packages.includes(/\((.*)\)$/.exec(named)![1]!));
  assert.equal(unknown, [], 'programs whose package the installer does not install');
});
