/**
 * Read the overlay directory: one folder per component, mirroring the target
 * filesystem, with an overlay.yaml that says which nodes get it and each file's
 * mode, owner and format. Every template must be declared, and every declared
 * file must exist, so no file ships with a mode nobody chose.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { NetrootError } from '../errors.js';
import { ROLES } from '../profile/schema.js';
import { FILE_FORMATS } from './formats.js';
import { compileTemplate, verbatimTemplate, type Template } from './templates.js';
import { displayPath } from '../profile/load.js';

export const BUNDLED_OVERLAYS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../overlays');
/** Templates for the boot server (PXE, DHCP, exports), not laid onto any node. */
export const BOOT_SERVER_COMPONENT = 'boot-server';

const condition = z.string().regex(/^[A-Za-z0-9_.]+$/).describe('Dotted path into the node context; the item applies when it is truthy.');

const fileMeta = z.strictObject({
  mode: z.string().regex(/^0[0-7]{3}$/).default('0644'),
  /** Numeric uid:gid: names differ between bases, numbers are what a tar and an NFS export store. */
  owner: z.string().regex(/^[0-9]+:[0-9]+$/).default('0:0'),
  format: z.enum(FILE_FORMATS).default('text'),
  /** Copied as it is, not rendered: a program with no value of the node in it, kept as a file its own tools can read. */
  verbatim: z.boolean().default(false),
  roles: z.array(z.enum(ROLES)).optional(),
  if: condition.optional(),
});

const overlayMeta = z.strictObject({
  roles: z.array(z.enum(ROLES)).optional(),
  if: condition.optional(),
  files: z.record(z.string(), fileMeta).default({}),
  links: z.record(z.string(), z.string()).default({}),
  /** Base paths the node must not keep; `*` allowed in the last component. */
  removes: z.array(z.string().regex(/^[A-Za-z0-9_.@+-]+(\/[A-Za-z0-9_.@+*-]+)*$/, 'must be a relative path; * only in the last part')).default([]),
  /** Units of the base that must never start on a network-booted node. */
  mask: z.array(z.strictObject({ unit: z.string().regex(/^[A-Za-z0-9@_.-]+\.(service|mount|socket|timer|target|swap)$/), if: condition.optional() })).default([]),
  enable: z
    .array(
      z.strictObject({
        unit: z.string().regex(/^[A-Za-z0-9@_.-]+\.(service|mount|socket|timer|target)$/),
        target: z.string().regex(/^[A-Za-z0-9_.-]+\.target$/),
        /** Shipped by a Debian package (in /lib/systemd/system), not by this overlay. */
        packaged: z.boolean().default(false),
        if: condition.optional(),
      }),
    )
    .default([]),
});

export type FileMeta = z.output<typeof fileMeta>;
export type OverlayMeta = z.output<typeof overlayMeta>;

export interface OverlayFile {
  /** Path in the node's root, relative, e.g. etc/keepalived/keepalived.conf. */
  path: string;
  meta: FileMeta;
  template: Template;
}

export interface Overlay {
  component: string;
  meta: OverlayMeta;
  files: OverlayFile[];
}

export interface OverlaySet {
  dir: string;
  /** Node overlays in the order they are applied. */
  overlays: Overlay[];
  /** Boot server templates by name (pxelinux.cfg, dnsmasq.conf, exports, ganesha.conf). */
  bootServer: Map<string, Template>;
}

class OverlayError extends NetrootError {}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

function shown(dir: string, ...parts: string[]): string {
  return displayPath(path.join(dir, ...parts));
}

async function loadOverlay(dir: string, component: string): Promise<Overlay> {
  const root = path.join(dir, component);
  const metaFile = shown(dir, component, 'overlay.yaml');
  const parsed = overlayMeta.safeParse(parse(await readFile(path.join(root, 'overlay.yaml'), 'utf8')) ?? {});
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new OverlayError(`${metaFile}: ${first.path.join('.')}: ${first.message}`);
  }
  const meta = parsed.data;
  const templates = (await listFiles(root)).filter((f) => f !== 'overlay.yaml' && f !== 'README.md');
  const declared = new Set(Object.keys(meta.files));
  const verbatim = new Set(Object.entries(meta.files).filter(([, m]) => m.verbatim).map(([target]) => target));
  for (const file of templates) {
    if (verbatim.has(file)) continue;
    if (!file.endsWith('.hbs'))
      throw new OverlayError(`${shown(dir, component, file)}: overlay files are Handlebars templates; name it ${file}.hbs, or declare it with verbatim: true`);
    if (!declared.has(file.slice(0, -4)) || verbatim.has(file.slice(0, -4)))
      throw new OverlayError(`${shown(dir, component, file)} is not declared in ${metaFile}; add it under files: with its mode`);
  }
  const files: OverlayFile[] = [];
  for (const [target, fileMetaValue] of Object.entries(meta.files)) {
    if (target.startsWith('/') || target.split('/').includes('..')) throw new OverlayError(`${metaFile}: ${target} must be a relative path inside the node's root`);
    const name = fileMetaValue.verbatim ? target : `${target}.hbs`;
    const source = await readFile(path.join(root, name), 'utf8').catch(() => {
      throw new OverlayError(`${metaFile} declares ${target}, but ${shown(dir, component, name)} does not exist`);
    });
    const template = fileMetaValue.verbatim
      ? verbatimTemplate(shown(dir, component, name), source, `${component}/${name}`)
      : compileTemplate(shown(dir, component, name), source, `${component}/${name}`);
    files.push({ path: target, meta: fileMetaValue, template });
  }
  return { component, meta, files };
}

async function loadBootServer(dir: string): Promise<Map<string, Template>> {
  const root = path.join(dir, BOOT_SERVER_COMPONENT);
  const templates = new Map<string, Template>();
  for (const file of await listFiles(root)) {
    if (!file.endsWith('.hbs')) continue;
    templates.set(file.slice(0, -4), compileTemplate(shown(dir, BOOT_SERVER_COMPONENT, file), await readFile(path.join(root, file), 'utf8'), `${BOOT_SERVER_COMPONENT}/${file}`));
  }
  return templates;
}

/** Components are applied in this order; any other folder follows, sorted. */
const ORDER = ['base', 'system', 'keepalived', 'galera', 'k3s-server', 'k3s-agent', 'local-storage', 'longhorn'];

export async function loadOverlays(dir: string = BUNDLED_OVERLAYS_DIR): Promise<OverlaySet> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => {
    throw new OverlayError(`overlay directory ${dir} does not exist`);
  });
  const components = entries
    .filter((e) => e.isDirectory() && e.name !== BOOT_SERVER_COMPONENT)
    .map((e) => e.name)
    .sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const overlays = await Promise.all(components.map((c) => loadOverlay(dir, c)));
  return { dir, overlays, bootServer: await loadBootServer(dir) };
}
