/**
 * A YAML value that remembers where each part came from, so that every error can
 * point into the user's file, even after `extends` merged several files.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { ProfileError, type SourceLocation } from '../errors.js';

export type PathSegment = string | number;

export interface Located {
  kind: 'map' | 'seq' | 'scalar';
  /** Scalar value (only for kind 'scalar'). */
  value?: unknown;
  /** Where the value starts. */
  loc: SourceLocation;
  /** Where its key starts, when it is a map entry. */
  keyLoc?: SourceLocation;
  entries?: Map<string, Located>;
  items?: Located[];
}

/** `what` names the file in messages: a profile, or a secrets file. */
export function parseLocated(text: string, file: string, what: 'profile' | 'secrets file' = 'profile'): Located {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number): SourceLocation => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  if (doc.errors.length > 0) {
    // Only the first: the parser's later errors mostly follow from it (one stray "}" gives dozens).
    throw new ProfileError(
      doc.errors.slice(0, 1).map((e) => {
        if (e.code === 'DUPLICATE_KEY') {
          const key = /^\s*([^:\s]+)\s*:/.exec(text.slice(e.pos[0]))?.[1] ?? '';
          return { location: at(e.pos[0]), key, message: `this key appears twice in the same mapping; keep one` };
        }
        return {
          location: at(e.pos[0]),
          key: '',
          message: `this is not valid YAML: ${e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '')}`,
        };
      }),
    );
  }
  const convert = (node: YamlNode | null | undefined, fallback: number): Located => {
    const loc = at(node?.range?.[0] ?? fallback);
    if (isMap(node)) {
      const entries = new Map<string, Located>();
      for (const pair of node.items) {
        const keyNode = pair.key as YamlNode | null;
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
        const keyOffset = keyNode?.range?.[0] ?? fallback;
        const child = convert(pair.value as YamlNode | null, keyOffset);
        child.keyLoc = at(keyOffset);
        entries.set(key, child);
      }
      return { kind: 'map', loc, entries };
    }
    if (isSeq(node)) {
      return { kind: 'seq', loc, items: node.items.map((item) => convert(item as YamlNode, node.range?.[0] ?? fallback)) };
    }
    return { kind: 'scalar', loc, value: isScalar(node) ? node.value : null };
  };
  const root = convert(doc.contents as YamlNode | null, 0);
  if (root.kind !== 'map') {
    const expected = what === 'profile' ? 'cluster:, network:, nodes:, …' : 'k3sToken:, keepalivedAuthPass:, …';
    throw new ProfileError([{ location: root.loc, key: '', message: `a ${what} must be a YAML mapping of keys (${expected})` }]);
  }
  return root;
}

export function toPlain(node: Located): unknown {
  switch (node.kind) {
    case 'map':
      return Object.fromEntries([...node.entries!].map(([k, v]) => [k, toPlain(v)]));
    case 'seq':
      return node.items!.map(toPlain);
    default:
      return node.value;
  }
}

/** The node at `path`, or the deepest one that exists on the way. */
export function locate(root: Located, path: readonly PathSegment[]): { node: Located; complete: boolean } {
  let node = root;
  for (const segment of path) {
    const next = node.kind === 'map' ? node.entries!.get(String(segment)) : node.kind === 'seq' ? node.items![Number(segment)] : undefined;
    if (!next) return { node, complete: false };
    node = next;
  }
  return { node, complete: true };
}

/** `nodes[2].keepalived.priority`: the way a user reads a key path. */
export function formatPath(path: readonly PathSegment[]): string {
  return path.reduce<string>((out, seg) => (typeof seg === 'number' ? `${out}[${seg}]` : out ? `${out}.${seg}` : seg), '');
}

/**
 * Deep merge for `extends`: maps merge key by key (a null value removes the
 * inherited key), lists are replaced, except the node list, where an entry with
 * the same `name` merges into the inherited node.
 */
export function mergeLocated(base: Located, override: Located, path: readonly PathSegment[] = []): Located {
  if (base.kind === 'map' && override.kind === 'map') {
    const entries = new Map(base.entries!);
    for (const [key, value] of override.entries!) {
      // `key: null` (or `key: ~`) in a profile that extends another removes the inherited key.
      if (value.kind === 'scalar' && value.value === null) {
        entries.delete(key);
        continue;
      }
      const inherited = entries.get(key);
      entries.set(key, inherited ? mergeLocated(inherited, value, [...path, key]) : value);
    }
    return { ...override, entries };
  }
  if (base.kind === 'seq' && override.kind === 'seq' && path.length === 1 && path[0] === 'nodes') {
    const nameOf = (n: Located) => (n.kind === 'map' ? n.entries!.get('name')?.value : undefined);
    const items = [...base.items!];
    for (const item of override.items!) {
      const name = nameOf(item);
      const index = name === undefined ? -1 : items.findIndex((n) => nameOf(n) === name);
      if (index >= 0) items[index] = mergeLocated(items[index]!, item, [...path, index]);
      else items.push(item);
    }
    return { ...override, items };
  }
  // A mapping over a scalar (board: { … } over board: orangepi-zero3) replaces it; its `key: null` removes nothing.
  if (override.kind === 'map')
    return { ...override, entries: new Map([...override.entries!].filter(([, v]) => !(v.kind === 'scalar' && v.value === null))) };
  return override;
}
