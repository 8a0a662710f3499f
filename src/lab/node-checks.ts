/**
 * What the cold start checks inside every booted node, as someone logged in
 * on the board would: a name served by the lab's DNS server resolves through
 * the node's own resolver, systemd says the system is running (no failed
 * unit, no job timed out), and on the servers Galera's group communication
 * runs over TLS; from the network, the k3s user's connection through the VIP
 * is encrypted.
 */
import type { Machine } from './machine.js';
import { sqlThroughVip, type Datastore } from './probes.js';
import type { LabTopology } from './topology.js';

/** The addresses `getent hosts NAME` printed (one line per address: ADDRESS NAME [ALIASES]). */
export function parseGetentHosts(output: string): string[] {
  return output
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** The problem with resolving `name` to `address` on the node (through its own resolv.conf or resolved), or undefined. */
export async function nameProblem(machine: Machine, name: string, address: string, server: string): Promise<string | undefined> {
  const result = await machine.exec('getent', ['hosts', name], { timeoutMs: 20_000 });
  const got = parseGetentHosts(result.stdout);
  if (got.includes(address)) return undefined;
  const how = got.length
    ? `gave ${got.join(', ')}`
    : `found nothing (exit ${result.exitCode ?? '?'}${result.stderr.trim() ? `: ${result.stderr.trim()}` : ''})`;
  const servers = machine.node.dns.includes(server)
    ? ''
    : `; its DNS servers are ${machine.node.dns.join(', ')} (network.dns), not the lab's`;
  return `${machine.node.name}: getent hosts ${name} ${how}, expected ${address} from the lab's DNS server on ${server}${servers}`;
}

/** Unit names of `systemctl --failed --no-legend --plain`: "UNIT LOAD ACTIVE SUB DESCRIPTION". */
export function parseFailedUnits(output: string): string[] {
  return output
    .split('\n')
    .map(
      (line) =>
        line
          .replace(/^[●*]\s*/, '')
          .trim()
          .split(/\s+/)[0] ?? '',
    )
    .filter(Boolean);
}

/** Seconds from systemd's start to the end of its startup, from `systemctl show` of the manager (monotonic µs); undefined while starting. */
export function startupSeconds(show: string): number | undefined {
  const values = Object.fromEntries(show.split('\n').map((line) => line.split('=', 2) as [string, string]));
  const start = Number(values.UserspaceTimestampMonotonic);
  const finish = Number(values.FinishTimestampMonotonic);
  if (!Number.isFinite(start) || !Number.isFinite(finish) || finish <= 0 || finish < start) return undefined;
  return Math.round((finish - start) / 100_000) / 10;
}

/** systemd's own lines about a job or a unit that timed out ("… start operation timed out", "Timed out waiting for …"). */
export function timeoutLines(journal: string): string[] {
  return journal
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /timed out/i.test(line));
}

export interface SystemState {
  node: string;
  /** What `systemctl is-system-running --wait` said: running, degraded, starting (still, at the bound), … */
  state: string;
  /** From systemd's start to the end of its startup (the node's own clock); undefined while starting. */
  seconds?: number;
  failed: string[];
  /** Jobs still queued when the bound passed. */
  jobs: string[];
  timedOut: string[];
}

/** Waits (at most `timeoutMs`) for the node's startup to end, and reads what systemd says about it. */
export async function systemState(machine: Machine, timeoutMs: number): Promise<SystemState> {
  const waited = await machine.exec('systemctl', ['is-system-running', '--wait'], { timeoutMs });
  const state =
    waited.stdout.trim().split('\n').pop() || (waited.exitCode === undefined || waited.exitCode === 124 ? 'starting' : 'unknown');
  const show = await machine.exec('systemctl', ['show', '--property=UserspaceTimestampMonotonic', '--property=FinishTimestampMonotonic'], {
    timeoutMs: 10_000,
  });
  const failed = parseFailedUnits((await machine.exec('systemctl', ['--failed', '--no-legend', '--plain'], { timeoutMs: 10_000 })).stdout);
  const jobs =
    state === 'starting'
      ? (await machine.exec('systemctl', ['list-jobs', '--no-legend', '--plain'], { timeoutMs: 10_000 })).stdout
          .trim()
          .split('\n')
          .filter(Boolean)
      : [];
  const journal = await machine.exec('journalctl', ['--no-pager', '-o', 'cat', '-b', '0', '_PID=1'], { timeoutMs: 15_000 });
  const seconds = startupSeconds(show.stdout);
  return {
    node: machine.node.name,
    state,
    ...(seconds !== undefined ? { seconds } : {}),
    failed,
    jobs,
    timedOut: timeoutLines(journal.stdout),
  };
}

/** Galera's provider options as the server reports them: "key = value; key = value; …". */
export function parseProviderOptions(value: string): Map<string, string> {
  const options = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) options.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return options;
}

/** What is missing for Galera's group communication to run over TLS, from the provider's options (empty: nothing). */
export function galeraTlsProblems(options: Map<string, string>): string[] {
  const problems: string[] = [];
  if (options.get('socket.ssl') !== 'YES') problems.push(`socket.ssl is ${options.get('socket.ssl') ?? 'not set'}`);
  for (const key of ['socket.ssl_ca', 'socket.ssl_cert', 'socket.ssl_key']) if (!options.get(key)) problems.push(`${key} is empty`);
  const listen = options.get('gmcast.listen_addr') ?? '';
  if (!listen.startsWith('ssl://')) problems.push(`gmcast.listen_addr is ${listen || 'not set'}, not ssl://`);
  return problems;
}

/** wsrep_provider_options read inside the server, as root over MariaDB's socket. */
export async function galeraProviderOptions(machine: Machine): Promise<Map<string, string> | string> {
  const result = await machine.exec(
    'mariadb',
    ['--batch', '--skip-column-names', '--connect-timeout=3', '-e', "SHOW GLOBAL VARIABLES LIKE 'wsrep_provider_options'"],
    { timeoutMs: 10_000 },
  );
  if (!result.ok) return `MariaDB does not answer: ${result.stderr.trim()}`;
  const value = result.stdout.split('\t').slice(1).join('\t');
  return parseProviderOptions(value);
}

/** The TLS session of the k3s user's connection through the VIP (Ssl_version, Ssl_cipher), or why there is none. */
export async function datastoreTls(
  topology: LabTopology,
  datastore: Datastore & { optionsFile: string },
): Promise<{ version: string; cipher: string } | string> {
  const result = await sqlThroughVip(topology, datastore, "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')");
  if (!result.ok) return `the k3s user's connection through the VIP failed: ${result.stderr.trim()}`;
  const values = Object.fromEntries(result.stdout.split('\n').map((line) => line.split('\t') as [string, string]));
  if (!values.Ssl_cipher) return `the k3s user's connection through the VIP is not encrypted (Ssl_cipher is empty)`;
  return { version: values.Ssl_version ?? '?', cipher: values.Ssl_cipher };
}
