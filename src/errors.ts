/**
 * Typed errors. Every error a user can cause carries the message they should read
 * and the exit code; the CLI prints them in one place (src/cli.ts).
 */

export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;

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

/** Wrong command-line usage or a missing input file. Exit 2. */
export class UsageError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
  }
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
        'Nothing was written. If the cluster\'s secrets file was lost or another one was picked up, restore it (README, "Secrets");\n' +
        'to change them on purpose, run again with --rotate-secrets and reboot every node.',
      EXIT_USAGE,
    );
    this.changes = changes;
  }
}

/** A program this needs is not installed here or on the target host. Exit 1. */
export class MissingProgramError extends NetrootError {
  constructor(program: string, pkg: string, where = 'this machine') {
    super(`${program} is not installed on ${where}: install the Debian package ${pkg} (apt-get install ${pkg})`, EXIT_FAILURE);
  }
}

/** A command on a deploy's target failed (ssh, rsync, a file operation). Exit 1. */
export class TargetError extends NetrootError {
  constructor(message: string) {
    super(message, EXIT_FAILURE);
  }
}
