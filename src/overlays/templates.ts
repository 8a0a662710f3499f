/**
 * Handlebars set up for configuration files: no HTML escaping, strict lookups (a
 * template that uses a value the node does not have is an error, never an empty
 * string), and only the helpers that format values.
 */
import Handlebars from 'handlebars';
import { TemplateError } from '../errors.js';

const handlebars = Handlebars.create();
/** A value as a JSON (and so YAML) string or number: quoting decided by the encoder, not by hand. */
handlebars.registerHelper('json', (value: unknown) => JSON.stringify(value));
handlebars.registerHelper('join', (list: unknown, separator: unknown) =>
  Array.isArray(list) ? list.join(typeof separator === 'string' ? separator : ',') : String(list),
);

export interface Template {
  /** Path shown in messages, e.g. overlays/keepalived/etc/keepalived/keepalived.conf.hbs. */
  name: string;
  /** Where it sits in the overlay set, e.g. keepalived/etc/keepalived/keepalived.conf.hbs: the same on every machine. */
  id: string;
  source: string;
  render(context: object, subject: string): string;
}

/** The `{{…}}` expression at a 1-based line and 0-based column of the template. */
function expressionAt(source: string, line: number, column: number): string | undefined {
  const text = source.split('\n')[line - 1];
  if (text === undefined) return undefined;
  const start = text.lastIndexOf('{{', column + 2);
  const end = text.indexOf('}}', Math.max(start, 0));
  if (start < 0 || end < 0) return undefined;
  return text.slice(start + 2, end).replace(/^[#/^~\s]+|[~\s]+$/g, '').trim();
}

type Node = hbs.AST.Node;
const HELPERS = new Set(['json', 'join', 'if', 'unless', 'each', 'with', 'lookup']);
/** Block helpers whose body sees another context; paths inside them are left to strict mode. */
const CONTEXT_CHANGING = new Set(['each', 'with']);

interface MissingPath {
  path: string;
  missing: string;
  line: number;
  column: number;
}

/**
 * Handlebars' strict mode does not reach helper arguments ({{json a.b}} with no
 * `a` fails later with a bare TypeError), so every path the template uses in
 * the top-level context is checked against the node's values first.
 */
function findMissingPath(node: Node | undefined, context: object): MissingPath | undefined {
  if (!node) return undefined;
  const visit = (n: Node | undefined): MissingPath | undefined => findMissingPath(n, context);
  switch (node.type) {
    case 'Program':
      for (const statement of (node as hbs.AST.Program).body) {
        const found = visit(statement);
        if (found) return found;
      }
      return undefined;
    case 'MustacheStatement':
    case 'SubExpression':
    case 'BlockStatement': {
      const n = node as unknown as {
        path: hbs.AST.PathExpression;
        params: hbs.AST.Expression[];
        hash?: hbs.AST.Hash;
        program?: hbs.AST.Program;
        inverse?: hbs.AST.Program | null;
      };
      const head = n.path;
      const isHelper = head.type === 'PathExpression' && HELPERS.has(head.original);
      for (const param of [...(isHelper ? [] : [head]), ...n.params, ...(n.hash?.pairs.map((p) => p.value) ?? [])]) {
        const found = visit(param);
        if (found) return found;
      }
      if (node.type === 'BlockStatement' && !(isHelper && CONTEXT_CHANGING.has(head.original))) {
        return visit(n.program) ?? visit(n.inverse ?? undefined);
      }
      return undefined;
    }
    case 'PathExpression': {
      const p = node as hbs.AST.PathExpression;
      if (p.data || p.depth > 0 || p.original === 'this' || p.original.startsWith('this.')) return undefined;
      let value: unknown = context;
      for (const part of p.parts) {
        if (value === null || typeof value !== 'object' || !Object.prototype.hasOwnProperty.call(value, part)) {
          return { path: p.original, missing: part, line: p.loc.start.line, column: p.loc.start.column };
        }
        value = (value as Record<string, unknown>)[part];
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/**
 * Where and why Handlebars refused a template, 1-based. Its parser's message holds only the line and an
 * excerpt ("Parse error on line 2:\n…\n---^\nExpecting 'ID', got 'INVALID'"); the column is its lexer's,
 * where the offending token starts. Its own exceptions ("each doesn't match if") carry a line and column.
 */
function parseFailure(error: unknown): { line: number; column: number; message: string } {
  const e = error as { message: string; lineNumber?: number; column?: number };
  const lines = e.message.split('\n');
  if (e.lineNumber !== undefined) return { line: e.lineNumber, column: (e.column ?? 0) + 1, message: lines[0]!.replace(/ - \d+:\d+$/, '') };
  const at = (handlebars as unknown as { Parser: { lexer: { yylloc?: { first_line: number; first_column: number } } } }).Parser.lexer.yylloc;
  const expecting = lines.at(-1)!.startsWith('Expecting ') ? lines.at(-1)! : undefined;
  return {
    line: at?.first_line ?? Number(/on line (\d+)/.exec(lines[0]!)?.[1] ?? 1),
    column: (at?.first_column ?? 0) + 1,
    message: expecting ? `${expecting.charAt(0).toLowerCase()}${expecting.slice(1)}` : lines[0]!.replace(/ on line \d+[.:]?$/, ''),
  };
}

// Parsed and compiled once per source in a process: a process that builds again (the lab, a deploy that
// builds, the tests) loads the same overlays each time.
const parsed = new Map<string, { ast: hbs.AST.Program; compiled: Handlebars.TemplateDelegate }>();

export function compileTemplate(name: string, source: string, id: string = name): Template {
  let known = parsed.get(source);
  if (!known) {
    try {
      // Parse now, so a broken template fails when overlays load, not halfway through a build.
      known = { ast: handlebars.parse(source), compiled: handlebars.compile(source, { strict: true, noEscape: true }) };
    } catch (error) {
      const { line, column, message } = parseFailure(error);
      throw new TemplateError(`${name}:${line}:${column}`, `is not a valid Handlebars template: ${message}`, { cause: error });
    }
    parsed.set(source, known);
  }
  const { ast, compiled } = known;
  return {
    name,
    id,
    source,
    render(context, subject) {
      const missing = findMissingPath(ast, context);
      if (missing) {
        throw new TemplateError(
          `${name}:${missing.line}:${missing.column + 1}`,
          `uses "${missing.path}", which ${subject} does not have (variable "${missing.missing}" is not defined). Fix the template or give the value in the profile`,
        );
      }
      try {
        return compiled(context);
      } catch (error) {
        const e = error as { message: string; lineNumber?: number; column?: number };
        const missing = /^"([^"]+)" not defined in/.exec(e.message);
        if (missing && e.lineNumber !== undefined) {
          const expr = expressionAt(source, e.lineNumber, e.column ?? 0) ?? missing[1];
          throw new TemplateError(
            `${name}:${e.lineNumber}:${(e.column ?? 0) + 1}`,
            `uses "${expr}", which ${subject} does not have (variable "${missing[1]}" is not defined). Fix the template or give the value in the profile`,
            { cause: error },
          );
        }
        throw new TemplateError(name, `failed for ${subject}: ${e.message}`, { cause: error });
      }
    },
  };
}

/** A file copied as it is: the same interface as a template, whose rendering is its source. */
export function verbatimTemplate(name: string, source: string, id: string = name): Template {
  return { name, id, source, render: () => source };
}
