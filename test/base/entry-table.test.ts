import * as assert from 'uvu/assert';
import { EntryTable, EntryTableBuilder, type BaseEntry } from '../../src/base/entry-table.js';
import { suite } from '../support/test.js';

const test = suite('base/entry-table');

const dir = (p: string): BaseEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 100 });
const file = (p: string, extra: Partial<BaseEntry> = {}): BaseEntry => ({
  path: p,
  type: 'file',
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  size: 12,
  mtime: 1_700_000_000,
  ...extra,
});

/** A walk's order (each directory's names sorted, depth first) is not path order: `a/b` comes before `a-b` there. */
function walked(): EntryTable {
  const builder = new EntryTableBuilder();
  for (const entry of [
    dir(''),
    dir('a'),
    file('a/b'),
    file('a-b', { mode: 0o4755, uid: 0, gid: 0, xattrs: { 'security.capability': Buffer.from('01000002', 'hex') } }),
    { ...dir('dev'), mode: 0o755 },
    { path: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 5, devmajor: 1, devminor: 3 } as BaseEntry,
    { path: 'etc', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 6, linkname: '/' } as BaseEntry,
    { path: 'a/c', type: 'hardlink', mode: 0o644, uid: 1000, gid: 1000, size: 0, mtime: 1_700_000_000, linkname: 'a/b' } as BaseEntry,
  ])
    builder.add(entry);
  return builder.finish('/bases/one');
}

test('entries come out sorted by path, each field as it went in, a file with its bytes at root/path', () => {
  const table = walked();
  assert.equal(
    [...table].map((e) => e.path),
    ['', 'a', 'a-b', 'a/b', 'a/c', 'dev', 'dev/null', 'etc'],
  );
  assert.equal(table.get('a-b'), {
    path: 'a-b',
    type: 'file',
    mode: 0o4755,
    uid: 0,
    gid: 0,
    size: 12,
    mtime: 1_700_000_000,
    xattrs: { 'security.capability': Buffer.from('01000002', 'hex') },
    content: '/bases/one/a-b',
  });
  assert.equal(table.get('dev/null'), {
    path: 'dev/null',
    type: 'char',
    mode: 0o666,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 5,
    devmajor: 1,
    devminor: 3,
  });
  assert.is(table.get('etc')!.linkname, '/');
  assert.is(table.get('a/c')!.linkname, 'a/b');
  assert.is(table.get('a/c')!.content, undefined, 'a hard link has no bytes of its own');
});

test('a path is found by bisection; a missing one is not, and lowerBound gives where it would go', () => {
  const table = walked();
  assert.is(table.indexOf(''), 0);
  assert.is(table.indexOf('a/b'), 3);
  assert.is(table.get('a/x'), undefined);
  assert.not.ok(table.has('b'));
  assert.is(table.lowerBound('a/'), 3, 'everything below a/ is one run');
  assert.is(table.lowerBound('zzz'), table.length);
  assert.equal(
    [...table.withXattrs()].map((e) => e.path),
    ['a-b'],
  );
});

test('withChanges replaces an entry at its path and inserts the others in order, and leaves the table it came from alone', () => {
  const table = walked();
  const changed = table.withChanges([
    file('usr/local/bin/k3s', { content: '/elsewhere/k3s', size: 64 }),
    dir('usr'),
    dir('usr/local'),
    dir('usr/local/bin'),
    file('a/b', { content: '/elsewhere/b', size: 3 }),
  ]);
  assert.equal(
    [...changed].map((e) => e.path),
    ['', 'a', 'a-b', 'a/b', 'a/c', 'dev', 'dev/null', 'etc', 'usr', 'usr/local', 'usr/local/bin', 'usr/local/bin/k3s'],
  );
  assert.is(changed.get('a/b')!.content, '/elsewhere/b');
  assert.is(changed.get('a/b')!.size, 3);
  assert.is(changed.get('usr/local/bin/k3s')!.content, '/elsewhere/k3s');
  assert.is(changed.get('a-b')!.xattrs!['security.capability']!.toString('hex'), '01000002', 'unchanged rows keep their xattrs');
  assert.equal(changed.get('dev/null')!.devminor, 3);
  assert.is(table.get('a/b')!.content, '/bases/one/a/b');
  assert.is(table.length, 8);
});

test('the stored form reads back equal under another root; bytes that are not one are refused, not misread', () => {
  const table = walked().withChanges([file('opt/x', { content: '/elsewhere/x' })]);
  const bytes = Buffer.concat(table.encode());
  const back = EntryTable.decode(bytes, '/bases/two')!;
  const strip = (t: EntryTable) => [...t].map((e) => ({ ...e, content: e.content?.replace(/^\/bases\/(one|two)/, 'ROOT') }));
  assert.equal(strip(back), strip(table));
  assert.is(back.get('a/b')!.content, '/bases/two/a/b');
  assert.is(back.get('opt/x')!.content, '/elsewhere/x');
  assert.is(EntryTable.decode(bytes.subarray(0, bytes.length - 1), '/r'), undefined, 'truncated');
  assert.is(EntryTable.decode(Buffer.from('{"version":1,"entries":[]}'), '/r'), undefined, 'the old JSON index');
  const empty = new EntryTableBuilder().finish('/r');
  assert.is(EntryTable.decode(Buffer.concat(empty.encode()), '/r')!.length, 0);
});

test('a path with non-ASCII characters survives the stored form', () => {
  const builder = new EntryTableBuilder();
  builder.add(dir(''));
  builder.add(file('usr/share/doc/café/ünïcödé 日本'));
  const table = builder.finish('/r');
  const back = EntryTable.decode(Buffer.concat(table.encode()), '/r')!;
  assert.ok(back.has('usr/share/doc/café/ünïcödé 日本'));
});
