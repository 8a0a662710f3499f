/**
 * What the lab looks at, each from where a user would: the VIP on the nodes'
 * interfaces, Galera's status inside each server, the k3s datastore through
 * the VIP with the rendered credentials, and the k3s stand-ins' ports, all
 * from the bridge namespace (the lab's own vantage point on the network).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from './errors.js';
import type { Machine } from './machine.js';
import { addressesOf } from './network.js';
import { tryInNet, type CommandResult } from './run-command.js';
import type { LabTopology } from './topology.js';

export interface Datastore {
  user: string;
  password: string;
  host: string;
  port: string;
  database: string;
}

/** k3s's `mysql://USER:PASS@tcp(HOST:PORT)/DB`, read from a server's rendered config.yaml. */
export function parseDatastoreEndpoint(configYaml: string): Datastore | undefined {
  const line = /^datastore-endpoint:\s*(.+)$/m.exec(configYaml)?.[1]?.trim();
  if (!line) return undefined;
  const endpoint = line.startsWith('"') ? (JSON.parse(line) as string) : line;
  const m = /^mysql:\/\/([^:@/]+):([^@]*)@tcp\(([^:()]+):(\d+)\)\/(\w+)$/.exec(endpoint);
  if (!m) return undefined;
  return { user: m[1]!, password: m[2]!, host: m[3]!, port: m[4]!, database: m[5]! };
}

export async function readDatastore(tree: string, workDir: string): Promise<Datastore & { optionsFile: string }> {
  const file = path.join(tree, 'etc/rancher/k3s/config.yaml');
  const datastore = parseDatastoreEndpoint(await readFile(file, 'utf8'));
  if (!datastore) throw new LabError(`${file} has no datastore-endpoint of the form mysql://USER:PASS@tcp(HOST:PORT)/DB`);
  // The password stays in a private file, never on a command line.
  const optionsFile = path.join(workDir, 'datastore.cnf');
  await writeFile(optionsFile, `[client]\nuser=${datastore.user}\npassword=${datastore.password}\n`, { mode: 0o600 });
  return { ...datastore, optionsFile };
}

/** A statement against the k3s database through the VIP, as k3s sends it. */
export function sqlThroughVip(
  topology: LabTopology,
  datastore: Datastore & { optionsFile: string },
  statement: string,
  timeoutMs = 15_000,
): Promise<CommandResult> {
  return sqlAt(topology, datastore, datastore.host, statement, { timeoutMs });
}

/**
 * A statement to one server's address with the k3s user's credentials, in the k3s database
 * unless `database: false` (a status query that must answer before the database exists).
 */
export function sqlAt(
  topology: LabTopology,
  datastore: Datastore & { optionsFile: string },
  host: string,
  statement: string,
  { timeoutMs = 15_000, database = true }: { timeoutMs?: number; database?: boolean } = {},
): Promise<CommandResult> {
  return tryInNet(
    topology.bridgeNs,
    'mariadb',
    [
      `--defaults-extra-file=${datastore.optionsFile}`,
      `--host=${host}`,
      `--port=${datastore.port}`,
      '--connect-timeout=3',
      '--batch',
      '--skip-column-names',
      ...(database ? [datastore.database] : []),
      '-e',
      statement,
    ],
    { timeoutMs },
  );
}

/** Every running node with the VIP on its interface (an agent never should). */
export async function vipHolders(topology: LabTopology, machines: Machine[]): Promise<string[]> {
  const holders: string[] = [];
  for (const machine of machines) {
    if (machine.running && (await addressesOf(machine.node)).includes(topology.vip)) holders.push(machine.node.name);
  }
  return holders;
}

export interface GaleraStatus {
  size: number;
  status: string;
  state: string;
}

/** wsrep status read inside the server, as root over MariaDB's socket. */
export async function galeraStatus(machine: Machine): Promise<GaleraStatus | undefined> {
  const result = await machine.exec(
    'mariadb',
    [
      '--batch',
      '--skip-column-names',
      '--connect-timeout=3',
      '-e',
      "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_cluster_status', 'wsrep_local_state_comment')",
    ],
    { timeoutMs: 10_000 },
  );
  if (!result.ok) return undefined;
  const values = Object.fromEntries(result.stdout.split('\n').map((line) => line.split('\t') as [string, string]));
  return {
    size: Number(values.wsrep_cluster_size ?? 0),
    status: values.wsrep_cluster_status ?? '?',
    state: values.wsrep_local_state_comment ?? '?',
  };
}

export const describeGalera = (s: GaleraStatus | undefined): string =>
  s ? `size ${s.size}, ${s.status}, ${s.state}` : 'MariaDB not answering';

/** The stand-in's readiness endpoint: servers on 6443, agents on 10250 (where the kubelet would be). */
export async function standinReady(topology: LabTopology, machine: Machine): Promise<boolean> {
  const url = machine.node.isServer ? `http://${machine.node.ip}:6443/readyz` : `http://${machine.node.ip}:10250/healthz`;
  return (await tryInNet(topology.bridgeNs, 'curl', ['-sf', '--max-time', '3', url], { timeoutMs: 5_000 })).ok;
}
