/**
 * Errors of the root filesystem engine. All are the user's to fix (a hostile or
 * broken base, an overlay that would write through a base symlink), so they
 * exit 2 like the other input errors, and the message names the base and the
 * member or path at fault.
 */
import { EXIT_USAGE, NetrootError } from '../errors.js';

export class RootfsError extends NetrootError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT_USAGE, options);
  }
}

/** A base tarball that is unsafe or unreadable: `base.tar.gz: member ../x: …`. */
export class BaseArchiveError extends RootfsError {
  readonly source: string;
  readonly member: string | undefined;
  constructor(source: string, member: string | undefined, message: string, options?: { cause?: unknown }) {
    super(`${source}: ${member === undefined ? '' : `member ${JSON.stringify(member)}: `}${message}`, options);
    this.source = source;
    this.member = member;
  }
}

/** An overlay file that cannot be laid over the base without following a base symlink or clobbering a directory. */
export class OverlayConflictError extends RootfsError {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`overlay ${JSON.stringify(path)}: ${message}`);
    this.path = path;
  }
}
