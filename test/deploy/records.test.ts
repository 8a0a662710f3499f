/**
 * netroot's records on an export root: an export root belongs to one cluster
 * (another cluster's deploy, plan or rollback is refused, naming both), and a
 * damaged record is a clear exit 2 that changes nothing.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from '../support/test.js';
import { deploy } from '../../src/deploy/index.js';
import { readManifest } from '../../src/entries/manifest.js';
import { opz3With } from '../profile/helpers.js';
import { assertSameTree, cli } from './support.js';
import { places, type Places } from './places.js';

let w: Places;
const Records = suite("an export root's records");
Records.before(async () => {
  w = await places('netroot-records-');
  await w.write('opz3', opz3With());
  // Another cluster: its own name, VIP and nodes' addresses.
  await w.write('other', opz3With(['cluster: { name: opz3 }', 'cluster: { name: pi5 }']));
  await w.build('opz3');
  await w.build('other');
});
Records.after(async () => w?.cleanup());

Records("another cluster's deploy, plan and rollback are refused with exit 2, naming both clusters; nothing is written", async () => {
  const { root, options, flags } = w.place('owned');
  await deploy(options('opz3'));
  const before = await readManifest(root);
  for (const command of ['deploy', 'plan', 'rollback']) {
    const run = await cli(w.tmp, [command, ...flags('other')], w.env);
    assert.is(run.code, 2, `${command}: ${run.stderr}`);
    assert.match(
      run.stderr,
      /is the export root of cluster opz3, and this profile is cluster pi5: an export root belongs to one cluster\. Nothing was changed; give pi5 its own/,
      command,
    );
  }
  assertSameTree(await readManifest(root), before, 'the export root');
  assert.equal((await deploy(options('opz3'))).deployed, [], 'its own cluster deploys there as before');
});

Records('a damaged record: exit 2 naming the file and what to do, not an internal error; nothing written', async () => {
  const { root, options, flags } = w.place('damaged-record');
  await deploy(options('opz3'));
  const record = path.join(root, '.netroot/clusters/opz3.json');
  await writeFile(record, '[]\n');
  const before = await readManifest(root);
  const run = await cli(w.tmp, ['deploy', ...flags('opz3')], w.env);
  assert.is(run.code, 2, run.stderr);
  assert.match(run.stderr, new RegExp(`^build-images: ${record} cannot be read: it should be the record of cluster opz3`));
  assert.not.match(run.stderr, /internal error/);
  assertSameTree(await readManifest(root), before, 'the export root');
});
