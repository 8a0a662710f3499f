/**
 * The date of what netroot writes: SOURCE_DATE_EPOCH, else the base's newest mtime. Both are inputs,
 * so the same inputs give the same bytes (artifact.ts, export-tree.ts).
 */
import type { BaseIndex } from '../base/open.js';
import { RootfsError } from '../entries/errors.js';

/** $SOURCE_DATE_EPOCH when it is set. */
export function epochFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new RootfsError(`SOURCE_DATE_EPOCH must be a number of seconds, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** The mtime of the base's newest entry (0 for an empty base). */
export function newestMtime(base: Pick<BaseIndex, 'entries'>): number {
  let newest = 0;
  for (let i = 0; i < base.entries.length; i++) newest = Math.max(newest, base.entries.mtime(i));
  return newest;
}

/**
 * The date of the files netroot writes: $SOURCE_DATE_EPOCH, else the base's
 * newest mtime. Both are inputs, so the same inputs give the same bytes, and a
 * node's files are never dated 1970 nor before the base they were written for.
 */
export function sourceDateEpoch(base: Pick<BaseIndex, 'entries'>, env: NodeJS.ProcessEnv = process.env): number {
  return epochFromEnv(env) ?? newestMtime(base);
}
