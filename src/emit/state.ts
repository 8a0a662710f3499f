/**
 * What the previous build of a cluster was made from, kept beside its output
 * (out/NAME/.build-state.json, no secrets): a rebuild reuses every node whose
 * inputs are unchanged and, when nothing about the base changed either, does
 * not read the base at all.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { NodePlan } from '../plan/plan.js';
import { sha256 } from '../plan/plan.js';
import type { BaseFacts } from '../plan/context.js';

export const STATE_FILE = '.build-state.json';

export interface ArtifactRecord {
  name: string;
  sha256: string;
  bytes: number;
  /** An archive's prefix (see artifact.ts), and the key of what it was made from (prefixKey). */
  prefix?: { bytes: number; sha256: string; key: string };
}

export interface BuildState {
  version: 1;
  generator: string;
  /** Identity of the base (and the cluster layer), as far as it could be known. */
  baseIdentity: string;
  arch: string;
  /** The base's mariadb-server version; absent in a state written before it was recorded. */
  mariadbVersion?: string | null;
  /** Which resolver and NTP client the base has; absent in a state written before they were recorded. */
  systemdResolved?: boolean;
  chrony?: boolean;
  timesyncd?: boolean;
  formats: string[];
  /** How many entries the base has: a rebuild that does not read it reports this again. Absent in older states. */
  baseEntries?: number;
  sourceDateEpoch: number;
  /** The base's newest mtime, SOURCE_DATE_EPOCH's default; absent in a state written before it was recorded. */
  baseNewestMtime?: number;
  /** Per node: the key of its inputs, and the artifact files made from them. */
  nodes: Record<string, { key: string; artifacts: ArtifactRecord[]; tree?: { overlay: string[]; removed: string[] } }>;
  /** tftp/ files taken from the base, and the board paths they were taken from. */
  bootFiles: string[];
  bootSources: string;
  /** Whether the build ran as root (trees made without root lack owners and capabilities). */
  privileged: boolean;
}

/** The base's facts the state records (written by spreading BaseFacts, in its order); undefined when one is missing (an older state). */
export function recordedFacts(state: BuildState): BaseFacts | undefined {
  const { mariadbVersion, systemdResolved, chrony, timesyncd } = state;
  if (mariadbVersion === undefined || systemdResolved === undefined || chrony === undefined || timesyncd === undefined) return undefined;
  return { mariadbVersion, systemdResolved, chrony, timesyncd };
}

export async function readState(clusterDir: string): Promise<BuildState | undefined> {
  const file = path.join(clusterDir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const state = JSON.parse(await readFile(file, 'utf8')) as BuildState;
    return state.version === 1 ? state : undefined;
  } catch {
    return undefined; // an unreadable state only costs a full rebuild
  }
}

export interface KeyContext {
  baseIdentity: string;
  generator: string;
  sourceDateEpoch: number;
  /** How archives are compressed (artifact.ts compressors()); empty when none are made. */
  compress: string;
  privileged: boolean;
}

/** Everything a node's root depends on besides the base: its planned files and removals. */
export function nodeKey(node: NodePlan, context: KeyContext): string {
  const files = node.files.map((f) => [f.path, f.type, f.mode, f.uid, f.gid, f.target ?? '', f.content ? sha256(f.content) : '']);
  return createHash('sha256')
    .update(JSON.stringify({ ...context, files, removes: node.removes }))
    .digest('hex');
}

/**
 * Everything the prefix of a node's archive depends on (artifact.ts): the base and how it is packed, and
 * which paths the node writes or removes, not what it writes there. Equal keys, equal prefix bytes.
 */
export function prefixKey(node: NodePlan, context: KeyContext): string {
  const paths = node.files.map((f) => f.path).sort();
  return createHash('sha256')
    .update(JSON.stringify({ ...context, paths, removes: node.removes }))
    .digest('hex');
}
