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

export function compileTemplate(name: string, source: string): Template {
  let compiled: Handlebars.TemplateDelegate;
  try {
    compiled = handlebars.compile(source, { strict: true, noEscape: true, knownHelpersOnly: false });
    // Parse now, so a broken template fails when overlays load, not halfway through a build.
    handlebars.precompile(source, { strict: true });
  } catch (error) {
    throw new TemplateError(name, `is not a valid Handlebars template: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  return {
    name,
    source,
    render(context, subject) {
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
