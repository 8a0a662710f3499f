/**
 * A real sshd on a loopback port, with its own config, host key and
 * authorized_keys in a temp dir and a throwaway client key, for deploying to
 * `root@127.0.0.1:DIR`. It fails loudly (never skips) when sshd, ssh or rsync
 * is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';

export interface Sshd {
  port: number;
  /** argv for `--ssh` / the deploy's `ssh` option. */
  ssh: string[];
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';

/** What is missing to run the ssh tests, as a message naming the Debian packages; undefined when nothing is. */
export async function sshdMissing(): Promise<string | undefined> {
  const missing: string[] = [];
  if (!existsSync(SSHD)) missing.push('sshd (openssh-server)');
  for (const [program, pkg] of [
    ['ssh', 'openssh-client'],
    ['ssh-keygen', 'openssh-client'],
    ['rsync', 'rsync'],
  ] as const) {
    if ((await execa('sh', ['-c', `command -v ${program}`], { reject: false })).exitCode !== 0) missing.push(`${program} (${pkg})`);
  }
  return missing.length
    ? `the ssh deploy tests need ${missing.join(', ')}: apt-get install openssh-server openssh-client rsync`
    : undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('data', () => {
      socket.destroy();
      resolve(true);
    }); // sshd's banner: it is really serving
    socket.once('error', () => resolve(false));
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export async function startSshd(dir: string): Promise<Sshd> {
  const problem = await sshdMissing();
  if (problem) throw new Error(problem);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const hostKey = path.join(dir, 'host_ed25519');
  const clientKey = path.join(dir, 'client_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', clientKey]);
  await writeFile(path.join(dir, 'authorized_keys'), await readFile(`${clientKey}.pub`), { mode: 0o600 });
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      // A shell that sshd starts reads ~/.bashrc when SHLVL says it is the first (Debian's bash): this host's
      // (pyenv's init, here) is no part of a node's and cost every command of a test a dozen processes.
      'SetEnv SHLVL=1',
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      '',
    ].join('\n'),
  );
  // sshd insists on its privilege separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config, '-p', String(port), '-o', 'ListenAddress=127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await accepting(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sshd did not start on 127.0.0.1:${port} within 10 s: ${log.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ssh = [
    'ssh',
    '-p',
    String(port),
    '-i',
    clientKey,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=10',
  ];
  return {
    port,
    ssh,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
