/**
 * Ctrl-C during a build, through the real command line (the whole process
 * group gets SIGINT, as on a terminal): the previous output is as it was, no
 * hidden staging or old output is left in --out, and the run says it was
 * stopped, not that a program failed with no message; the process ends by
 * the signal.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from './support/test.js';
import { readManifest } from '../src/entries/manifest.js';
import { makeArmbianBase } from './support/armbian-base.js';
import { assertSameTree, cli, killAt } from './deploy/support.js';
import { opz3With, tempDir } from './profile/helpers.js';

const Stop = suite('Ctrl-C during a build');
let dir: string;
let env: NodeJS.ProcessEnv;
let args: (profile: string) => string[];

Stop.before(async () => {
  dir = await tempDir('netroot-stop-');
  await makeArmbianBase(path.join(dir, 'base'), path.join(dir, 'work'));
  await writeFile(path.join(dir, 'k3s'), '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
  await mkdir(path.join(dir, 'profiles'));
  await writeFile(path.join(dir, 'profiles/a.yaml'), opz3With());
  await writeFile(path.join(dir, 'profiles/b.yaml'), opz3With(['advertInterval: 1', 'advertInterval: 2']));
  env = {
    PATH: process.env.PATH,
    SOURCE_DATE_EPOCH: '1700000000',
    NETROOT_SECRETS_DIR: path.join(dir, 'secrets'),
    XDG_CACHE_HOME: path.join(dir, 'xdg'),
  };
  args = (profile) => [
    'build',
    '-p',
    path.join(dir, 'profiles', `${profile}.yaml`),
    '--base',
    'base',
    '--k3s-binary',
    'k3s',
    '--format',
    'tree,tar',
    '--out',
    'out',
  ];
  const first = await cli(dir, args('a'), env);
  assert.is(first.code, 0, first.stderr);
});

// Where the signal lands: a step of the rebuild, then a delay.
const POINTS: [string, number][] = [
  ['writing node trees', 0],
  ['writing node trees', 40],
  ['packing node artifacts', 0],
  ['packing node artifacts', 30],
];

for (const [marker, delay] of POINTS)
  Stop(
    `SIGINT ${delay} ms after "${marker}": stopped and said so; the previous output whole, nothing hidden left in --out`,
    { timeout: 120_000 },
    async () => {
      const before = await readManifest(path.join(dir, 'out'));
      const { signal, stderr } = await killAt(dir, args('b'), env, marker, delay, 'SIGINT');
      // A rebuild that finished before the signal is allowed; one that stopped must say so and leave the previous output.
      if (signal === null) return assert.not.match(stderr, /failed|internal error/, stderr);
      assert.is(signal, 'SIGINT', stderr);
      // The signal came while the new output was being moved in (a loaded machine makes this likely): that is
      // finished, said so, and the new output is whole.
      if (/as the new output was being moved into place/.test(stderr)) {
        assert.match(
          stderr,
          /build-images: stopped by SIGINT as the new output was being moved into place: that finished, and the new output is whole\n$/,
        );
        assert.equal(await readdir(path.join(dir, 'out')), ['opz3'], 'no hidden staging or old output');
        const conf = await readFile(path.join(dir, 'out/opz3/nodes/opz3-1-onder/etc/keepalived/keepalived.conf'), 'utf8');
        return assert.match(conf, /advert_int 2\n/, 'the new output');
      }
      assert.match(stderr, /build-images: stopped by SIGINT; what was being written was removed, and the previous output is as it was\n$/);
      assert.not.match(stderr, /failed|no message|internal error/);
      assert.equal(await readdir(path.join(dir, 'out')), ['opz3'], 'no hidden staging or old output');
      assertSameTree(await readManifest(path.join(dir, 'out')), before, 'the previous output');
    },
  );

Stop('a build that succeeds has removed the previous output when it exits', async () => {
  const run = await cli(dir, args('b'), env);
  assert.is(run.code, 0, run.stderr);
  assert.equal(await readdir(path.join(dir, 'out')), ['opz3']);
});
