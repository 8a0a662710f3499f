/**
 * Extended attributes (file capabilities live in `security.capability`) read
 * and written in bulk through getfattr/setfattr from the `attr` package:
 * Node has no xattr API, and one process for a whole tree is cheaper than
 * one per file. Both use the `getfattr --dump` text format, whose names
 * escape unusual bytes as `\ooo`.
 */
import { findProgram, requirePrograms, runTool } from '../tools.js';

export type Xattrs = Record<string, Buffer>;

/** Whether getfattr and setfattr are installed (Debian: `attr`). */
export async function xattrToolsAvailable(): Promise<boolean> {
  return findProgram('getfattr') !== undefined && findProgram('setfattr') !== undefined;
}

/**
 * The one check before xattrs are read or written: without the attr tools a
 * base's file capabilities would be lost from the outputs in silence (ping:
 * Operation not permitted, on the node), so the build stops and names the
 * package. `why` says what needed the program.
 */
export async function requireXattrTools(program: 'getfattr' | 'setfattr', why: string): Promise<void> {
  requirePrograms([{ program, why }]);
}

/** getfattr escapes `\`, newlines and other unprintable bytes as `\ooo`. */
function unescape(text: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(text, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

function escape(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte <= 0x20 || byte === 0x5c || byte === 0x3d || byte >= 0x7f ? `\\${byte.toString(8).padStart(3, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

function decodeValue(text: string): Buffer {
  if (text.startsWith('0x')) return Buffer.from(text.slice(2), 'hex');
  if (text.startsWith('0s')) return Buffer.from(text.slice(2), 'base64');
  if (text.startsWith('"') && text.endsWith('"')) return Buffer.from(unescape(text.slice(1, -1)), 'latin1');
  return Buffer.alloc(0);
}

/** Parses `getfattr -d -e hex` output into absolute path → attributes. */
export function parseDump(dump: string): Map<string, Xattrs> {
  const out = new Map<string, Xattrs>();
  let current: Xattrs | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      out.set(unescape(line.slice('# file: '.length)), current);
    } else if (current && line !== '' && !line.startsWith('#')) {
      const eq = line.indexOf('=');
      const name = unescape(eq < 0 ? line : line.slice(0, eq));
      current[name] = eq < 0 ? Buffer.alloc(0) : decodeValue(line.slice(eq + 1));
    }
  }
  return out;
}

/**
 * The attributes of every file under `root`, keyed by absolute path. -P walks
 * without following symlinks, and -h reads a symlink's own attributes: without
 * it a link reports its target's, so `bin/ping6 -> ping` would get ping's
 * capability and an absolute link would read the build host's files.
 */
export async function readTreeXattrs(root: string): Promise<Map<string, Xattrs>> {
  await requireXattrTools('getfattr', `the file capabilities and other xattrs of ${root}`);
  // getfattr exits 1 when some file could not be read but still dumps the rest.
  const result = await runTool('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], {
    accept: [0, 1],
    what: `reading the xattrs of ${root}`,
  });
  return parseDump(result.stdout);
}

/**
 * Sets attributes on many files with one `setfattr --restore`. `-h` keeps
 * setfattr from following a symlink at the final component; callers only pass
 * paths whose parents are known to be real directories.
 */
export async function applyXattrs(items: Iterable<[string, Xattrs]>): Promise<void> {
  let dump = '';
  for (const [file, attrs] of items) {
    const names = Object.keys(attrs).sort();
    if (names.length === 0) continue;
    dump += `# file: ${escape(file)}\n`;
    for (const name of names) dump += `${escape(name)}=0x${attrs[name]!.toString('hex')}\n`;
    dump += '\n';
  }
  if (dump === '') return;
  await requireXattrTools('setfattr', "writing the base's file capabilities and other xattrs");
  await runTool('setfattr', ['-h', '--restore=-'], { input: dump, what: 'setfattr --restore' });
}
