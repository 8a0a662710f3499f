/**
 * Running programs for the lab: every call has a timeout, and a failure says
 * which command failed with what it printed. `inNet` runs a program in a
 * network namespace through nsenter, which (unlike `ip netns exec`) leaves
 * /sys alone, so systemd-nspawn still finds the host's cgroups.
 */
import { ToolError } from '../errors.js';
import { runTool } from '../tools.js';
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

/**
 * Runs a program through src/tools.ts, the one place that runs programs: one that is not installed stops the
 * lab with its Debian package named. Any exit status is a result; a timeout is a failed result that says so.
 */
export async function tryRun(command: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT;
  try {
    const result = await runTool(command, args, {
      accept: 'any',
      timeout,
      forceKillAfterDelay: 2_000,
      what: [command, ...args].join(' '),
      why: 'the lab (scripts/install-lab-deps.sh installs what it needs)',
      ...(options.input !== undefined ? { input: options.input } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    return { ok: result.status === 0, exitCode: result.status, stdout: result.stdout, stderr: result.stderr };
  } catch (error) {
    if (!(error instanceof ToolError) || error.failure !== 'timeout') throw error;
    return {
      ok: false,
      exitCode: undefined,
      stdout: '',
      stderr: `${error.stderrTail.join('\n')}\n(stopped after ${timeout / 1000} s)`.trim(),
    };
  }
}

export async function run(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  const result = await tryRun(command, args, options);
  if (!result.ok) {
    const output = (result.stderr || result.stdout).trim().split('\n').slice(-6).join('\n  ');
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
