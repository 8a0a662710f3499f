/**
 * Where a deploy writes: an export root on this machine, or `[user@]host:/dir`
 * over ssh. Both are driven the same way, by small POSIX sh scripts and rsync,
 * so the tests that deploy to a local directory also prove the remote path;
 * only how a script or rsync reaches the host differs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MissingProgramError, TargetError, UsageError } from '../errors.js';
import { runTool, shellWord, type ProgramNeed } from '../tools.js';

export type TargetSpec = { kind: 'local'; dir: string } | { kind: 'ssh'; host: string; dir: string };

/** `/srv/nfs/opz3`, `out/exports` or `[user@]host:/srv/nfs/opz3`. */
export function parseTarget(spec: string, cwd: string): TargetSpec {
  const remote = /^((?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])):(.*)$/.exec(spec);
  if (remote && !spec.startsWith('/') && !spec.startsWith('.')) {
    const dir = remote[2]!;
    if (!dir.startsWith('/'))
      throw new UsageError(`--to ${spec}: give an absolute directory on ${remote[1]}, such as ${remote[1]}:/srv/nfs/CLUSTER`);
    return { kind: 'ssh', host: remote[1]!, dir: path.posix.normalize(dir).replace(/\/+$/, '') || '/' };
  }
  return { kind: 'local', dir: path.resolve(cwd, spec) };
}

/** A shell word: single-quoted. */
export const q = shellWord;

export interface Target {
  spec: TargetSpec;
  /** For messages: the directory, or host:directory. */
  shown: string;
  /** `sh -c SCRIPT sh ARGS…` on the target host; its stdout. Exit status 3 is returned, not thrown (a "not there" answer). */
  sh(script: string, args?: string[], input?: string | Buffer): Promise<{ stdout: string; code: number }>;
  /** An absolute path on the target host as rsync names it. */
  rsyncPath(p: string): string;
  /** Options rsync needs to reach the host. */
  rsyncOptions: string[];
  /** Ends the shared ssh connection, if one was opened. */
  close(): Promise<void>;
}

async function run(
  file: string,
  args: string[],
  input: string | Buffer | undefined,
  what: string,
): Promise<{ stdout: string; code: number }> {
  // Any status comes back: a failure here is the target's (TargetError); a missing program is a MissingProgramError.
  const result = await runTool(file, args, { accept: 'any', stripFinalNewline: false, ...(input !== undefined ? { input } : {}), what });
  const code = result.status ?? 1;
  if (code !== 0 && code !== 3)
    throw new TargetError(
      `${what} failed (exit ${code}${result.signal ? `, ${result.signal}` : ''}): ${result.stderr.trim().split('\n').slice(-3).join(' / ') || 'no message'}`,
    );
  return { stdout: result.stdout, code };
}

/** `ssh` argv (default: plain `ssh`, with the user's ~/.ssh/config), never asking for a password. */
export function openTarget(spec: TargetSpec, ssh: string[] = ['ssh']): Target {
  if (spec.kind === 'local') {
    return {
      spec,
      shown: spec.dir,
      sh: (script, args = [], input) => run('sh', ['-c', script, 'sh', ...args], input, 'a command on this machine'),
      rsyncPath: (p) => p,
      rsyncOptions: [],
      close: async () => undefined,
    };
  }
  const [program, ...given] = ssh;
  // A deploy runs dozens of short commands: one connection, shared by all of them (and rsync), ended by close().
  const control = mkdtempSync(path.join(os.tmpdir(), 'netroot-ssh-'));
  const options = [
    ...given,
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=20',
    '-o',
    'ControlMaster=auto',
    '-o',
    `ControlPath=${control}/%C`,
    '-o',
    'ControlPersist=60',
  ];
  const base = [...options, spec.host];
  const shown = `${spec.host}:${spec.dir}`;
  return {
    spec,
    shown,
    async sh(script, args = [], input) {
      // ssh joins its arguments into one command line for the remote shell: quote each word once.
      return run(program!, [...base, `sh -c ${q(script)} sh ${args.map(q).join(' ')}`], input, `ssh ${spec.host}`);
    },
    rsyncPath: (p) => `${spec.host}:${p}`,
    rsyncOptions: ['-e', [program!, ...options].map(q).join(' ')],
    async close() {
      await runTool(program!, [...options, '-O', 'exit', spec.host], { accept: 'any', timeout: 10_000 }).catch(() => undefined);
      rmSync(control, { recursive: true, force: true });
    },
  };
}

/**
 * rsync SRC… DEST with the options given; a missing rsync here or on the target is named with its package.
 * Exit 24 ("some files vanished before they could be transferred") is not an error.
 */
export async function rsync(target: Target | undefined, args: string[], input?: string): Promise<void> {
  const result = await runTool('rsync', [...(target?.rsyncOptions ?? []), ...args], {
    accept: 'any',
    ...(input !== undefined ? { input } : {}),
    why: 'deploying',
  });
  if (result.status === 0 || result.status === 24) return;
  const stderr = result.stderr;
  if (/rsync: (command )?not found|rsync: No such file/.test(stderr))
    throw new MissingProgramError([{ program: 'rsync', package: 'rsync' }], target?.spec.kind === 'ssh' ? target.spec.host : 'the target');
  throw new TargetError(
    `rsync to ${target?.shown ?? 'the target'} failed (exit ${result.status ?? result.signal}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
  );
}

/** What a deploy runs on this machine: rsync, and ssh for a remote target. */
export function deployPrograms(spec: TargetSpec, ssh: string[] = ['ssh']): ProgramNeed[] {
  return [
    { program: 'rsync', why: 'deploying' },
    ...(spec.kind === 'ssh' ? [{ program: ssh[0]!, why: `reaching ${spec.host}` }] : [{ program: 'sh', why: 'deploying' }]),
  ];
}
