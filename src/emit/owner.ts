/**
 * A build replaces OUT/CLUSTER whole, so it must only ever replace a directory
 * it wrote itself: each build leaves a record there (with the fingerprint of
 * the secrets it was made with), and a directory without one is refused rather
 * than deleted (a user's files, or an export root full of live nodes).
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { NotOwnedError } from '../errors.js';
import type { SecretsFingerprint } from '../profile/store.js';
import type { BuildInputs } from '../build-inputs.js';
import type { OutputFormat } from './formats.js';

export const OWNER_FILE = '.netroot-output.json';

export interface OutputRecord {
  kind: 'netroot-output';
  generator: string;
  cluster: string;
  builtAt: string;
  secrets?: SecretsFingerprint;
  /** What it was made from (absent in outputs of netroot before 0.1.0's issue 20): a deploy uses it only while they are the same. */
  inputs?: BuildInputs;
  /** What it wrote per node with a base (tree, tar); none without one. */
  formats?: OutputFormat[];
}

/**
 * The record of an existing output directory; undefined when there is none yet.
 * Outputs of earlier versions are known by their manifest.json's generator.
 */
export async function readOutputRecord(dir: string, shown: string): Promise<OutputRecord | { kind: 'legacy' } | undefined> {
  let info;
  try {
    info = await stat(dir);
  } catch {
    return undefined;
  }
  if (!info.isDirectory())
    throw new NotOwnedError(
      `${shown} is not a directory; netroot writes its output there and will not replace it. Move it away or choose another --out`,
    );
  const record = path.join(dir, OWNER_FILE);
  if (existsSync(record)) {
    try {
      const parsed = JSON.parse(await readFile(record, 'utf8')) as OutputRecord;
      if (parsed.kind === 'netroot-output') return parsed;
    } catch {
      // fall through: not a record netroot wrote
    }
  }
  try {
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { generator?: unknown };
    if (typeof manifest.generator === 'string' && manifest.generator.startsWith('netroot ')) return { kind: 'legacy' };
  } catch {
    // not an earlier netroot output either
  }
  throw new NotOwnedError(
    `${shown} exists but was not written by netroot (no ${OWNER_FILE} in it); a build replaces that directory whole, so it refuses to. ` +
      'Move it away or choose another --out (never the export root: deploy with "build-images deploy --to")',
  );
}
