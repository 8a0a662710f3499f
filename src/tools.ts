/**
 * The one place netroot runs other programs. Whatever goes wrong ends in a
 * ToolError (src/errors.ts) naming the program: not installed (exit 3, with
 * the Debian package that provides it), a non-zero exit (with the end of its
 * stderr), or no end in time (stopped). `requirePrograms` checks a list of
 * programs before any work and names every missing one in one error with one
 * `apt-get install` line.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { execa, type Options, type Result, type ResultPromise } from 'execa';
import { MissingProgramError, ToolError, type MissingProgram } from './errors.js';

/** Which Debian (bookworm) package installs each program netroot runs. */
export const PACKAGES: Readonly<Record<string, string>> = {
  'apt-get': 'apt',
  busybox: 'busybox',
  bzip2: 'bzip2',
  chroot: 'coreutils',
  cp: 'coreutils',
  cpio: 'cpio',
  curl: 'curl',
  debugfs: 'e2fsprogs',
  dnsmasq: 'dnsmasq-base',
  exportfs: 'nfs-kernel-server',
  file: 'file',
  find: 'findutils',
  fuse2fs: 'fuse2fs',
  'ganesha.nfsd': 'nfs-ganesha',
  getfattr: 'attr',
  gzip: 'gzip',
  ip: 'iproute2',
  lsinitramfs: 'initramfs-tools-core',
  lz4: 'lz4',
  lzop: 'lzop',
  mariadb: 'mariadb-client',
  'mariadb-install-db': 'mariadb-server',
  mariadbd: 'mariadb-server',
  mkimage: 'u-boot-tools',
  mknod: 'coreutils',
  mmdebstrap: 'mmdebstrap',
  mount: 'mount',
  'nfs-ls': 'libnfs-utils',
  nsenter: 'util-linux',
  openssl: 'openssl',
  python3: 'python3',
  'qemu-system-aarch64': 'qemu-system-arm',
  rpcbind: 'rpcbind',
  rpcinfo: 'rpcbind',
  rsync: 'rsync',
  setfattr: 'attr',
  sfdisk: 'fdisk',
  sh: 'dash',
  ss: 'iproute2',
  ssh: 'openssh-client',
  'systemd-nspawn': 'systemd-container',
  tar: 'tar',
  touch: 'coreutils',
  umount: 'mount',
  unshare: 'util-linux',
  unsquashfs: 'squashfs-tools',
  xz: 'xz-utils',
  zstd: 'zstd',
};

/** The Debian package of a program (by its file name, so `/usr/bin/ssh` is openssh-client). */
export function debianPackage(program: string): string {
  const name = path.basename(program);
  return PACKAGES[name] ?? name;
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where `program` is found on PATH (a name with a slash is taken as a path), or undefined. */
export function findProgram(program: string, PATH: string = process.env.PATH ?? ''): string | undefined {
  if (program.includes('/')) return isExecutable(program) ? program : undefined;
  for (const dir of PATH.split(':')) {
    if (dir && isExecutable(path.join(dir, program))) return path.join(dir, program);
  }
  return undefined;
}

/** Where a user's PATH often does not look (Debian keeps debugfs, sfdisk and exportfs there). */
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function missingProgram(program: string, why: string | undefined, PATH?: string): MissingProgram {
  const elsewhere = program.includes('/')
    ? undefined
    : SBIN.map((dir) => path.join(dir, program)).find((f) => isExecutable(f) && findProgram(program, PATH) === undefined);
  return { program, package: debianPackage(program), ...(why ? { why } : {}), ...(elsewhere ? { elsewhere } : {}) };
}

/** A program some step will run, and what for (said in the message when it is missing). */
export interface ProgramNeed {
  program: string;
  why: string;
  /** Looked up in this PATH rather than the process's (a program run with its own environment). */
  PATH?: string;
}

/**
 * Fails with one MissingProgramError naming every program of `needs` that is
 * not on PATH, its package, and what needs it. Run before any work, so a
 * machine that lacks three packages is told about all three at once.
 */
export function requirePrograms(needs: readonly ProgramNeed[], PATH: string = process.env.PATH ?? ''): void {
  const whys = new Map<string, string[]>();
  for (const need of needs) {
    if (findProgram(need.program, need.PATH ?? PATH)) continue;
    whys.set(need.program, [...new Set([...(whys.get(need.program) ?? []), need.why])]);
  }
  const missing = [...whys].map(([program, why]) => missingProgram(program, why.join(', '), PATH));
  if (missing.length) throw new MissingProgramError(missing);
}

export interface ToolOptions {
  /** What the program does here, for messages: `copying the base /srv/base to out/…` (default: the program and its first argument). */
  what?: string;
  /** What needs the program, said when it is not installed: `remaking the board's uInitrd`. */
  why?: string;
  /** Milliseconds; then the program is stopped (killSignal, SIGKILL after forceKillAfterDelay) and a timeout error thrown. */
  timeout?: number;
  killSignal?: NodeJS.Signals;
  forceKillAfterDelay?: number;
  /** Exit statuses that are not failures (default [0]); `any`: the caller reads the status (and a signal) itself. */
  accept?: readonly number[] | 'any';
  /** Bytes for stdin; without it stdin is closed (`ignore`), unless `stdin: 'pipe'`. */
  input?: string | Uint8Array;
  stdin?: 'pipe';
  /** Write stdout to this file instead of returning it. */
  stdoutFile?: string;
  /** Write stderr to this file instead of returning it (a daemon's log). */
  stderrFile?: string;
  /** Stream stdout (`child.stdout`) instead of collecting it. */
  streamStdout?: boolean;
  /** Stream stderr (`child.stderr`) instead of collecting it. */
  streamStderr?: boolean;
  /** stdout and stderr interleaved, in `all`. */
  all?: boolean;
  env?: Record<string, string | undefined>;
  extendEnv?: boolean;
  cwd?: string;
  maxBuffer?: number;
  /** Keep a trailing newline of stdout (default: stripped). */
  stripFinalNewline?: boolean;
}

export interface ToolResult<Out = string> {
  /** Undefined when a signal ended it (only seen with `accept: 'any'`). */
  status: number | undefined;
  signal: string | undefined;
  stdout: Out;
  stderr: string;
  all: string;
}

function execaOptions(options: ToolOptions, extra: Options = {}): Options {
  return {
    reject: false,
    maxBuffer: options.maxBuffer ?? 2 ** 31 - 1,
    forceKillAfterDelay: options.forceKillAfterDelay ?? 5_000,
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.killSignal ? { killSignal: options.killSignal } : {}),
    ...(options.input !== undefined ? { input: options.input } : { stdin: options.stdin ?? 'ignore' }),
    ...(options.stdoutFile ? { stdout: { file: options.stdoutFile } } : {}),
    ...(options.stderrFile ? { stderr: { file: options.stderrFile } } : {}),
    ...(options.streamStdout || options.streamStderr ? { buffer: { stdout: !options.streamStdout, stderr: !options.streamStderr } } : {}),
    ...(options.all ? { all: true } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.extendEnv === false ? { extendEnv: false } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.stripFinalNewline === false ? { stripFinalNewline: false } : {}),
    ...extra,
  } as Options;
}

const text = (value: unknown): string =>
  value === undefined || value === null
    ? ''
    : typeof value === 'string'
      ? value
      : value instanceof Uint8Array
        ? Buffer.from(value).toString('utf8')
        : String(value);

/** A word for `sh`, whatever it holds: single-quoted. */
export const shellWord = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The last lines a program wrote, without blank lines and the progress lines some redraw with \r. */
export function stderrTail(stderr: string, lines = 8): string[] {
  return stderr
    .split(/[\r\n]+/)
    .map((l) => l.trimEnd())
    .filter((l) => l.trim())
    .slice(-lines);
}

function duration(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} minutes` : `${Math.round(ms / 1000) || ms / 1000} s`;
}

/** Turns a finished run into its result, or the ToolError it amounts to. */
function settle(program: string, args: readonly string[], options: ToolOptions, result: Result): ToolResult<unknown> {
  const what = options.what ?? [program, ...args.slice(0, 1)].join(' ');
  const stderr = text(result.stderr);
  const tail = stderrTail(options.all ? text(result.all) : stderr);
  if (result.exitCode === undefined && (result as { code?: string }).code === 'ENOENT' && !result.timedOut) {
    throw new MissingProgramError([missingProgram(program, options.why, options.env?.PATH)]);
  }
  if (result.timedOut) {
    throw new ToolError(
      'timeout',
      program,
      `${what} did not finish within ${duration(options.timeout ?? 0)} and was stopped (${path.basename(program)})`,
      { stderrTail: tail },
    );
  }
  const status = result.exitCode;
  const signal = result.signal ?? undefined;
  const accepted = options.accept === 'any' || (status !== undefined && (options.accept ?? [0]).includes(status));
  if (!accepted) {
    const how =
      status !== undefined
        ? `exit ${status}`
        : signal
          ? `killed by ${signal}`
          : ((result as { shortMessage?: string }).shortMessage ?? 'did not start');
    const said = tail.length === 0 ? ': no message' : tail.length === 1 ? `: ${tail[0]!.trim()}` : `:\n  ${tail.join('\n  ')}`;
    throw new ToolError('failed', program, `${what} failed (${path.basename(program)} ${how})${said}`, {
      ...(status !== undefined ? { status } : {}),
      ...(signal ? { signal } : {}),
      stderrTail: tail,
    });
  }
  return { status, signal, stdout: result.stdout, stderr, all: text(result.all) };
}

/** Runs a program to its end; its stdout as text. */
export async function runTool(program: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolResult> {
  const result = await execa(program, args, execaOptions(options));
  const settled = settle(program, args, options, result);
  return { ...settled, stdout: text(settled.stdout) };
}

/** Runs a program to its end; its stdout as bytes. */
export async function runToolBytes(program: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolResult<Buffer>> {
  const result = await execa(program, args, execaOptions(options, { encoding: 'buffer' }));
  const settled = settle(program, args, options, result);
  return { ...settled, stdout: Buffer.from((settled.stdout as Uint8Array | undefined) ?? []) };
}

export interface RunningTool {
  /** The process, to stream into (`stdin: 'pipe'`) or out of (`streamStdout`), or to kill. */
  child: ResultPromise;
  /** Waits for the end: the result, or the ToolError it amounts to. */
  done(): Promise<ToolResult<undefined>>;
  /**
   * Ends it, whatever its exit: `signal` first (if given), then SIGKILL once `graceMs` passed
   * without an end; resolves once it is gone. For what runs until it is stopped (a daemon).
   */
  stop(graceMs: number, signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a program whose input or output is streamed, or that runs until it is stopped (its output to files). */
export function startTool(program: string, args: readonly string[], options: ToolOptions = {}): RunningTool {
  const child = execa(program, args, execaOptions(options));
  return {
    child,
    async done() {
      const settled = settle(program, args, options, await child);
      return { ...settled, stdout: undefined };
    },
    async stop(graceMs, signal) {
      if (signal) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([
        child.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (!ended) child.kill('SIGKILL');
      await child;
    },
  };
}
