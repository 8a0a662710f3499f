/**
 * The formats an overlay file can declare (overlay.yaml `format:`). A file in
 * a format with a parser is checked by it once rendered, and then written
 * exactly as rendered: decoding and re-encoding would drop the comments that
 * say why, repeated keys and bare flags.
 */
import { parseAllDocuments } from 'yaml';

export const FILE_FORMATS = ['text', 'ini', 'yaml'] as const;
export type FileFormat = (typeof FILE_FORMATS)[number];

/** What is wrong with a rendered file, at a line of the rendered text (1-based). */
export interface FormatProblem {
  line: number;
  message: string;
}

/**
 * The INI that netroot writes is MariaDB's option-file dialect (my.cnf), read
 * the way MariaDB's own parser reads it (mysys/my_default.c, checked against
 * `my_print_defaults`): `[group]` headers, `name`, `name = value` (quotes and
 * a ` # comment` after the value allowed), `#` and `;` comment lines,
 * `!include FILE` and `!includedir DIR`. MariaDB refuses an option before
 * the first group and a group header without `]`; it silently passes on what
 * is surely a template's mistake (text after `]`, an unknown `!` directive, an
 * option name with spaces, an unclosed quote), which is refused here too.
 */
export function checkIni(text: string): FormatProblem | undefined {
  let inGroup = false;
  let items = 0;
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '').trim();
    const at = (message: string): FormatProblem => ({ line: i + 1, message });
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('!')) {
      if (!/^!include(dir)?\s+\S/.test(line)) return at(`${JSON.stringify(line)} is neither !include FILE nor !includedir DIR`);
      items++;
      continue;
    }
    if (line.startsWith('[')) {
      const group = /^\[([^\]]*)\]\s*(?:[#;].*)?$/.exec(line);
      if (!group) return at(`${JSON.stringify(line)} is not a group header: [NAME] alone on its line`);
      if (!/^[A-Za-z0-9_.-]+$/.test(group[1]!.trim())) return at(`group ${JSON.stringify(group[1])} is not a group name`);
      inGroup = true;
      items++;
      continue;
    }
    const eq = line.indexOf('=');
    const name = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) return at(`${JSON.stringify(name)} is not an option name (letters, digits, _ - .)`);
    if (!inGroup) return at(`option ${name} comes before any [group]`);
    if (eq >= 0) {
      const value = line.slice(eq + 1).trim();
      const quote = value[0];
      if ((quote === '"' || quote === "'") && !closes(value, quote)) return at(`the value of ${name} opens a ${quote} quote that never closes`);
    }
    items++;
  }
  return items === 0 ? { line: 1, message: 'it is empty: no group and no option' } : undefined;
}

/** Whether a quoted value's quote closes (backslash escapes a character, as in MariaDB). */
function closes(value: string, quote: string): boolean {
  for (let i = 1; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === quote) return true;
  }
  return false;
}

/** Every YAML document in the file must parse. */
export function checkYaml(text: string): FormatProblem | undefined {
  for (const doc of parseAllDocuments(text)) {
    const error = doc.errors[0];
    if (error) return { line: error.linePos?.[0].line ?? 1, message: error.message.split('\n')[0]! };
  }
  return undefined;
}

/** The problem a format's parser finds in a rendered file, if any; `text` files have no parser. */
export function checkRendered(format: FileFormat, text: string): FormatProblem | undefined {
  if (format === 'ini') return checkIni(text);
  if (format === 'yaml') return checkYaml(text);
  return undefined;
}
