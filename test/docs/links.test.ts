/**
 * README.md, BENCHMARKS.md and every page under docs/ work from a fresh clone:
 * every relative link names a file the repository holds, every #anchor a
 * heading, and every repository path written in `code` (profiles/…, scripts/…)
 * exists. "Holds" means tracked by git, not merely present in this working tree.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Paths in `code` that look like the repository's but are not: what each one is. */
const ELSEWHERE: Record<string, string> = {
  'scripts/nfs': "initramfs-tools' NFS-root script inside an initrd",
};

const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: REPO, encoding: 'utf8', timeout: 10_000 }).split('\0').filter(Boolean);
const trackedDirs = new Set(
  tracked.flatMap((f) =>
    f
      .split('/')
      .slice(0, -1)
      .map((_, i, parts) => parts.slice(0, i + 1).join('/')),
  ),
);
const exists = (p: string): boolean => tracked.includes(p) || trackedDirs.has(p);
const topLevel = new Set(tracked.map((f) => f.split('/')[0]!));
const DOCS = ['README.md', 'BENCHMARKS.md', ...tracked.filter((f) => /^docs\/[^/]+\.md$/.test(f))];

/** The text without fenced code blocks, which hold examples rather than links. */
const prose = (text: string): string => text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as "-". */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
const anchors = (text: string): Set<string> => new Set([...prose(text).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));

for (const doc of DOCS) {
  const text = readFileSync(path.join(REPO, doc), 'utf8');

  test(`${doc}: every relative link names a file in the repository, every #anchor a heading`, () => {
    const links = [...prose(text).matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
    assert.ok(links.length > 0 || doc !== 'README.md', 'the README links somewhere');
    for (const link of links.filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l))) {
      const [file, anchor] = link.split('#') as [string, string | undefined];
      const target = file ? path.posix.normalize(path.posix.join(path.posix.dirname(doc), file)) : doc;
      assert.ok(!target.startsWith('..') && exists(target), `${doc}: the link ${link} points at ${target}, which a clone does not hold`);
      if (anchor !== undefined && target.endsWith('.md')) {
        assert.ok(
          anchors(readFileSync(path.join(REPO, target), 'utf8')).has(anchor),
          `${doc}: the link ${link}: ${target} has no heading #${anchor}`,
        );
      }
    }
  });

  test(`${doc}: every repository path in code is in the repository`, () => {
    const paths = [...prose(text).matchAll(/`([^`\s]+)`/g)]
      .map((m) => m[1]!.replace(/\/$/, ''))
      // Only what reads as a path into this repository; NAME, NODE, <mac> and … are placeholders.
      .filter((p) => p.includes('/') && topLevel.has(p.split('/')[0]!) && !/[A-Z]{2,}|[<…*]/.test(p) && !(p in ELSEWHERE));
    for (const p of new Set(paths)) assert.ok(exists(p), `${doc} names ${p}, which a clone does not hold`);
  });
}

test('the seed article is cited by author, title and site, not by a path outside the clone', () => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  assert.match(readme, 'Remy van Elst\'s "High Available k3s kubernetes cluster with keepalived, galera and longhorn" (raymii.org, 2024)');
  assert.not.match(readme, /\]\(\.\.\//);
});

test('the README maps every page under docs/, and stays short enough to read in ten minutes', () => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const pages = DOCS.filter((d) => d.startsWith('docs/'));
  assert.ok(pages.length >= 10, `docs/ holds the reference (${pages.length} pages tracked)`);
  for (const page of pages) assert.ok(readme.includes(`](${page})`), `the README's map of the docs does not link ${page}`);
  const lines = readme.split('\n').length;
  assert.ok(lines < 250, `README.md has ${lines} lines; the reference belongs in docs/`);
});
