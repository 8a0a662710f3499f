/**
 * The boot server, run from the build's own files: dnsmasq with the generated
 * DHCP/TFTP config, and nfs-ganesha with the generated export file behind
 * rpcbind. They run in the boot namespace and in a mount namespace of their
 * own, where the paths the generated files name (exports.root, tftpRoot) are
 * bind mounts of the build output, and /run and /var/lib/nfs are private
 * (boot-layout.ts): nothing they write lands outside the lab's directory.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Cluster } from '../profile/resolve.js';
import { bootServerOutputs } from '../plan/boot-server-files.js';
import { startTool } from '../tools.js';
import type { Cleanup } from './cleanup.js';
import { bootServerMounts, layoutScript } from './boot-layout.js';
import { LabError } from './errors.js';
import { run, tryRun, waitFor } from './run-command.js';
import type { LabTopology } from './topology.js';

export interface BootServerFiles {
  /** out/…/<cluster>: holds dnsmasq/, exports/, tftp/ and rootfs/. */
  buildDir: string;
  /** The directory served as the export root (default: the build's rootfs/): the lab's export root, which the nodes run from. */
  exportRoot?: string;
  /** Where the lab keeps this server's config and logs. */
  workDir: string;
}

export interface BootServer {
  logs: { dnsmasq: string; ganesha: string; rpcbind: string };
}

function ganeshaConfig(cluster: Cluster, exportsFile: string): string {
  const { nfsServer } = cluster.profile.network;
  return [
    '# Written by the netroot lab: the server side around the export file the build wrote.',
    'NFS_CORE_PARAM {',
    '    Protocols = 3, 4;',
    `    Bind_addr = ${nfsServer};`,
    // NFSv3 clients (the initrd, libnfs) mount an export by its Pseudo path.
    '    Mount_Path_Pseudo = true;',
    '}',
    'NFSV4 {',
    '    RecoveryRoot = "/var/lib/nfs/ganesha";',
    '    Grace_Period = 5;',
    '    Lease_Lifetime = 5;',
    '}',
    'NFS_KRB5 { Active_krb5 = false; }',
    `%include "${exportsFile}"`,
    '',
  ].join('\n');
}

/**
 * Starts a process that holds a mount namespace of its own in the boot namespace's network, for
 * every daemon to join; returns the nsenter arguments that run a program in both.
 */
async function holdMountNamespace(ns: string, cleanup: Cleanup): Promise<(command: string, args: string[]) => string[]> {
  const holder = startTool('nsenter', [
    `--net=/run/netns/${ns}`,
    '--',
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sleep',
    'infinity',
  ]);
  cleanup.add('boot server mount namespace', () => holder.stop(0, 'SIGKILL'));
  const pid = holder.child.pid;
  if (!pid) throw new LabError('could not start the boot server namespace');
  // unshare execs sleep once the mount namespace exists; wait until /proc shows it.
  const ready = await waitFor(
    async () => ((await tryRun('readlink', [`/proc/${pid}/exe`])).stdout.endsWith('/sleep') ? true : undefined),
    5_000,
    100,
  );
  if (!ready) throw new LabError('the boot server mount namespace did not come up');
  return (command, args) => ['-t', String(pid), '-m', '-n', '--', command, ...args];
}

export async function startBootServer(
  cluster: Cluster,
  topology: LabTopology,
  files: BootServerFiles,
  cleanup: Cleanup,
): Promise<BootServer> {
  const { exports } = cluster.profile;
  const buildDir = path.resolve(files.buildDir);
  const workDir = path.resolve(files.workDir, 'boot-server');
  await mkdir(workDir, { recursive: true });
  // Laid out before anything starts: a layout the lab cannot make is refused first.
  const layout = layoutScript(
    bootServerMounts(exports, {
      exportRoot: files.exportRoot ? path.resolve(files.exportRoot) : path.join(buildDir, 'rootfs'),
      tftp: path.join(buildDir, 'tftp'),
    }),
    path.join(workDir, 'root'),
  );
  const inBoot = await holdMountNamespace(topology.boot.ns, cleanup);

  await mkdir(path.join(workDir, 'root'), { recursive: true });
  const mounts = [...layout, 'mkdir -p /run/rpcbind /var/lib/nfs/ganesha'];
  await run('nsenter', inBoot('sh', ['-euc', mounts.join('\n')]));

  const logs = {
    dnsmasq: path.join(workDir, 'dnsmasq.log'),
    ganesha: path.join(workDir, 'ganesha.log'),
    rpcbind: path.join(workDir, 'rpcbind.log'),
  };
  const daemon = (name: string, command: string, args: string[], log: string): void => {
    const running = startTool('nsenter', inBoot(command, args), { stdoutFile: log, stderrFile: `${log}.err` });
    cleanup.add(name, () => running.stop(5_000, 'SIGTERM'));
  };

  // rpcbind without -w: it keeps no state file (it would write one to the host's /run otherwise).
  daemon('rpcbind', 'rpcbind', ['-f'], logs.rpcbind);
  const conf = path.join(workDir, 'ganesha.conf');
  await writeFile(conf, ganeshaConfig(cluster, path.join(buildDir, bootServerOutputs(cluster.name).ganesha)), { mode: 0o600 });
  daemon(
    'nfs-ganesha',
    'ganesha.nfsd',
    ['-F', '-f', conf, '-L', logs.ganesha, '-p', '/run/ganesha.pid', '-N', 'NIV_EVENT'],
    path.join(workDir, 'ganesha.stdout'),
  );
  daemon(
    'dnsmasq',
    'dnsmasq',
    [
      '--keep-in-foreground',
      `--conf-file=${path.join(buildDir, 'dnsmasq', `${cluster.name}.conf`)}`,
      // DHCP and TFTP only: the profile's DNS servers are elsewhere.
      '--port=0',
      `--interface=${topology.boot.interface}`,
      '--bind-interfaces',
      '--pid-file=/run/dnsmasq.pid',
      '--dhcp-leasefile=/run/dnsmasq.leases',
      '--log-dhcp',
      `--log-facility=${logs.dnsmasq}`,
    ],
    path.join(workDir, 'dnsmasq.stdout'),
  );

  // Up when Ganesha has registered NFS with rpcbind and dnsmasq has its TFTP port.
  const { nfsServer } = cluster.profile.network;
  const up = await waitFor(
    async () => {
      const rpc = await tryRun('nsenter', inBoot('rpcinfo', ['-p', nfsServer]), { timeoutMs: 5_000 });
      const sockets = await tryRun('nsenter', inBoot('ss', ['-lun']), { timeoutMs: 5_000 });
      return /\bnfs\b/.test(rpc.stdout) && /\bmountd\b/.test(rpc.stdout) && /:69\b/.test(sockets.stdout) ? true : undefined;
    },
    60_000,
    500,
  );
  if (!up) throw new LabError(`the boot server did not come up within 60 s: see ${logs.ganesha}, ${logs.dnsmasq} and ${logs.rpcbind}`);
  return { logs };
}
