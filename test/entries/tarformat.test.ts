import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { writeArtifacts } from '../support/artifacts.js';
import { openBase } from '../../src/base/open.js';
import { encodeHeader, END_OF_ARCHIVE, padding, readTar, type TarHeader } from '../../src/entries/tarformat.js';
import { cleanup, extract, isRoot, snapshot, tempDir, rootCanCheck } from '../support/rootfs.js';

const test = suite('entries/tarformat');
test.after(cleanup);

const LONG = `${'deep-directory/'.repeat(12)}${'x'.repeat(120)}`;
const LONG_TARGET = `../${'y'.repeat(150)}`;
// cap_setuid,cap_net_raw+ep: byte 4 is 0x80, which a UTF-8 round trip would destroy.
const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');

async function oddTree(root: string): Promise<void> {
  fs.mkdirSync(`${root}/${LONG}`.slice(0, `${root}/${LONG}`.lastIndexOf('/')), { recursive: true });
  fs.writeFileSync(`${root}/${LONG}`, 'long name\n');
  fs.symlinkSync(LONG_TARGET, `${root}/long-link`);
  fs.writeFileSync(`${root}/setuid-cap`, 'cap\n');
  fs.writeFileSync(`${root}/ünïcödé`, 'utf-8 name\n');
  if (isRoot) {
    fs.chownSync(`${root}/setuid-cap`, 3_000_000, 3_000_001); // beyond 7 octal digits
    await execa('setcap', ['cap_setuid,cap_net_raw+ep', `${root}/setuid-cap`]);
  }
}

async function members(bytes: Buffer) {
  const out = [];
  for await (const m of readTar(Readable.from([bytes]))) {
    const chunks: Buffer[] = [];
    for await (const c of m.body) chunks.push(c);
    out.push({ ...m.header, data: Buffer.concat(chunks).toString() });
  }
  return out;
}

test('encoded headers read back through GNU tar: long names and links, big ids, binary xattrs', async () => {
  const t = await tempDir('encode');
  const entries: TarHeader[] = [
    { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 5 },
    {
      path: LONG,
      type: 'file',
      mode: 0o640,
      uid: 3_000_000,
      gid: 7,
      size: 3,
      mtime: 5,
      xattrs: { 'security.capability': CAP, 'user.b': Buffer.from([0, 0xff]) },
    },
    { path: 'l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 5, linkname: LONG_TARGET },
    { path: 'h', type: 'hardlink', mode: 0o640, uid: 0, gid: 0, size: 0, mtime: 5, linkname: LONG },
  ];
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(encodeHeader(e));
    if (e.type === 'file') parts.push(Buffer.from('abc'), Buffer.alloc(padding(3)));
  }
  parts.push(END_OF_ARCHIVE);
  const archive = Buffer.concat(parts);
  fs.writeFileSync(`${t}/a.tar`, archive);
  const listing = (await execa('tar', ['--numeric-owner', '-tvf', `${t}/a.tar`])).stdout;
  assert.match(listing, new RegExp(`-rw-r----- 3000000/7 +3 .* \\./${LONG}`));
  assert.match(listing, new RegExp(`\\./l -> \\${LONG_TARGET}`));
  assert.match(listing, new RegExp(`\\./h link to \\./${LONG}`));
  // Our own reader gets back exactly what was written.
  const read = await members(archive);
  assert.equal(
    read.map((m) => m.name),
    ['./', `./${LONG}`, './l', './h'],
  );
  assert.ok(read[1]!.xattrs['security.capability']!.equals(CAP));
  assert.ok(read[1]!.xattrs['user.b']!.equals(Buffer.from([0, 0xff])));
  assert.is(read[1]!.data, 'abc');
  assert.is(read[2]!.linkname, LONG_TARGET);
  if (rootCanCheck()) {
    await extract(`${t}/a.tar`, `${t}/x`);
    assert.match((await execa('getcap', [`${t}/x/${LONG}`])).stdout, /cap_net_raw,cap_setuid=ep|cap_setuid,cap_net_raw=ep/);
    assert.is(fs.statSync(`${t}/x/${LONG}`).uid, 3_000_000);
  }
});

for (const format of ['gnu', 'pax', 'oldgnu']) {
  test(`GNU tar --format=${format} archives index like their directory`, async () => {
    const t = await tempDir(format);
    await oddTree(`${t}/src`);
    const xattrs = format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : []; // GNU tar stores xattrs only in pax
    await execa('tar', [...xattrs, `--format=${format}`, '-C', `${t}/src`, '-cf', `${t}/a.tar`, '.']);
    const fromDir = await openBase(`${t}/src`);
    const fromTar = await openBase(`${t}/a.tar`, { cacheDir: `${t}/cache` });
    const view = (b: typeof fromDir) =>
      [...b.entries].map((e) => ({
        path: e.path,
        type: e.type,
        uid: e.uid,
        gid: e.gid,
        linkname: e.linkname,
        caps: e.xattrs?.['security.capability']?.toString('hex'),
      }));
    // Only pax keeps xattrs; gnu and oldgnu do not, so compare those without.
    const expected = view(fromDir).map((e) => (format === 'pax' ? e : { ...e, caps: undefined }));
    assert.equal(view(fromTar), expected);
    if (format === 'pax' && rootCanCheck())
      assert.is(fromTar.entries.get('setuid-cap')!.xattrs!['security.capability']!.toString('hex'), CAP.toString('hex'));
  });
}

test('odd entries survive a full round trip: directory -> artifact -> GNU tar extraction', async () => {
  const t = await tempDir('roundtrip');
  await oddTree(`${t}/src`);
  const base = await openBase(`${t}/src`);
  await writeArtifacts(base, [{ name: 'n', files: [] }], `${t}/out`, { sourceDateEpoch: 0, formats: ['gz'] });
  await extract(`${t}/out/n.tar.gz`, `${t}/x`);
  assert.equal(await snapshot(`${t}/x`), await snapshot(`${t}/src`));
});

test('a corrupt header is reported with its offset', async () => {
  const block = encodeHeader({ path: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 });
  block[0] = 0x62; // checksum no longer matches
  const error = await members(Buffer.concat([block, END_OF_ARCHIVE])).catch((e: Error) => e);
  assert.match(String(error), /corrupt tar header at byte 0/);
});
