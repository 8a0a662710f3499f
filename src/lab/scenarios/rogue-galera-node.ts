/**
 * A stranger on the LAN who knows the cluster's name and its servers'
 * addresses (both are in every server's config) starts a MariaDB with Galera
 * and asks to join: without TLS, then with a certificate of a CA of its own
 * while trusting the cluster's CA (whose certificate is no secret). Both must
 * be refused, and the cluster must stay at its size all the while. The
 * stranger is the host's own mariadbd (Debian's package) in a namespace of
 * its own on the lab bridge, at an address no node uses; its datadir, socket,
 * certificates and logs are in the lab's run directory and removed after.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startTool } from '../../tools.js';
import { Cleanup } from '../cleanup.js';
import type { Machine } from '../machine.js';
import { addLabMachine } from '../network.js';
import { galeraStatus } from '../probes.js';
import { run, tryRun } from '../run-command.js';
import { ensureWhole, galeraFullWithin, servers, showGalera } from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';

/** Where the build puts the Galera settings and the cluster's CA certificate on a server. */
export const GALERA_CNF = 'etc/mysql/mariadb.conf.d/70-netroot-galera.cnf';
export const CLUSTER_CA = 'etc/mysql/netroot-tls/ca.pem';
/** Debian's galera-4 provider on the host, as on the nodes. */
export const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';

export interface GaleraSettings {
  clusterName: string;
  clusterAddress: string;
  provider: string;
}

/** The [mysqld] Galera settings of a rendered cnf; undefined where one is missing. */
export function parseGaleraCnf(text: string): GaleraSettings | undefined {
  const value = (key: string): string | undefined => new RegExp(`^\\s*${key}\\s*=\\s*"?([^"\\n]*?)"?\\s*$`, 'm').exec(text)?.[1];
  const clusterName = value('wsrep_cluster_name');
  const clusterAddress = value('wsrep_cluster_address');
  const provider = value('wsrep_provider');
  if (!clusterName || !clusterAddress?.startsWith('gcomm://') || !provider) return undefined;
  return { clusterName, clusterAddress, provider };
}

export type RogueKind = 'plain' | 'forged';

/** The stranger's my.cnf: the cluster's name and peers, the Galera provider, and TLS as `kind` says. */
export function rogueCnf(o: { dir: string; address: string; galera: GaleraSettings; kind: RogueKind; clusterCa: string }): string {
  const tls =
    o.kind === 'forged'
      ? `;socket.ssl_ca=${o.clusterCa};socket.ssl_cert=${path.join(o.dir, 'tls/cert.pem')};socket.ssl_key=${path.join(o.dir, 'tls/key.pem')}`
      : '';
  return [
    '# Written by the netroot lab: a stranger asking to join the cluster (rogue-galera-node).',
    '[mysqld]',
    'user=root',
    `datadir=${path.join(o.dir, 'data')}`,
    `socket=${path.join(o.dir, 'mysqld.sock')}`,
    `pid-file=${path.join(o.dir, 'mysqld.pid')}`,
    `log-error=${path.join(o.dir, 'mysqld.err')}`,
    `tmpdir=${o.dir}`,
    `bind-address=${o.address}`,
    'skip-name-resolve',
    'innodb_buffer_pool_size=32M',
    'innodb_log_file_size=8M',
    'binlog_format=ROW',
    'default-storage-engine=innodb',
    'innodb_autoinc_lock_mode=2',
    'wsrep_on=ON',
    `wsrep_provider=${GALERA_PROVIDER}`,
    `wsrep_cluster_name=${o.galera.clusterName}`,
    `wsrep_cluster_address=${o.galera.clusterAddress}`,
    `wsrep_node_address=${o.address}`,
    'wsrep_node_name=rogue',
    'wsrep_sst_method=rsync',
    `wsrep_provider_options="gcache.size=16M${tls}"`,
    '',
  ].join('\n');
}

export interface RogueLog {
  /** It asked the cluster to let it in ("gcomm: connecting to group 'NAME', peer '…'"). */
  tried?: string;
  /** The largest group it saw itself in, and whether that group was ever a primary component. */
  members: number;
  primary: boolean;
  /** Why it got nowhere: the connection errors it logged, each once, and how it ended. */
  refusals: string[];
  ended?: string;
}

/** What the stranger's MariaDB error log says about its attempt (pure). */
export function readRogueLog(text: string): RogueLog {
  const lines = text.split('\n');
  const tried = lines.map((l) => /gcomm: connecting to group '.*', peer '.*'/.exec(l)?.[0]).find(Boolean);
  let members = 0;
  let primary = false;
  let inView: number | undefined;
  for (const line of lines) {
    // gcomm's views: "view(view_id(NON_PRIM,uuid,1) memb {", a line per member, "} joined {".
    if (/view\(view_id\(\w+,[^)]*\) memb \{/.test(line)) inView = 0;
    else if (inView !== undefined) {
      if (/^\s*\}/.test(line)) {
        members = Math.max(members, inView);
        inView = undefined;
      } else if (line.trim()) inView++;
    }
    const size = /members\((\d+)\)|number of nodes: (\d+)/.exec(line);
    if (size) members = Math.max(members, Number(size[1] ?? size[2]));
    if (
      /view_id\(PRIM,|view#\s*\d+: Primary|Shifting \w+ -> (JOINER|JOINED|SYNCED)|Server status change \w+ -> (joiner|joined|synced)/.test(
        line,
      )
    )
      primary = true;
  }
  const refusals = [
    ...new Set(
      lines
        .map((l) =>
          /(Failed to establish connection: .*|read_handler\(\): .*?(?= \(\d+:|$)|handshake failed.*|No nodes coming from primary view.*|failed to reach primary view)/
            .exec(l)?.[1]
            ?.trim(),
        )
        .filter((l): l is string => Boolean(l)),
    ),
  ];
  const ended = lines.map((l) => /\[ERROR\] (Aborting)/.exec(l)?.[1]).find(Boolean);
  return { ...(tried ? { tried } : {}), members, primary, refusals, ...(ended ? { ended } : {}) };
}

interface Attempt {
  kind: RogueKind;
  pass: boolean;
  story: string;
}

const ATTEMPTS: { kind: RogueKind; about: string }[] = [
  { kind: 'plain', about: 'without TLS' },
  { kind: 'forged', about: "with a certificate of its own CA, trusting the cluster's CA" },
];

export async function rogueGaleraNode(ctx: LabContext): Promise<ScenarioResult> {
  const s = scenario('rogue-galera-node', Date.now());
  const whole = await ensureWhole(ctx);
  if (whole) return s.result(false, whole);
  const address = ctx.topology.spareAddress;
  if (!address) return s.result(false, `the lab's subnet has no address left for a stranger`);
  const server = servers(ctx)[0]!;
  const cnfFile = path.join(server.tree, GALERA_CNF);
  const galera = parseGaleraCnf(await readFile(cnfFile, 'utf8').catch(() => ''));
  if (!galera) return s.result(false, `${cnfFile} has no wsrep_cluster_name, wsrep_cluster_address=gcomm://… and wsrep_provider`);
  const clusterCa = path.join(server.tree, CLUSTER_CA);
  if (!existsSync(clusterCa))
    return s.result(false, `${clusterCa} does not exist: the build gave the servers no cluster CA, so Galera does not run over TLS`);
  if (!existsSync(GALERA_PROVIDER))
    return s.result(false, `${GALERA_PROVIDER} is not on this host: install galera-4 (scripts/install-lab-deps.sh)`);

  const dir = path.resolve(ctx.runDir, 'rogue');
  const ns = `${ctx.topology.prefix}-rogue`;
  // Its own undo list, run when the scenario ends; the lab's runs it too if the lab is stopped meanwhile.
  const undo = new Cleanup();
  ctx.cleanup.add('the rogue Galera node', async () => void (await undo.run(ctx.log)));
  undo.add('rogue files', () => rm(dir, { recursive: true, force: true }));
  try {
    await rm(dir, { recursive: true, force: true });
    await mkdir(path.join(dir, 'tls'), { recursive: true });
    await addLabMachine(ctx.topology, { ns, port: 'rogue', address }, undo);
    await makeCertificate(dir, address);
    await run(
      'mariadb-install-db',
      [
        '--no-defaults',
        `--datadir=${path.join(dir, 'data')}`,
        '--user=root',
        '--auth-root-authentication-method=socket',
        '--skip-test-db',
        '--skip-name-resolve',
        '--innodb-log-file-size=8M',
        '--innodb-buffer-pool-size=32M',
      ],
      { timeoutMs: 120_000 },
    );

    const size = servers(ctx).length;
    const attempts: Attempt[] = [];
    for (const { kind, about } of ATTEMPTS) {
      ctx.log(`rogue-galera-node: a MariaDB at ${address} asks to join ${galera.clusterName} (${galera.clusterAddress}) ${about}`);
      attempts.push(await attempt(ctx, { dir, ns, address, galera, kind, clusterCa, size }));
      if (!attempts.at(-1)!.pass) break;
    }
    const failed = attempts.find((a) => !a.pass);
    if (failed) return s.result(false, attempts.map((a) => a.story).join('\n'));
    const after = await galeraFullWithin(ctx, 30_000);
    if (!after.ok)
      return s.result(
        false,
        `${attempts.map((a) => a.story).join('; ')}; but afterwards the cluster is not whole (${showGalera(after.seen)})`,
      );
    return s.result(true, attempts.map((a) => a.story).join('; '));
  } catch (error) {
    return s.result(false, `could not run the stranger's MariaDB: ${(error as Error).message}`);
  } finally {
    await undo.run(ctx.log);
  }
}

/** A CA of the stranger's own, made now, and a certificate from it naming the stranger's address. */
async function makeCertificate(dir: string, address: string): Promise<void> {
  const tls = path.join(dir, 'tls');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run(
    'openssl',
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      path.join(tls, 'ca-key.pem'),
      '-out',
      path.join(tls, 'ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=netroot lab rogue CA',
    ],
    { timeoutMs: 30_000 },
  );
  await run('openssl', ['req', ...ec, '-keyout', path.join(tls, 'key.pem'), '-out', path.join(tls, 'req.pem'), '-subj', '/CN=rogue'], {
    timeoutMs: 30_000,
  });
  await writeFile(path.join(tls, 'ext.cnf'), `subjectAltName=IP:${address}\n`);
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      path.join(tls, 'req.pem'),
      '-CA',
      path.join(tls, 'ca.pem'),
      '-CAkey',
      path.join(tls, 'ca-key.pem'),
      '-CAcreateserial',
      '-out',
      path.join(tls, 'cert.pem'),
      '-days',
      '2',
      '-extfile',
      path.join(tls, 'ext.cnf'),
    ],
    { timeoutMs: 30_000 },
  );
}

/** What the servers logged about connections they refused since `since` (epoch seconds): each message once, with the servers that logged it. */
async function serversSaid(machines: Machine[], since: number): Promise<string[]> {
  const said = new Map<string, string[]>();
  for (const machine of machines) {
    const journal = await machine.exec('journalctl', ['--no-pager', '-o', 'cat', '-u', 'mariadb', `--since=@${since}`], {
      timeoutMs: 15_000,
    });
    for (const line of journal.stdout.split('\n')) {
      const message = /(Failed to establish connection: .*|read_handler\(\): .*?(?= \(\d+:|$)|handshake .*failed.*)/
        .exec(line)?.[1]
        ?.trim();
      if (!message) continue;
      const names = said.get(message) ?? [];
      if (!names.includes(machine.node.name)) said.set(message, [...names, machine.node.name]);
    }
  }
  return [...said].map(([message, names]) => `"${message}" (${names.join(', ')})`);
}

/** Whether the stranger got into a group: what its own MariaDB answers, or its log shows; undefined while it is alone. */
async function strangerJoined(dir: string, errorLog: string): Promise<string | undefined> {
  const own = await tryRun(
    'mariadb',
    [
      '--no-defaults',
      `--socket=${path.join(dir, 'mysqld.sock')}`,
      '--user=root',
      '--connect-timeout=2',
      '--batch',
      '--skip-column-names',
      '-e',
      "SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_cluster_status')",
    ],
    { timeoutMs: 5_000 },
  );
  let joined: string | undefined;
  if (own.ok) {
    const values = Object.fromEntries(own.stdout.split('\n').map((line) => line.split('\t') as [string, string]));
    if (Number(values.wsrep_cluster_size) > 1 || values.wsrep_cluster_status === 'Primary')
      joined = `its wsrep_cluster_size is ${values.wsrep_cluster_size}, ${values.wsrep_cluster_status}`;
  }
  const log = readRogueLog(await readFile(errorLog, 'utf8').catch(() => ''));
  if (log.primary || log.members > 1) joined = `its log shows a view of ${log.members} members${log.primary ? ', primary' : ''}`;
  return joined;
}

/** The attempt's story from what was seen while it ran, the stranger's log and the servers' journals. */
async function verdict(
  ctx: LabContext,
  o: { address: string; kind: RogueKind; size: number },
  seen: { joined: string | undefined; wrong: string[]; reads: number; watched: number },
  errorLog: string,
  since: number,
): Promise<Attempt> {
  const { joined, wrong, reads, watched } = seen;
  const log = readRogueLog(await readFile(errorLog, 'utf8').catch(() => ''));
  const refusedBy = await serversSaid(servers(ctx), since);
  const said = log.refusals.length ? `its log: "${log.refusals.slice(0, 3).join('", "')}"` : 'its log names no refusal';
  const end = log.ended ? `it gave up after ${watched} s ("${log.ended}")` : `stopped after ${watched} s`;
  const theySaid = refusedBy.length ? `; the servers: ${refusedBy.slice(0, 3).join(', ')}` : '';
  const head = `${o.kind === 'plain' ? 'Without TLS' : "With its own CA's certificate"} (at ${o.address})`;
  if (joined) return { kind: o.kind, pass: false, story: `${head} the stranger got in: ${joined}; ${said}` };
  if (wrong.length)
    return {
      kind: o.kind,
      pass: false,
      story: `${head}, while the stranger asked to join, the servers were not all at size ${o.size} and primary: ${wrong.slice(0, 3).join('; ')}; ${said}`,
    };
  if (!log.tried) {
    const tail = (await readFile(errorLog, 'utf8').catch(() => '')).trim().split('\n').slice(-4).join(' / ');
    return {
      kind: o.kind,
      pass: false,
      story: `${head} the stranger's MariaDB never asked the cluster to let it in: ${tail || 'no log'}`,
    };
  }
  if (
    o.kind === 'forged' &&
    !log.refusals.some((r) => /unknown ca|certificate/i.test(r)) &&
    !refusedBy.some((r) => /certificate|unknown ca/i.test(r))
  ) {
    return {
      kind: o.kind,
      pass: false,
      story: `${head} the stranger was kept out, but neither it nor the servers logged a refused certificate: ${said}`,
    };
  }
  return {
    kind: o.kind,
    pass: true,
    story: `${head} refused: never in a primary component (largest view ${log.members} member${log.members === 1 ? '' : 's'}); ${end}; ${said}${theySaid}; wsrep_cluster_size stayed ${o.size} on every server (${reads} reads over ${watched} s)`,
  };
}

async function attempt(
  ctx: LabContext,
  o: { dir: string; ns: string; address: string; galera: GaleraSettings; kind: RogueKind; clusterCa: string; size: number },
): Promise<Attempt> {
  const cnf = path.join(o.dir, `${o.kind}.cnf`);
  const errorLog = path.join(o.dir, 'mysqld.err');
  await writeFile(cnf, rogueCnf({ dir: o.dir, address: o.address, galera: o.galera, kind: o.kind, clusterCa: o.clusterCa }));
  await rm(errorLog, { force: true });
  // Galera's state from the attempt before: each attempt is a stranger that never was in any cluster.
  for (const file of ['grastate.dat', 'gvwstate.dat', 'galera.cache']) await rm(path.join(o.dir, 'data', file), { force: true });

  const since = Math.floor(Date.now() / 1000);
  const start = Date.now();
  const rogue = startTool('nsenter', [`--net=/run/netns/${o.ns}`, '--', 'mariadbd', `--defaults-file=${cnf}`], {
    stdoutFile: path.join(o.dir, `${o.kind}.stdout`),
    stderrFile: path.join(o.dir, `${o.kind}.stderr`),
  });
  let exited = false;
  void rogue.child.then(() => (exited = true));
  const stop = async (): Promise<void> => {
    if (exited) return;
    await rogue.stop(10_000, 'SIGTERM');
  };
  try {
    // Until it gives up by itself (after its 30-s wait for a primary component) or the bound passes:
    // the cluster's servers must stay at their size, and the stranger must never see a primary component.
    const deadline = start + ctx.bounds.rogueSeconds * 1000;
    let reads = 0;
    const wrong: string[] = [];
    let joined: string | undefined;
    while (!exited && Date.now() < deadline && !joined && wrong.length === 0) {
      for (const machine of servers(ctx)) {
        const status = await galeraStatus(machine);
        reads++;
        if (!status || status.size !== o.size || status.status !== 'Primary') {
          wrong.push(
            `${machine.node.name} at ${elapsed(start)} s: ${status ? `size ${status.size}, ${status.status}` : 'MariaDB not answering'}`,
          );
        }
      }
      joined = await strangerJoined(o.dir, errorLog);
      if (!exited) await new Promise((r) => setTimeout(r, 1_000));
    }
    const watched = elapsed(start);
    await stop();
    return await verdict(ctx, o, { joined, wrong, reads, watched }, errorLog, since);
  } finally {
    await stop();
  }
}
