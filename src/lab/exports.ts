/**
 * The lab's export root: what an NFS server's export directory is to real
 * nodes. One overlay over the build's rootfs/ holds every node's root at
 * ROOT/NODE, with the upper layer in the lab's run directory, so the build's
 * trees are never written, a node's writes survive its reboots, and a deploy
 * (`build-images deploy --to ROOT`) lands on the roots the nodes run from:
 * one filesystem for the nodes and netroot's ROOT/.netroot records, so a
 * deploy's renames and hard links work as on the server. nfs_export=on lets
 * the boot server's nfs-ganesha serve the same directories.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Cleanup } from './cleanup.js';
import { run, tryRun, waitFor } from './run-command.js';

export class ExportRoot {
  /** The build's rootfs/ directory (one tree per node). */
  readonly trees: string;
  private readonly dir: string;

  constructor(trees: string, dir: string) {
    this.trees = path.resolve(trees);
    this.dir = path.resolve(dir);
  }

  /** The directory that holds ROOT/NODE for every node, as the export root of the profile. */
  get root(): string {
    return path.join(this.dir, 'root');
  }

  node(name: string): string {
    return path.join(this.root, name);
  }

  /** A fresh upper layer (every node as the build made it), mounted until the cleanup. */
  async mount(cleanup: Cleanup): Promise<void> {
    await this.unmount();
    await rm(this.dir, { recursive: true, force: true });
    for (const sub of ['upper', 'work', 'root']) await mkdir(path.join(this.dir, sub), { recursive: true });
    const options = [
      `lowerdir=${this.trees}`,
      `upperdir=${path.join(this.dir, 'upper')}`,
      `workdir=${path.join(this.dir, 'work')}`,
      'index=on',
      'nfs_export=on',
    ];
    await run('mount', ['-t', 'overlay', 'lab-exports', '-o', options.join(','), this.root]);
    cleanup.add('the export root', () => this.unmount());
  }

  private async unmount(): Promise<void> {
    if (!(await tryRun('mountpoint', ['-q', this.root])).ok) return;
    // The nodes' processes die a moment after their init: the root stays busy until they are gone.
    const done = await waitFor(async () => ((await tryRun('umount', [this.root])).ok ? true : undefined), 15_000, 500);
    if (!done) await run('umount', ['-l', this.root]);
  }
}
