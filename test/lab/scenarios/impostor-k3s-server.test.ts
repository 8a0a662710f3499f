/** What the impostor-k3s-server scenario reads from the impostor's log (Python http.server's request lines). */
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from '../../support/test.js';
import { requestsIn } from '../../../src/lab/scenarios/impostor-k3s-server.js';

test('requests are read from the log http.server writes, one per request line, other lines ignored', async () => {
  // The log of a real http.server that was asked for /cacerts and then /join.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-impostor-'));
  try {
    await writeFile(path.join(dir, 'cacerts'), 'x\n');
    const server = execa('python3', ['-u', '-m', 'http.server', '--bind', '127.0.0.1', '--directory', dir, '0'], {
      reject: false,
      all: true,
      stdin: 'ignore',
    });
    let log = '';
    server.all?.on('data', (chunk: Buffer) => (log += String(chunk)));
    let port: string | undefined;
    for (let i = 0; i < 100 && !port; i++) {
      port = /port (\d+)/.exec(log)?.[1];
      if (!port) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(port, `http.server said where it listens: ${log}`);
    assert.is((await fetch(`http://127.0.0.1:${port}/cacerts`)).status, 200);
    assert.is((await fetch(`http://127.0.0.1:${port}/join`)).status, 404);
    for (let i = 0; i < 50 && !log.includes('/join'); i++) await new Promise((r) => setTimeout(r, 100));
    server.kill('SIGKILL');
    await server;
    assert.equal(requestsIn(log), [
      { from: '127.0.0.1', path: '/cacerts' },
      { from: '127.0.0.1', path: '/join' },
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a log with no request line gives none', () => {
  assert.equal(requestsIn('Serving HTTP on 192.0.2.50 port 6443 (http://192.0.2.50:6443/) ...\n'), []);
  assert.equal(requestsIn(''), []);
});
