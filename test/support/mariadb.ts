/**
 * A throwaway MariaDB server for tests: its own datadir and socket in a
 * temporary directory, TCP on loopback at a free port, stopped and removed by
 * stop(). Every wait is bounded.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';

export interface TestMariadb {
  port: number;
  socket: string;
  /** Runs SQL as root over the socket. */
  sql(statement: string): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function startMariadb(): Promise<TestMariadb> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'netroot-mariadb-'));
  const datadir = path.join(dir, 'data');
  const socket = path.join(dir, 'mysqld.sock');
  const port = await freePort();
  await execa(
    'mariadb-install-db',
    ['--no-defaults', `--datadir=${datadir}`, '--user=root', '--auth-root-authentication-method=socket', '--skip-test-db'],
    { timeout: 120_000 },
  );
  const server: ResultPromise = execa(
    'mariadbd',
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--user=root',
      '--skip-name-resolve',
      `--pid-file=${path.join(dir, 'pid')}`,
      '--log-error=' + path.join(dir, 'error.log'),
    ],
    { reject: false, stdin: 'ignore' },
  );
  const sql = async (statement: string): Promise<string> =>
    String(
      (
        await execa('mariadb', ['--no-defaults', `--socket=${socket}`, '--user=root', '--batch', '--skip-column-names', '-e', statement], {
          timeout: 20_000,
        })
      ).stdout,
    );
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ping = await execa('mariadb-admin', ['--no-defaults', `--socket=${socket}`, '--user=root', 'ping'], {
      reject: false,
      timeout: 5_000,
    });
    if (ping.exitCode === 0) break;
    if (Date.now() > deadline) {
      server.kill('SIGKILL');
      throw new Error(`the test MariaDB did not start within 60 s (see ${dir}/error.log)`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    port,
    socket,
    sql,
    async stop() {
      server.kill('SIGTERM');
      const stopped = await Promise.race([server.then(() => true), new Promise((r) => setTimeout(() => r(false), 20_000))]);
      if (!stopped) server.kill('SIGKILL');
      await server;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
