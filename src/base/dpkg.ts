/**
 * What a root filesystem has installed, read from dpkg's own database
 * (`var/lib/dpkg/status`) without running dpkg: the root may be for another
 * architecture, and reading a file needs nothing.
 *
 * The file is RFC 822-style paragraphs separated by blank lines; a field may
 * continue on lines starting with a space or tab. Only `Status: install ok
 * installed` counts: removed packages keep a paragraph
 * (`deinstall ok config-files`), and a half-configured package is not usable.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { RootfsError } from '../entries/errors.js';

export interface InstalledPackage {
  name: string;
  version: string;
  architecture: string;
}

/** Field name (lower case) → value; continuation lines are joined with newlines. */
export function parseParagraphs(text: string): Map<string, string>[] {
  const paragraphs: Map<string, string>[] = [];
  let current: Map<string, string> | undefined;
  let last: string | undefined;
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    if (line.trim() === '') {
      current = undefined;
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (current && last !== undefined) current.set(last, `${current.get(last)}\n${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!current) paragraphs.push((current = new Map()));
    last = line.slice(0, colon).toLowerCase();
    current.set(last, line.slice(colon + 1).trim());
  }
  return paragraphs;
}

/** Installed packages by name. A name installed for two architectures (multiarch) keeps both under `name:arch` too. */
export function parseDpkgStatus(text: string): Map<string, InstalledPackage> {
  const installed = new Map<string, InstalledPackage>();
  for (const p of parseParagraphs(text)) {
    const name = p.get('package');
    if (!name || p.get('status')?.split(/\s+/).join(' ') !== 'install ok installed') continue;
    const pkg = { name, version: p.get('version') ?? '', architecture: p.get('architecture') ?? '' };
    if (!installed.has(name)) installed.set(name, pkg);
    if (pkg.architecture) installed.set(`${name}:${pkg.architecture}`, pkg);
  }
  return installed;
}

export async function readInstalledPackages(root: string): Promise<Map<string, InstalledPackage>> {
  const file = path.join(root, 'var/lib/dpkg/status');
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new RootfsError(
      error.code === 'ENOENT'
        ? `${root} has no var/lib/dpkg/status: it is not a Debian-based root filesystem (or its package database was removed)`
        : `${file} cannot be read: ${error.message}`,
    );
  });
  return parseDpkgStatus(text);
}

/** The names in `required` that the root does not have installed, in the order given. `name:arch` asks for one architecture. */
export async function missingPackages(root: string, required: string[]): Promise<string[]> {
  const installed = await readInstalledPackages(root);
  return required.filter((name) => !installed.has(name));
}
