/**
 * Write planned files under a root directory: exact modes (not the umask's),
 * numeric owners when the build runs as root, symlinks as links. Only fresh
 * directories are written to, and no path may leave the root.
 */
import { chmod, lchown, mkdir, open, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { PlannedFile } from '../plan/plan.js';
import { InternalError } from '../errors.js';

export function assertInside(root: string, relative: string): string {
  if (relative === '' || path.posix.isAbsolute(relative) || relative.split('/').some((p) => p === '..' || p === '')) {
    throw new InternalError(`refusing to write ${JSON.stringify(relative)}: not a plain relative path`);
  }
  return path.join(root, ...relative.split('/'));
}

async function ensureDir(root: string, relative: string, made: Set<string>): Promise<void> {
  const parts = relative.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const rel = parts.slice(0, i).join('/');
    if (made.has(rel)) continue;
    const dir = path.join(root, ...parts.slice(0, i));
    const created = await mkdir(dir, { mode: 0o755 }).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
        return false;
      },
    );
    // A root filesystem's directories are 0755 whatever the builder's umask.
    if (created) await chmod(dir, 0o755);
    made.add(rel);
  }
}

export async function writeTree(root: string, files: readonly PlannedFile[], privileged: boolean): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o755 });
  const made = new Set<string>();
  for (const f of files) {
    const target = assertInside(root, f.path);
    const parent = path.posix.dirname(f.path);
    if (parent !== '.') await ensureDir(root, parent, made);
    if (f.type === 'symlink') {
      await symlink(f.target!, target);
    } else {
      // 'wx': never follow or overwrite something that is already there.
      const handle = await open(target, 'wx', f.mode);
      try {
        await handle.writeFile(f.content!);
      } finally {
        await handle.close();
      }
      await chmod(target, f.mode);
    }
    if (privileged) await lchown(target, f.uid, f.gid);
  }
}
