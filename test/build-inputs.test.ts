/**
 * Whether a build is still the build of its inputs: each input that differs is
 * named, in words, and nothing else counts (staleReasons is pure).
 */
import * as assert from 'uvu/assert';
import { test } from './support/test.js';
import { staleReasons, type BuildInputs } from '../src/build-inputs.js';

const BUILT: BuildInputs = {
  profile: 'p1',
  overlays: 'o1',
  base: { spec: '/srv/bases/armbian', identity: 'directory:d1' },
  k3s: { binary: '/srv/k3s', sha256: 'k1' },
  generator: 'netroot 0.1.0',
};

const CASES: [name: string, now: BuildInputs, reasons: string[]][] = [
  ['the same inputs: current', BUILT, []],
  ['the profile edited', { ...BUILT, profile: 'p2' }, ['the profile changed since']],
  ['a template edited', { ...BUILT, overlays: 'o2' }, ['the overlay templates changed since']],
  ['another netroot', { ...BUILT, generator: 'netroot 0.2.0' }, ['netroot 0.1.0 made it, and this is netroot 0.2.0']],
  [
    'the base changed',
    { ...BUILT, base: { spec: '/srv/bases/armbian', identity: 'directory:d2' } },
    ['the base /srv/bases/armbian changed since'],
  ],
  ['the base is gone', { ...BUILT, base: { spec: '/srv/bases/armbian' } }, ['the base /srv/bases/armbian cannot be read now']],
  [
    'another base',
    { ...BUILT, base: { spec: '/srv/bases/other', identity: 'x' } },
    ['it was built from the base /srv/bases/armbian, not /srv/bases/other'],
  ],
  ['the k3s binary replaced', { ...BUILT, k3s: { binary: '/srv/k3s', sha256: 'k2' } }, ['the k3s binary /srv/k3s changed since']],
  [
    'a debootstrap base not built in this cache: known by its spec',
    { ...BUILT, base: { spec: 'debootstrap:bookworm:arm64' } },
    ['it was built from the base /srv/bases/armbian, not debootstrap:bookworm:arm64'],
  ],
];

for (const [name, now, reasons] of CASES) test(`build inputs: ${name}`, () => assert.equal(staleReasons(BUILT, now), reasons));

test('build inputs: a debootstrap base whose tarball this cache lacks is not stale for that alone', () => {
  const deboot = { ...BUILT, base: { spec: 'debootstrap:bookworm:arm64', identity: 'tarball:t1' } };
  assert.equal(staleReasons(deboot, { ...deboot, base: { spec: 'debootstrap:bookworm:arm64' } }), []);
});

test('build inputs: a build that records none (an older netroot) is stale', () => {
  assert.equal(staleReasons(undefined, BUILT), ['it does not record what it was built from (an older netroot made it)']);
});
