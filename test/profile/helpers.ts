/**
 * Small helpers for the profile tests: build a profile from the bundled opz3
 * text plus a few visible string edits, write it into a fresh temp dir, and
 * find where a piece of text sits in it (so expected line:column values are
 * computed from the fixture, never copied from the program's output).
 */
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { ProfileError, type ProfileIssue } from '../../src/errors.js';
import { loadProfile, type LoadedProfile } from '../../src/profile/load.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = path.join(REPO, 'test/fixtures/profiles');
export const OPZ3_FILE = path.join(REPO, 'profiles/opz3.yaml');
export const OPZ3 = await readFile(OPZ3_FILE, 'utf8');

/** A replacement in a profile text: `from` must occur exactly once. */
export type Edit = readonly [from: string, to: string];

/** `text` with each edit applied; fails loudly when an edit no longer matches exactly one place. */
export function edit(text: string, ...edits: Edit[]): string {
  let out = text;
  for (const [from, to] of edits) {
    const count = out.split(from).length - 1;
    if (count !== 1) throw new Error(`fixture edit: ${JSON.stringify(from)} occurs ${count} times, expected once`);
    out = out.replace(from, () => to);
  }
  return out;
}

/** The opz3 profile with some edits. */
export const opz3With = (...edits: Edit[]): string => edit(OPZ3, ...edits);

/** Scratch directories of this test file, removed when its process exits. */
const scratch: string[] = [];
process.once('exit', () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

export async function tempDir(prefix = 'netroot-profile-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** Write `files` (name → text) into a new temp dir and return the dir. */
export async function writeProfiles(files: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

/** 1-based line number of the only line of `text` that contains `needle`. */
export function lineOf(text: string, needle: string): number {
  const lines = text.split('\n');
  const hits = lines.flatMap((l, i) => (l.includes(needle) ? [i + 1] : []));
  if (hits.length !== 1) throw new Error(`fixture: ${JSON.stringify(needle)} is on ${hits.length} lines, expected exactly one`);
  return hits[0]!;
}

/**
 * Where a problem should be reported: the line holding `line` (unique), at the
 * column where `col` starts on that line (the first occurrence).
 */
export interface Where {
  line: string;
  col: string;
  /** Characters to add to the column of `col` (to point inside it). */
  offset?: number;
  /** File name as shown in messages (default: the file the case loads). */
  file?: string;
}

export function position(text: string, where: Where): { line: number; column: number } {
  const line = lineOf(text, where.line);
  const index = text.split('\n')[line - 1]!.indexOf(where.col);
  if (index < 0) throw new Error(`fixture: ${JSON.stringify(where.col)} is not on line ${line}`);
  return { line, column: index + 1 + (where.offset ?? 0) };
}

/** Load a profile and return the ProfileError it must throw. */
export async function loadError(dir: string, ref: string): Promise<ProfileError> {
  let loaded: LoadedProfile | undefined;
  try {
    loaded = await loadProfile(ref, { cwd: dir });
  } catch (error) {
    if (error instanceof ProfileError) return error;
    throw error;
  }
  assert.unreachable(`${ref} loaded without error (cluster ${loaded.cluster.name}), but it should have been refused`);
  throw new Error('unreachable');
}

export interface ExpectedIssue {
  /** Where the issue must point; `file` picks which of `texts` the needles are looked up in. */
  at: Where;
  key: string;
  /** The exact message; a function gets `line(needle)` for lines the message cites. */
  message: string | ((line: (needle: string, file?: string) => number) => string);
}

/**
 * Check a ProfileError issue by issue: file, line, column, key path and the
 * exact wording; also that the printed message shows each as `file:line:col key: message`,
 * and that it exits with code 2.
 */
export function assertIssues(error: ProfileError, texts: Record<string, string>, defaultFile: string, expected: ExpectedIssue[]): void {
  assert.is(error.exitCode, 2, 'a bad profile exits with code 2');
  const got = error.issues.map(
    (i) => `${i.location ? `${i.location.file}:${i.location.line}:${i.location.column}` : '-'} ${i.key}: ${i.message}`,
  );
  assert.is(error.issues.length, expected.length, `number of issues; got:\n${got.join('\n')}`);
  expected.forEach((want, n) => {
    const issue: ProfileIssue = error.issues[n]!;
    const file = want.at.file ?? defaultFile;
    const text = texts[file];
    if (text === undefined) throw new Error(`fixture: no text for ${file}`);
    const { line, column } = position(text, want.at);
    const message =
      typeof want.message === 'string' ? want.message : want.message((needle, f) => lineOf(texts[f ?? defaultFile] ?? '', needle));
    assert.equal(issue.location, { file, line, column }, `location of issue ${n + 1}: ${got[n]}`);
    assert.is(issue.key, want.key, `key of issue ${n + 1}`);
    assert.is(issue.message, message, `message of issue ${n + 1}`);
    assert.ok(
      error.message.includes(`  ${file}:${line}:${column} ${want.key ? `${want.key}: ` : ''}${message}`),
      `printed message shows issue ${n + 1}:\n${error.message}`,
    );
  });
}
