/**
 * Ctrl-C and SIGTERM while netroot writes: each writer registers how to put
 * back what it has half done (`whenStopped`); on the signal every cleanup
 * runs, the CLI says what happened (`onStopped`): the previous output put back,
 * or, when the signal came while the new output was being moved in, that move
 * finished (a cleanup answers `finished`), and the process then ends
 * by that same signal, as it would have without netroot's handler (a shell,
 * or the lab's own handler, sees it). Outside a write the signal acts at once.
 */
import { StoppedError } from './errors.js';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
/** What a cleanup did: `finished` when the write was past putting back (its new output was being moved in, and is whole). */
export type StopOutcome = 'finished' | void;
const cleanups = new Set<() => Promise<StopOutcome>>();
let received: NodeJS.Signals | undefined;
let announce: ((signal: NodeJS.Signals, finished: boolean) => void) | undefined;

/** The signal that is stopping this process, once one came during a write. */
export const stopSignal = (): NodeJS.Signals | undefined => received;

/** For a writer, at the start of each step: once a stop signal came, it goes no further. */
export function throwIfStopped(): void {
  if (received) throw new StoppedError(received);
}

/** What to do once the cleanups ran, before the process ends (the CLI prints a line). */
export function onStopped(report: (signal: NodeJS.Signals, finished: boolean) => void): void {
  announce = report;
}

function stop(signal: NodeJS.Signals): void {
  // A second Ctrl-C while putting things back changes nothing: the cleanups finish either way.
  if (received) return;
  received = signal;
  void (async () => {
    let finished = false;
    for (const cleanup of [...cleanups]) if ((await cleanup().catch(() => undefined)) === 'finished') finished = true;
    announce?.(signal, finished);
    // `on`, not `once`, until here: execa's exit hook re-raises a signal nobody else listens for,
    // which would end the process before the cleanups are done.
    for (const s of SIGNALS) process.off(s, stop);
    process.kill(process.pid, signal);
  })();
}

/** Run `cleanup` if a stop signal comes before the returned release is called. */
export function whenStopped(cleanup: () => Promise<StopOutcome>): () => void {
  if (cleanups.size === 0 && !received) for (const s of SIGNALS) process.on(s, stop);
  cleanups.add(cleanup);
  return () => {
    cleanups.delete(cleanup);
    if (cleanups.size === 0 && !received) for (const s of SIGNALS) process.off(s, stop);
  };
}
