/**
 * A build that copies node trees from the base leaves the digests a deploy
 * compares them by, so a deploy of a fresh output reads no file back: every
 * file is found, and each digest is the file's own.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../../src/build.js';
import { scratchBuildOptions } from '../support/build.js';
import { loadHashCache, readManifest, treeDigestsFile } from '../../src/entries/manifest.js';
import { makeArmbianBase } from '../support/armbian-base.js';

let tmp: string;
let base: string;
const NODES = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven', 'opz3-4-top'];

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-tree-digests-'));
  base = path.join(tmp, 'armbian');
  await makeArmbianBase(base, path.join(tmp, 'work'));
  await writeFile(path.join(tmp, 'k3s'), '#!/bin/sh\necho k3s stand-in\n', { mode: 0o755 });
});
test.after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const options = (out: string) => scratchBuildOptions(tmp, path.resolve('profiles/opz3.yaml'), base, out);

/** The tree's manifest from the digests the build left; `read`: the files they did not cover. */
async function fromRecorded(out: string, node: string): Promise<{ manifest: Awaited<ReturnType<typeof readManifest>>; read: string[] }> {
  const clusterDir = path.join(tmp, out, 'opz3');
  const cache = await loadHashCache(treeDigestsFile(path.join(tmp, 'cache'), clusterDir, node));
  const read: string[] = [];
  const manifest = await readManifest(path.join(clusterDir, 'rootfs', node), [], cache, (p) => {
    read.push(p);
    return undefined;
  });
  return { manifest, read };
}

test('a fresh build leaves every tree file digest a deploy needs, each one that of its file', async () => {
  // Twice into fresh outputs: the second takes the base's digests from the cache, and must be as right.
  for (const out of ['out-1', 'out-2']) {
    await build(options(out));
    for (const node of NODES) {
      const { manifest, read } = await fromRecorded(out, node);
      assert.equal(read, [], `${out} ${node}: files the build left no digest for`);
      const truth = await readManifest(path.join(tmp, out, 'opz3', 'rootfs', node));
      assert.equal(manifest, truth, `${out} ${node}: the recorded digests are the files'`);
      assert.ok(Object.values(truth).filter((e) => e.t === 'f').length > 20, 'the tree has base files and overlay files');
    }
  }
});

test('a file changed after the build is read again, not taken from the recorded digests', async () => {
  await build(options('out-changed'));
  const node = NODES[0]!;
  const file = path.join(tmp, 'out-changed', 'opz3', 'rootfs', node, 'etc/os-release');
  const { manifest: before } = await fromRecorded('out-changed', node);
  await writeFile(file, 'X'.repeat(before['etc/os-release']!.s!));
  const { manifest, read } = await fromRecorded('out-changed', node);
  assert.equal(read, ['etc/os-release']);
  assert.equal(manifest, await readManifest(path.join(tmp, 'out-changed', 'opz3', 'rootfs', node)));
  assert.is.not(manifest['etc/os-release']!.h, before['etc/os-release']!.h);
});
