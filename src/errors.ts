/**
 * Typed errors. Every error a user can cause carries the message they should read
 * and the exit code; the CLI prints them in one place (src/cli.ts).
 */

export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;
/**
 * A program netroot runs is not installed (here, or on a deploy's target host). Its own code, the
 * same wherever the program is missing: neither the input's fault (2) nor a build that broke (1),
 * but the machine's, and a CI job or a builder image can act on it (install the packages the message
 * lists, run again). Not 127, which a shell returns when build-images itself is not found.
 */
export const EXIT_MISSING_PROGRAM = 3;
/** A bug in netroot (sysexits' EX_SOFTWARE): not the input's fault, nor the machine's; worth a report. */
export const EXIT_INTERNAL = 70;

/** Where in a profile a value came from, for messages like `profiles/opz3.yaml:14:5`. */
export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

export function formatLocation(loc: SourceLocation | undefined): string {
  return loc ? `${loc.file}:${loc.line}:${loc.column}` : '';
}

export class NetrootError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILURE, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }

  /** The error as a script reads it under --json: the message and exit code, and where it is (file, line, key) when known. */
  toJSON(): ErrorReport {
    return { message: this.message, exitCode: this.exitCode };
  }
}

export interface ErrorReport {
  message: string;
  exitCode: number;
  /** A file at fault as a whole (a template), with the line and column when known. */
  file?: string;
  line?: number;
  column?: number;
  /** A profile's problems, each with its place and key. */
  issues?: { file?: string; line?: number; column?: number; key: string; message: string }[];
}

/** One problem found in a profile: where it is, which key, and what to do. */
export interface ProfileIssue {
  location?: SourceLocation;
  /** Key path in the user's words, e.g. `nodes[2].ip`. */
  key: string;
  message: string;
}

export function formatIssue(issue: ProfileIssue): string {
  const where = formatLocation(issue.location);
  return `${where ? where + ' ' : ''}${issue.key ? issue.key + ': ' : ''}${issue.message}`;
}

/** The profile (or its secrets) is wrong. Exit 2; nothing has been written. */
export class ProfileError extends NetrootError {
  readonly issues: ProfileIssue[];
  constructor(issues: ProfileIssue[]) {
    const lines = issues.map(formatIssue);
    const head = issues.length === 1 ? 'The profile has a problem:' : `The profile has ${issues.length} problems:`;
    super(`${head}\n${lines.map((l) => `  ${l}`).join('\n')}`, EXIT_USAGE);
    this.issues = issues;
  }

  override toJSON(): ErrorReport {
    return { ...super.toJSON(), issues: this.issues.map((i) => ({ ...(i.location ?? {}), key: i.key, message: i.message })) };
  }
}

/**
 * A bug: something netroot's own code promised did not hold (a decision missing for a node, a file written after
 * it was closed). Never the user's input; the CLI says to report it, with the stack. Exit 70.
 */
export class InternalError extends NetrootError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`internal error (please report it): ${message}`, EXIT_INTERNAL, options);
  }
}

/** Wrong command-line usage or a missing input file. Exit 2. */
export class UsageError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

const WHY: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory',
  ENOENT: 'it does not exist',
  ENOTDIR: 'a part of its path is not a directory',
  ELOOP: 'its symlinks loop',
  EIO: 'an I/O error',
};

/**
 * A file the user named (a profile, a base) that this process cannot read, as an input error (exit 2)
 * rather than Node's own error: `what` it is, where, why in words, and what to do.
 */
export function cannotRead(what: string, file: string, error: unknown): UsageError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  const why = WHY[code] ?? (error instanceof Error ? error.message : String(error));
  const fix =
    code === 'EACCES' || code === 'EPERM'
      ? `: run as a user who may read it${what === 'base' ? ' (a base is read as root, to keep its owners)' : ''}, or give it read permission`
      : '';
  return new UsageError(`cannot read the ${what} ${file} (${why})${fix}`);
}

/** A template refers to something the node does not have, or does not parse. Exit 2. */
export class TemplateError extends NetrootError {
  readonly template: string;
  constructor(template: string, message: string, options?: { cause?: unknown }) {
    super(`${template}: ${message}`, EXIT_USAGE, options);
    this.template = template;
  }

  override toJSON(): ErrorReport {
    // `template` is the file, or FILE:LINE:COLUMN where the template uses a value the node lacks.
    const at = /^(.*):(\d+):(\d+)$/.exec(this.template);
    return { ...super.toJSON(), ...(at ? { file: at[1]!, line: Number(at[2]), column: Number(at[3]) } : { file: this.template }) };
  }
}

/** OUT/CLUSTER exists and is not netroot's own output: a build would replace it whole. Exit 2; nothing was written. */
export class NotOwnedError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

/** The secrets at hand differ from the ones a build output or a deployed export root holds. Exit 2; nothing was written. */
export class SecretsChangedError extends NetrootError {
  readonly changes: string[];
  constructor(where: string, changes: string[]) {
    super(
      `The secrets differ from the ones ${where} already holds; this would change\n${changes.map((c) => `  - ${c}`).join('\n')}\n` +
        "Nothing was written. If the cluster's secrets file was lost or another one was picked up, restore it (docs/secrets.md);\n" +
        'to change them on purpose, run again with --rotate-secrets and reboot every node.',
      EXIT_USAGE,
    );
    this.changes = changes;
  }
}

/** How an external program let netroot down. */
export type ToolFailure = 'missing' | 'failed' | 'timeout';

/**
 * An external program could not do its part (src/tools.ts runs them all): it is not installed
 * (exit 3, MissingProgramError), it exited non-zero (exit 1; `status`, and the end of its stderr in
 * `stderrTail`), or it ran out of time and was stopped (exit 1).
 */
export class ToolError extends NetrootError {
  readonly failure: ToolFailure;
  /** The program as it was called (`zstd`, `/usr/bin/ssh`). */
  readonly program: string;
  /** Its exit status; undefined when it was missing, timed out or ended by a signal. */
  readonly status: number | undefined;
  readonly signal: string | undefined;
  /** The last lines it wrote to stderr. */
  readonly stderrTail: string[];
  constructor(
    failure: ToolFailure,
    program: string,
    message: string,
    details: { status?: number; signal?: string; stderrTail?: string[]; exitCode?: number; cause?: unknown } = {},
  ) {
    super(
      message,
      details.exitCode ?? (failure === 'missing' ? EXIT_MISSING_PROGRAM : EXIT_FAILURE),
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.failure = failure;
    this.program = program;
    this.status = details.status;
    this.signal = details.signal;
    this.stderrTail = details.stderrTail ?? [];
  }
}

/** A program that is not installed, the Debian package that provides it, and what it is needed for. */
export interface MissingProgram {
  program: string;
  package: string;
  /** What needs it: `reading the directory base's file capabilities`. */
  why?: string;
  /** Installed, but in a directory not on PATH (a user's PATH without /usr/sbin). */
  elsewhere?: string;
}

/** Programs this needs are not installed here or on the target host: all of them, with one `apt-get install` line. Exit 3. */
export class MissingProgramError extends ToolError {
  readonly missing: MissingProgram[];
  readonly where: string;
  constructor(missing: MissingProgram[], where = 'this machine') {
    super('missing', missing[0]!.program, missingMessage(missing, where));
    this.missing = missing;
    this.where = where;
  }
}

function missingMessage(missing: MissingProgram[], where: string): string {
  const packages = [...new Set(missing.filter((m) => !m.elsewhere).map((m) => m.package))].sort();
  const pathDirs = [...new Set(missing.flatMap((m) => (m.elsewhere ? [m.elsewhere.slice(0, m.elsewhere.lastIndexOf('/')) || '/'] : [])))];
  const fix = [
    ...(packages.length
      ? [`install ${packages.length === 1 ? `the Debian package ${packages[0]}` : 'them'} (apt-get install ${packages.join(' ')})`]
      : []),
    ...(pathDirs.length ? [`add ${pathDirs.join(' and ')} to PATH`] : []),
  ].join('; ');
  if (missing.length === 1) {
    const m = missing[0]!;
    const why = m.why ? ` (needed for ${m.why})` : '';
    return m.elsewhere
      ? `${m.program} is not on PATH${why}, though it is installed at ${m.elsewhere}: ${fix}`
      : `${m.program} is not installed on ${where}${why}: ${fix}`;
  }
  const lines = missing.map(
    (m) =>
      `  - ${m.program} (Debian package ${m.package})${m.why ? `, for ${m.why}` : ''}${m.elsewhere ? `: installed at ${m.elsewhere}, not on PATH` : ''}`,
  );
  return `${missing.length} programs netroot needs are not installed on ${where}:\n${lines.join('\n')}\n${fix.charAt(0).toUpperCase()}${fix.slice(1)}.`;
}

/**
 * netroot's records on a deploy's target (ROOT/.netroot) cannot be used: damaged, written by
 * something else, or another cluster's. Exit 2: what to do is the user's call; nothing was written.
 */
export class TargetRecordError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

/** The build in OUT/CLUSTER was made from other inputs than the profile given, and cannot be rebuilt here. Exit 2; nothing was written. */
export class StaleBuildError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

/** Ctrl-C or SIGTERM stopped a write (src/stop.ts); the process then ends by that signal. Exit 128 + the signal's number. */
export class StoppedError extends NetrootError {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`stopped by ${signal}`, 128 + (signal === 'SIGINT' ? 2 : 15));
    this.signal = signal;
  }
}

/** A rollback that finds nothing to undo. Exit 2; nothing was written. */
export class NothingToUndoError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
}

/** A command on a deploy's target failed (ssh, rsync, a file operation). Exit 1. */
export class TargetError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_FAILURE);
  }
}

/** A rollout that stopped at a node that did not come back healthy, or before a reboot of an unhealthy cluster. Exit 1; the nodes after it were left alone. */
export class RolloutStoppedError extends NetrootError {
  constructor(
    message: string,
    readonly node: string,
    readonly problems: string[],
  ) {
    super(message, EXIT_FAILURE);
  }

  override toJSON(): ErrorReport & { node: string; problems: string[] } {
    return { ...super.toJSON(), node: this.node, problems: this.problems };
  }
}
