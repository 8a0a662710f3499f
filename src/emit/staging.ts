/**
 * Outputs appear whole or not at all: everything is written into a hidden
 * staging directory beside the target and renamed into place at the end. An
 * error, Ctrl-C or SIGTERM removes the staging directory (and puts back what
 * the write took from the previous output); a SIGKILL leaves it hidden, never
 * a half-written target, and the next run removes it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { alive } from '../cache.js';
import { throwIfStopped, whenStopped } from '../stop.js';

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

export async function writeAtomically<T>(target: string, write: (staging: string, rollback: Rollback) => Promise<T>): Promise<T> {
  const parent = path.dirname(target);
  const base = path.basename(target);
  await mkdir(parent, { recursive: true });
  await removeStale(parent, base);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const staging = path.join(parent, `.${base}.tmp-${tag}`);
  const old = path.join(parent, `.${base}.old-${tag}`);
  const rollback = new Rollback();
  // Ctrl-C or a SIGTERM (src/stop.ts): the write stops at its next step (the writers check stopSignal, and
  // the programs it runs got the signal too, on a terminal); what it took from the previous output (trees,
  // archives being revised) is put back once it has stopped, never while it still writes, and the staging
  // directory goes. Once the new output is being moved in, that finishes and the previous output goes. A
  // SIGKILL still leaves them to the next run.
  let settled: Promise<unknown> = Promise.resolve();
  let movedIn = false;
  const release = whenStopped(async () => {
    await settled.catch(() => undefined);
    rmSync(staging, GONE);
    rmSync(old, GONE);
    return movedIn ? 'finished' : undefined;
  });
  try {
    await mkdir(staging, { mode: 0o755 });
    const writing = (async () => {
      try {
        const written = await write(staging, rollback);
        throwIfStopped();
        return written;
      } catch (error) {
        await rollback.run();
        await rm(staging, GONE);
        throw error;
      }
    })();
    settled = writing;
    const result = await writing;
    const replacing = existsSync(target);
    const moving = (async () => {
      if (replacing) await rename(target, old);
      try {
        await rename(staging, target);
        movedIn = true;
      } catch (error) {
        if (replacing) await rename(old, target);
        await rollback.run();
        await rm(staging, GONE);
        throw error;
      }
      // The previous output is removed before this returns: a build that has ended leaves nothing being deleted in --out.
      if (replacing) await rm(old, GONE);
    })();
    settled = moving;
    await moving;
    return result;
  } finally {
    release();
  }
}

const GONE = { recursive: true, force: true, maxRetries: 10, retryDelay: 50 };
