/**
 * Load a profile: find the file, follow `extends`, check the schema and the
 * cluster rules, and report every problem with file:line:column and key.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { closest } from '../suggest.js';
import { cannotRead, ProfileError, UsageError, type ProfileIssue, type SourceLocation } from '../errors.js';
import { formatPath, locate, mergeLocated, parseLocated, toPlain, type Located, type PathSegment } from './located.js';
import { expandBoardPresets } from './boards.js';
import { profileSchema, type Profile } from './schema.js';
import { resolveCluster, type Cluster } from './resolve.js';
import { checkRules } from './rules.js';

export interface LoadedProfile {
  /** Profile name: the file name without `.yaml`. */
  name: string;
  /** Absolute path of the profile file given. */
  file: string;
  profile: Profile;
  cluster: Cluster;
  /** Where a key path was written, for later checks (secrets, templates). */
  locate(path: readonly PathSegment[]): SourceLocation | undefined;
}

export interface FindOptions {
  cwd?: string;
  /** Where `--profile NAME` looks, in order (default: ./profiles, then the bundled profiles). */
  searchDirs?: string[];
}

export const BUNDLED_PROFILES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../profiles');

function isPathLike(ref: string): boolean {
  return ref.includes('/') || /\.ya?ml$/.test(ref);
}

/** `--profile opz3` → profiles/opz3.yaml; `--profile ./x.yaml` → that file. */
export function findProfile(ref: string, options: FindOptions = {}): string {
  const cwd = options.cwd ?? process.cwd();
  if (isPathLike(ref)) {
    const file = path.resolve(cwd, ref);
    if (!existsSync(file)) throw new UsageError(`profile file ${ref} does not exist`);
    if (statSync(file).isDirectory())
      throw new UsageError(`profile ${ref} is a directory; give a profile file (such as ${path.join(ref, 'NAME.yaml')}) or a name`);
    return file;
  }
  if (!/^[A-Za-z0-9._-]+$/.test(ref))
    throw new UsageError(`"${ref}" is not a profile name; give a name such as opz3 or a path to a .yaml file`);
  const dirs = [...new Set(options.searchDirs ?? [path.resolve(cwd, 'profiles'), BUNDLED_PROFILES_DIR])];
  for (const dir of dirs) {
    const file = path.join(dir, `${ref}.yaml`);
    if (existsSync(file)) return file;
  }
  throw new UsageError(`no profile named ${ref}: looked for ${dirs.map((d) => path.join(d, `${ref}.yaml`)).join(' and ')}`);
}

/** Paths in messages: relative to the working directory when inside it. */
export function displayPath(file: string, cwd = process.cwd()): string {
  const rel = path.relative(cwd, file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

async function readChain(file: string, cwd: string, chain: string[]): Promise<Located> {
  const shown = displayPath(file, cwd);
  const [real, text] = await Promise.all([realpath(file), readFile(file, 'utf8')]).catch((error: unknown) => {
    throw cannotRead('profile', shown, error);
  });
  const tree = parseLocated(text, shown);
  const ext = tree.entries!.get('extends');
  if (!ext) return tree;
  if (ext.kind !== 'scalar' || typeof ext.value !== 'string' || ext.value === '') {
    throw new ProfileError([{ location: ext.loc, key: 'extends', message: 'must be the name of another profile or a path to one' }]);
  }
  if (chain.includes(real)) {
    const names = [...chain, real].map((f) => displayPath(f, cwd)).join(' → ');
    throw new ProfileError([
      { location: ext.keyLoc, key: 'extends', message: `profiles extend each other in a cycle (${names}); remove one of the extends` },
    ]);
  }
  const ref = ext.value;
  const parentFile = isPathLike(ref) ? path.resolve(path.dirname(file), ref) : path.join(path.dirname(file), `${ref}.yaml`);
  if (!existsSync(parentFile)) {
    throw new ProfileError([
      {
        location: ext.loc,
        key: 'extends',
        message: `${displayPath(parentFile, cwd)} does not exist; name a profile in the same directory or give a path`,
      },
    ]);
  }
  const parent = await readChain(parentFile, cwd, [...chain, real]);
  const merged = mergeLocated(parent, tree);
  merged.entries!.delete('extends');
  return merged;
}

/** Walk the zod schema to the object at `path`, to suggest keys for a typo. */
function knownKeys(path: readonly PathSegment[]): string[] {
  const unwrap = (t: z.ZodType): z.ZodType => {
    while (t instanceof z.ZodOptional || t instanceof z.ZodDefault || t instanceof z.ZodNullable || t instanceof z.ZodPrefault)
      t = t.unwrap() as z.ZodType;
    return t;
  };
  let schema: z.ZodType | undefined = profileSchema;
  for (const seg of path) {
    if (!schema) return [];
    const t = unwrap(schema);
    if (typeof seg === 'number') schema = t instanceof z.ZodArray ? (t.element as z.ZodType) : undefined;
    else schema = t instanceof z.ZodObject ? (t.shape[seg] as z.ZodType | undefined) : undefined;
  }
  const t = schema && unwrap(schema);
  return t instanceof z.ZodObject ? Object.keys(t.shape) : [];
}

function suggest(key: string, candidates: string[]): string {
  const best = closest(key, candidates);
  if (best) return `; did you mean "${best}"?`;
  return candidates.length ? `; known keys here: ${candidates.join(', ')}` : '';
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value === 'string' ? 'text' : typeof value} ${JSON.stringify(value)}`;
}

const EXPECTED: Record<string, string> = {
  number: 'a number',
  int: 'a whole number',
  string: 'text',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping of keys',
};

function schemaIssues(error: z.ZodError, tree: Located): ProfileIssue[] {
  const issues: ProfileIssue[] = [];
  for (const issue of error.issues) {
    const issuePath = issue.path as PathSegment[];
    const { node, complete } = locate(tree, issuePath);
    const value = complete ? toPlain(node) : undefined;
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const at = locate(tree, [...issuePath, key]).node;
        issues.push({
          location: at.keyLoc ?? at.loc,
          key: formatPath([...issuePath, key]),
          message: `unknown key "${key}"${suggest(key, knownKeys(issuePath))}`,
        });
      }
      continue;
    }
    let message: string;
    if (!complete || value === undefined) {
      message = `is missing; add it (${issue.code === 'invalid_type' ? (EXPECTED[issue.expected] ?? issue.expected) : 'see build-images schema'})`;
    } else if (issue.code === 'invalid_type') {
      message = `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(value)}`;
    } else if (issue.code === 'invalid_value' && 'values' in issue) {
      message = `${JSON.stringify(value)} is not allowed; use one of: ${issue.values.map((v) => String(v)).join(', ')}`;
    } else {
      message = `${JSON.stringify(value)} ${issue.message.replace(/^Invalid input: /, '')}`;
    }
    issues.push({ location: complete ? node.loc : (node.keyLoc ?? node.loc), key: formatPath(issuePath), message });
  }
  return issues;
}

export async function loadProfile(ref: string, options: FindOptions = {}): Promise<LoadedProfile> {
  const cwd = options.cwd ?? process.cwd();
  const file = findProfile(ref, options);
  const tree = await readChain(file, cwd, []);
  const plain = toPlain(tree) as Record<string, unknown>;
  delete plain.extends;
  const presetIssues = expandBoardPresets(plain);
  if (presetIssues.length) {
    throw new ProfileError(
      presetIssues.map((i) => ({ location: locate(tree, i.path).node.loc, key: formatPath(i.path), message: i.message })),
    );
  }
  const parsed = profileSchema.safeParse(plain);
  if (!parsed.success) throw new ProfileError(schemaIssues(parsed.error, tree));
  const profile = parsed.data;
  const cluster = resolveCluster(profile);
  const where = (p: readonly PathSegment[]): SourceLocation | undefined => {
    const { node, complete } = locate(tree, p);
    return complete ? (node.keyLoc ?? node.loc) : (node.keyLoc ?? node.loc);
  };
  const ruleIssues = checkRules(cluster);
  if (ruleIssues.length > 0) {
    throw new ProfileError(
      ruleIssues.map((r) => {
        const related = r.related ? where(r.related) : undefined;
        const at = related ? ` (${related.file === where(r.path)?.file ? `line ${related.line}` : `${related.file}:${related.line}`})` : '';
        const message = r.message.includes('{at}') ? r.message.replace('{at}', at) : r.message + at;
        return { location: where(r.path), key: formatPath(r.path), message };
      }),
    );
  }
  return { name: path.basename(file).replace(/\.ya?ml$/, ''), file, profile, cluster, locate: where };
}
