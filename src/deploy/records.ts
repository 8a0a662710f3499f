/**
 * netroot's records of the clusters on an export root, beside the nodes'
 * records in ROOT/.netroot (apply.ts):
 *
 *   clusters/CLUSTER.json       the cluster's record: the secrets' fingerprint, the boot server
 *                               files deployed, and the last operation (deploy or rollback)
 *   clusters/CLUSTER.op.json    the journal of an operation under way, written before its first
 *                               change and removed once its record is written
 *   clusters/CLUSTER.ops/N/     what operation N replaced on the boot server: files/PATH as each
 *                               was, `absent` (paths it created) and record.json (the record before it)
 *
 * An export root belongs to one cluster: the names of these records say which.
 */
import { TargetRecordError } from '../errors.js';
import { META } from './apply.js';
import { dropJournal, keepFiles, listJsonFiles, listKept, readTargetFile, restoreKept, writeTargetFile } from './target-commands.js';
import { parseOperation, type BootFile, type Operation } from './plan.js';
import type { SecretsFingerprint } from '../profile/store.js';
import type { Target } from './target.js';

/** The deploy's record of a cluster on the target. */
export interface ClusterRecord {
  kind: 'netroot-deploy';
  cluster: string;
  generator: string;
  deployedAt: string;
  nodes: string[];
  secrets: SecretsFingerprint;
  bootFiles: BootFile[];
  /** The last deploy or rollback that changed anything: what the next rollback undoes. */
  last?: Operation;
}

const clusters = (root: string): string => `${root}/${META}/clusters`;
const recordPath = (root: string, cluster: string): string => `${clusters(root)}/${cluster}.json`;
const journalPath = (root: string, cluster: string): string => `${clusters(root)}/${cluster}.op.json`;
const opDir = (root: string, cluster: string, op: number): string => `${clusters(root)}/${cluster}.ops/${op}`;

/** A JSON file of netroot's on the target, checked by `accept`; a damaged one is a clear refusal, never a crash. */
async function readJson<T>(target: Target, file: string, what: string, accept: (value: unknown) => T | undefined): Promise<T | undefined> {
  const text = await readTargetFile(target, file);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const parsed = accept(value);
  if (parsed === undefined)
    throw new TargetRecordError(
      `${target.spec.kind === 'ssh' ? `${target.spec.host}:` : ''}${file} cannot be read: it should be ${what}, but it is damaged or was not written by this version of netroot. ` +
        'Nothing was changed. Move it aside, then run deploy again (it finishes any node left halfway).',
    );
  return parsed;
}

const acceptRecord =
  (cluster: string) =>
  (value: unknown): ClusterRecord | undefined => {
    const r = value as Partial<ClusterRecord> | null;
    if (typeof r !== 'object' || r === null || r.kind !== 'netroot-deploy' || r.cluster !== cluster || !Array.isArray(r.bootFiles))
      return undefined;
    if (r.last !== undefined && !parseOperation(r.last)) return undefined;
    return r as ClusterRecord;
  };

export function readRecord(target: Target, root: string, cluster: string): Promise<ClusterRecord | undefined> {
  return readJson(target, recordPath(root, cluster), `the record of cluster ${cluster}`, acceptRecord(cluster));
}

/** The operation under way that was cut short, if any. */
export function readJournal(target: Target, root: string, cluster: string): Promise<Operation | undefined> {
  return readJson(target, journalPath(root, cluster), `the journal of a deploy or rollback of ${cluster} under way`, parseOperation);
}

export async function writeJournal(target: Target, root: string, cluster: string, op: Operation): Promise<void> {
  await writeTargetFile(target, journalPath(root, cluster), `${JSON.stringify(op, null, 2)}\n`);
}

/** The clusters that have a record on this export root. */
export async function recordedClusters(target: Target, root: string): Promise<string[]> {
  return (await listJsonFiles(target, clusters(root)))
    .filter((f) => f.endsWith('.json') && !f.endsWith('.op.json') && !f.endsWith('.rollback.json'))
    .map((f) => f.slice(0, -'.json'.length));
}

/**
 * Keep what operation `op` is about to replace on the boot server: each of `paths` as it is now, or that it
 * is absent, and the cluster's record. A path already kept (by this operation, cut short and run again) is
 * not kept again: the copy would be this operation's own file. `fresh`: start over (another operation left it).
 */
export async function keepBootFiles(
  target: Target,
  root: string,
  cluster: string,
  op: number,
  paths: string[],
  fresh: boolean,
): Promise<void> {
  await keepFiles(target, opDir(root, cluster, op), recordPath(root, cluster), paths, fresh);
}

/** What operation `op` replaced on the boot server (files to put back, paths it created), and the record before it. */
export async function keptBootFiles(
  target: Target,
  root: string,
  cluster: string,
  op: number,
): Promise<{ restore: string[]; remove: string[]; record?: ClusterRecord }> {
  const d = opDir(root, cluster, op);
  const kept = await listKept(target, d);
  const record = await readJson(
    target,
    `${d}/record.json`,
    `the record of cluster ${cluster} before operation ${op}`,
    acceptRecord(cluster),
  );
  return {
    ...kept,
    ...(record ? { record } : {}),
  };
}

/** Put the boot server's files back as operation `op` found them, each by rename (a reader sees the old or the new file). */
export async function restoreBootFiles(target: Target, root: string, cluster: string, op: number): Promise<void> {
  await restoreKept(target, opDir(root, cluster, op));
}

/** The operation is done: its record is the cluster's, its journal goes, and only its own kept files stay (for the next rollback). */
export async function finishOperation(target: Target, root: string, record: ClusterRecord): Promise<void> {
  await writeTargetFile(target, recordPath(root, record.cluster), `${JSON.stringify(record, null, 2)}\n`);
  const keep = record.last ? String(record.last.op) : '';
  await dropJournal(target, journalPath(root, record.cluster), `${clusters(root)}/${record.cluster}.ops`, keep);
}
