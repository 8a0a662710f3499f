/**
 * The k3s download, against a local server serving a local file: checked
 * against the published sha256, cached, refused when it does not match, and a
 * clear message when offline.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { resolveK3sBinary } from '../../src/k3s/binary.js';
import { rejects } from '../support/assert.js';

const VERSION = 'v1.29.6+k3s1';
const BINARY = Buffer.from('#!/bin/sh\necho "k3s stand-in for tests"\n');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let tmp: string;
let server: Server;
let url: string;
let requests: string[];
let served: { binary: Buffer; sums: string };

test.before.each(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-k3s-'));
  requests = [];
  served = { binary: BINARY, sums: `${sha(BINARY)}  k3s-arm64\n${'0'.repeat(64)}  k3s-arm64.tar\n` };
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const prefix = `/${encodeURIComponent(VERSION)}/`;
    if (req.url === `${prefix}sha256sum-arm64.txt`) return res.end(served.sums);
    if (req.url === `${prefix}k3s-arm64`) return res.end(served.binary);
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after.each(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(tmp, { recursive: true, force: true });
});

test('downloads the asset for the architecture, checks the published sha256, caches it', async () => {
  const first = await resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url });
  assert.is(first.source, 'download');
  assert.is(first.sha256, sha(BINARY));
  assert.equal(await readFile(first.path), BINARY);
  assert.is((await stat(first.path)).mode & 0o111, 0o111, 'executable');
  const second = await resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url });
  assert.is(second.source, 'cache');
  assert.is(requests.filter((r) => r.endsWith('/k3s-arm64')).length, 1, 'fetched once');
});

test('a binary whose sha256 differs from the published one is refused and not cached', async () => {
  served.binary = Buffer.from('tampered');
  const error = await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url }),
    /has sha256 [0-9a-f]{64}, but the release publishes/,
  );
  assert.ok(error);
  assert.not.ok(existsSync(path.join(tmp, 'k3s', VERSION, 'k3s-arm64')));
});

test('a release that publishes no sum for the asset is refused', async () => {
  served.sums = `${sha(BINARY)}  k3s\n`;
  await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url }),
    /lists no sha256 for k3s-arm64; refusing an unchecked binary/,
  );
});

test('offline: the error names both ways to give the binary', async () => {
  await new Promise((resolve) => server.close(resolve));
  const error = await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url }),
    /cannot be reached/,
  );
  assert.match(error.message, 'k3s.binary: PATH in the profile or --k3s-binary PATH');
  assert.is((error as { exitCode?: number }).exitCode, 2);
  server = createServer().listen(0, '127.0.0.1');
});

test('a damaged cache entry is fetched again', async () => {
  const first = await resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url });
  await writeFile(first.path, 'bit rot');
  const again = await resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, releaseUrl: url });
  assert.is(again.source, 'download');
  assert.equal(await readFile(again.path), BINARY);
});

test('a given binary is used as it is, without the network', async () => {
  const given = path.join(tmp, 'my-k3s');
  await writeFile(given, BINARY);
  const result = await resolveK3sBinary({
    version: VERSION,
    arch: 'arm64',
    cacheDir: tmp,
    binary: given,
    releaseUrl: 'http://127.0.0.1:1',
  });
  assert.equal([result.source, result.path, result.sha256], ['given', given, sha(BINARY)]);
  await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, binary: path.join(tmp, 'missing') }),
    /does not exist/,
  );
});

test('a given program must run on the base: another architecture or a file that is no program is refused; a script is a stand-in', async () => {
  // /bin/true is a program of this machine (amd64 here; the test says which it is).
  const machine = process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : undefined;
  assert.ok(machine, `this test knows amd64 and arm64 machines, not ${process.arch}`);
  const other = machine === 'amd64' ? 'arm64' : 'amd64';
  const ok = await resolveK3sBinary({ version: VERSION, arch: machine!, cacheDir: tmp, binary: '/bin/true' });
  assert.is(ok.source, 'given');
  await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: other, cacheDir: tmp, binary: '/bin/true' }),
    new RegExp(`^the k3s binary /bin/true is a 64-bit ELF program for .*, but the base is ${other}: the nodes could not run it`),
  );
  const text = path.join(tmp, 'eight-bytes');
  await writeFile(text, 'not k3s\n');
  const error = await rejects(
    () => resolveK3sBinary({ version: VERSION, arch: 'arm64', cacheDir: tmp, binary: text }),
    /is neither a program \(ELF\) nor a script \(#!\): it is 8 bytes of text with no ELF header, and the base is arm64/,
  );
  assert.match(error.message, text);
  assert.is((error as { exitCode?: number }).exitCode, 2);
});

/** The first 20 bytes of an ELF file: e_ident (magic, class, data, version), e_type, e_machine. */
function elfHeader(bits: 32 | 64, machine: number, endian: 'le' | 'be' = 'le'): Buffer {
  const b = Buffer.alloc(64);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = bits === 32 ? 1 : 2;
  b[5] = endian === 'le' ? 1 : 2;
  b[6] = 1;
  if (endian === 'le') {
    b.writeUInt16LE(2, 16);
    b.writeUInt16LE(machine, 18);
  } else {
    b.writeUInt16BE(2, 16);
    b.writeUInt16BE(machine, 18);
  }
  return b;
}

test("the ELF header decides: machine and word size must be the base's, a truncated header is refused; each error names the file, what it is and the base", async () => {
  const cases: { name: string; bytes: Buffer; arch: string; error?: RegExp }[] = [
    { name: 'aarch64', bytes: elfHeader(64, 183), arch: 'arm64' },
    { name: 'arm32', bytes: elfHeader(32, 40), arch: 'armhf' },
    { name: 'x86-64', bytes: elfHeader(64, 62), arch: 'amd64' },
    {
      name: 'x86-64-on-arm64',
      bytes: elfHeader(64, 62),
      arch: 'arm64',
      error:
        /is a 64-bit ELF program for x86-64, but the base is arm64: the nodes could not run it; give the k3s release's binary for arm64 \(k3s-arm64\)/,
    },
    {
      name: 'arm32-on-arm64',
      bytes: elfHeader(32, 40),
      arch: 'arm64',
      error: /is a 32-bit ELF program for 32-bit ARM, but the base is arm64/,
    },
    {
      name: 'aarch64-on-armhf',
      bytes: elfHeader(64, 183),
      arch: 'armhf',
      error: /is a 64-bit ELF program for arm64 \(AArch64\), but the base is armhf/,
    },
    // x32: x86-64's machine with 32-bit words, which amd64 k3s is not.
    { name: 'x32', bytes: elfHeader(32, 62), arch: 'amd64', error: /is a 32-bit ELF program for x86-64, but the base is amd64/ },
    {
      name: 'big-endian-s390',
      bytes: elfHeader(64, 22, 'be'),
      arch: 'arm64',
      error: /is a 64-bit ELF program for machine 22, but the base is arm64/,
    },
    {
      name: 'truncated',
      bytes: elfHeader(64, 183).subarray(0, 8),
      arch: 'arm64',
      error: /is a truncated ELF file \(8 bytes\), not a program the nodes \(arm64\) can run/,
    },
    {
      name: 'binary-data',
      bytes: Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]),
      arch: 'arm64',
      error: /it is data with no ELF header, and the base is arm64/,
    },
    { name: 'empty', bytes: Buffer.alloc(0), arch: 'arm64', error: /it is 0 bytes of text with no ELF header/ },
  ];
  for (const c of cases) {
    const given = path.join(tmp, c.name);
    await writeFile(given, c.bytes);
    const run = () => resolveK3sBinary({ version: VERSION, arch: c.arch, cacheDir: tmp, binary: given, releaseUrl: 'http://127.0.0.1:1' });
    if (!c.error) {
      assert.is((await run()).source, 'given', c.name);
      continue;
    }
    const error = await rejects(run, c.error);
    assert.ok(error.message.includes(`the k3s binary ${given} `), c.name);
    assert.is((error as { exitCode?: number }).exitCode, 2, c.name);
  }
});
