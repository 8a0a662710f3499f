/** PATH directories for "this machine without those packages". */
import { mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * A directory under `parent` linking every program of this machine's usual
 * PATH but `missing` (the first of each name wins, as a PATH lookup would): a
 * machine without those programs.
 */
export async function binWithout(parent: string, missing: string[]): Promise<string> {
  const bin = path.join(parent, `bin-without-${missing.join('-')}`);
  await mkdir(bin);
  const linked = new Set(missing);
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    for (const program of await readdir(dir).catch(() => [] as string[])) {
      if (linked.has(program)) continue;
      linked.add(program);
      await symlink(path.join(dir, program), path.join(bin, program));
    }
  }
  return bin;
}
