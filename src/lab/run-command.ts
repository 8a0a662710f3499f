/**
 * Running programs for the lab: every call has a timeout, and a failure says
 * which command failed with what it printed. `inNet` runs a program in a
 * network namespace through nsenter, which (unlike `ip netns exec`) leaves
 * /sys alone, so systemd-nspawn still finds the host's cgroups.
 */
import { execa, type ResultPromise } from 'execa';
import { LabError } from './errors.js';

export interface CommandResult {
  ok: boolean;
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  env?: Record<string, string>;
}

const DEFAULT_TIMEOUT = 30_000;

export async function tryRun(command: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
  const result = await execa(command, args, {
    reject: false,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT,
    forceKillAfterDelay: 2_000,
    stripFinalNewline: true,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' as const }),
    ...(options.env ? { env: options.env } : {}),
  });
  return {
    ok: !result.failed,
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? ''),
    stderr: result.timedOut
      ? `${String(result.stderr ?? '')}\n(stopped after ${Math.round((options.timeoutMs ?? DEFAULT_TIMEOUT) / 1000)} s)`.trim()
      : String(result.stderr ?? ''),
  };
}

export async function run(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  const result = await tryRun(command, args, options);
  if (!result.ok) {
    const output = (result.stderr || result.stdout).trim().split('\n').slice(-6).join('\n  ');
    if (result.exitCode === undefined && /ENOENT/.test(output))
      throw new LabError(`${command} is not installed: run scripts/install-lab-deps.sh`);
    throw new LabError(`${[command, ...args].join(' ')} failed (exit ${result.exitCode ?? '?'}):\n  ${output}`);
  }
  return result.stdout;
}

export const netnsPath = (ns: string): string => `/run/netns/${ns}`;

/** nsenter arguments that put a program into a lab namespace's network. */
export const inNetArgs = (ns: string, command: string, args: string[]): string[] => [`--net=${netnsPath(ns)}`, '--', command, ...args];

export const inNet = (ns: string, command: string, args: string[], options?: RunOptions): Promise<string> =>
  run('nsenter', inNetArgs(ns, command, args), options);
export const tryInNet = (ns: string, command: string, args: string[], options?: RunOptions): Promise<CommandResult> =>
  tryRun('nsenter', inNetArgs(ns, command, args), options);

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; undefined on timeout. */
export async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 1_000): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() + intervalMs > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Waits up to `graceMs` for a child to end, then kills it outright; resolves once it is gone. */
export async function endWithin(child: ResultPromise, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    child.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
  ]);
  clearTimeout(timer);
  if (!ended) child.kill('SIGKILL');
  await child;
}
