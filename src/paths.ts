/**
 * Checks of the directories a command writes to, before any work: a path that
 * is a file, lies under a file, or cannot be written gets a one-line error
 * (exit 2) instead of a failure halfway through.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './errors.js';

/** `dir` is a writable directory, or can be made in the nearest existing directory above it; `what` names it as the user wrote it (`--out out`). */
export async function checkWritableDir(dir: string, what: string): Promise<void> {
  let at = path.resolve(dir);
  for (;;) {
    const info = await stat(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      if (e.code === 'ENOTDIR') throw new UsageError(`${what}: a part of that path is a file, not a directory`);
      throw new UsageError(`${what}: ${e.message}`);
    });
    if (info) {
      if (!info.isDirectory())
        throw new UsageError(`${what}: ${at === path.resolve(dir) ? 'is a file' : `${at} is a file`}, not a directory`);
      await access(at, constants.W_OK | constants.X_OK).catch(() => {
        throw new UsageError(`${what}: ${at} is not writable${at === path.resolve(dir) ? '' : ' (the directory would be made there)'}`);
      });
      return;
    }
    const up = path.dirname(at);
    if (up === at) return;
    at = up;
  }
}
