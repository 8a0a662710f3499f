/**
 * Path rules shared by extraction, the artifact writer and the tree writer.
 * Every path inside a root is a normalised relative POSIX path: no leading `./`
 * or `/`, no `.`, `..` or empty components; the root itself is ''.
 */

/** Why a member name is unacceptable, or undefined when it is fine. */
export function unsafeReason(name: string): string | undefined {
  if (name.startsWith('/')) return 'is an absolute path';
  if (name.split('/').includes('..')) return 'has a ".." component';
  if (name.includes('\0')) return 'contains a NUL byte';
  return undefined;
}

/** `./etc//passwd/` → `etc/passwd`; `./` → ''. Call unsafeReason first. */
export function normalise(name: string): string {
  return name
    .split('/')
    .filter((part) => part !== '' && part !== '.')
    .join('/');
}

/** The order of every listing and archive: plain code-unit order, so a directory sorts before its contents. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `a/b/c` → ['a', 'a/b']: the directories that must exist before `a/b/c`. */
export function ancestors(relative: string): string[] {
  const parts = relative.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

export function parentOf(relative: string): string {
  const slash = relative.lastIndexOf('/');
  return slash < 0 ? '' : relative.slice(0, slash);
}
