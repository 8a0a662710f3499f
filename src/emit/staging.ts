/**
 * Outputs appear whole or not at all: everything is written into a hidden
 * staging directory beside the target and renamed into place at the end. An
 * error removes the staging directory; a kill leaves it hidden, never a
 * half-written target, and the next run removes it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { alive } from '../cache.js';

/** Remove staging directories left by killed runs for the same target. */
async function removeStale(parent: string, base: string): Promise<void> {
  const pattern = new RegExp(`^\\.${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(?:tmp|old)-(\\d+)-[0-9a-f]+$`);
  // A run killed between moving the old output aside and moving the new one in
  // left no target: the old output goes back, whole, before anything is swept.
  const target = path.join(parent, base);
  if (!existsSync(target)) {
    const names = await readdir(parent).catch(() => [] as string[]);
    const old = names.find((n) => {
      const m = pattern.exec(n);
      return m && n.includes('.old-') && !alive(Number(m[1]));
    });
    if (old) await rename(path.join(parent, old), target);
  }
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const match = pattern.exec(name);
    if (match && !alive(Number(match[1]))) await rm(path.join(parent, name), { recursive: true, force: true });
  }
}

function removeInBackground(dir: string): void {
  const child = spawn('rm', ['-rf', '--', dir], { detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
}

/**
 * Steps that put back what a write took from the previous output (a node tree
 * moved into the staging directory instead of being copied), run in reverse
 * order when the write fails, before the staging directory is removed.
 */
export class Rollback {
  private readonly steps: (() => Promise<void>)[] = [];
  private running?: Promise<void>;
  add(step: () => Promise<void>): void {
    this.steps.push(step);
  }
  /** Runs once: a second caller (a signal, then the failing write) waits for the same run. */
  run(): Promise<void> {
    this.running ??= (async () => {
      // Every step is tried: one that fails must not keep the others from putting their part back.
      for (const step of this.steps.splice(0).reverse()) await step().catch(() => undefined);
    })();
    return this.running;
  }
}

const STOPPING: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export async function writeAtomically<T>(target: string, write: (staging: string, rollback: Rollback) => Promise<T>): Promise<T> {
  const parent = path.dirname(target);
  const base = path.basename(target);
  await mkdir(parent, { recursive: true });
  await removeStale(parent, base);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const staging = path.join(parent, `.${base}.tmp-${tag}`);
  await mkdir(staging, { mode: 0o755 });
  let result: T;
  const rollback = new Rollback();
  // Ctrl-C or a SIGTERM while writing: what was taken from the previous output (trees, archives being
  // revised) goes back, then the signal is raised again, so the process ends as it would have (or, in the
  // lab, its own handler does). A SIGKILL still loses it. `on`, not `once`: execa's exit hook re-raises a
  // signal nobody else listens for, which would end the process before the rollback is done.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    void rollback
      .run()
      .then(() => rm(staging, { recursive: true, force: true }))
      .finally(() => {
        for (const s of STOPPING) process.off(s, stop);
        process.kill(process.pid, signal);
      });
  };
  for (const signal of STOPPING) process.on(signal, stop);
  try {
    result = await write(staging, rollback);
  } catch (error) {
    await rollback.run();
    await rm(staging, { recursive: true, force: true });
    throw error;
  } finally {
    for (const signal of STOPPING) process.off(signal, stop);
  }
  const old = path.join(parent, `.${base}.old-${tag}`);
  const replacing = existsSync(target);
  if (replacing) await rename(target, old);
  try {
    await rename(staging, target);
  } catch (error) {
    if (replacing) await rename(old, target);
    await rollback.run();
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  // The previous output is out of the way: it is deleted in the background so a
  // rebuild returns as soon as the new output is in place (the next run removes
  // whatever a deleter that was cut short left behind).
  if (replacing) removeInBackground(old);
  return result;
}
