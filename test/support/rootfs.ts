/**
 * Small bases for the rootfs tests, made in temp directories with the real
 * tools (setcap, mknod, GNU tar), and ways to compare trees.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { PlannedFile } from '../../src/plan/plan.js';
import { isRoot as runningAsRoot } from '../../src/privileges.js';
import { canCheck } from './requires.js';

export const isRoot = runningAsRoot();

/** Whether this test can check what only root can make: owners, setuid bits, device nodes, capabilities (see canCheck). */
export const rootCanCheck = (): boolean => canCheck(isRoot, 'owners, setuid bits, device nodes and capabilities need root');

const made: string[] = [];

export async function tempDir(label = 'x'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `netroot-rootfs-${label}-`));
  made.push(dir);
  return dir;
}

export async function cleanup(): Promise<void> {
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
}

function put(root: string, rel: string, content: string | Buffer, mode = 0o644, uid = 0, gid = 0): void {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  fs.writeFileSync(file, content);
  if (isRoot) fs.chownSync(file, uid, gid); // before chmod: chown clears setuid
  fs.chmodSync(file, mode);
}

export const LONG_PATH = `usr/share/doc/${'a-rather-long-directory-name-'.repeat(3)}/${'and-an-even-longer-file-name-'.repeat(4)}.txt`;

/**
 * A base with: plain files, a hard link pair, relative and absolute symlinks
 * (etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf), etc/hosts
 * pointing at `sentinel` (so a write through it would be seen), a capability,
 * setuid, a non-root owner, a user xattr with binary bytes, a long path, a
 * sticky directory, and as root a device node and a fifo.
 */
export async function makeBase(root: string, sentinel: string): Promise<void> {
  fs.mkdirSync(root, { recursive: true });
  fs.chmodSync(root, 0o755);
  put(root, 'etc/hostname', 'base\n');
  put(root, 'etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n');
  put(root, 'etc/shadow', 'root:*:19000:0:99999:7:::\n', 0o640, 0, 42);
  fs.symlinkSync('/run/systemd/resolve/stub-resolv.conf', path.join(root, 'etc/resolv.conf'));
  fs.symlinkSync(path.join(sentinel, 'hosts'), path.join(root, 'etc/hosts'));
  put(root, 'usr/bin/perl', '#!perl\n'.repeat(100), 0o755);
  fs.linkSync(path.join(root, 'usr/bin/perl'), path.join(root, 'usr/bin/perl5.36'));
  put(root, 'usr/bin/ping', Buffer.from('\x7fELF ping'), 0o755);
  await execa('setcap', ['cap_net_raw+ep', path.join(root, 'usr/bin/ping')]);
  fs.symlinkSync('ping', path.join(root, 'usr/bin/ping6')); // must not inherit ping's capability
  const host = `${sentinel}-host`; // a file "on the build host", outside the base
  fs.mkdirSync(host, { recursive: true });
  fs.writeFileSync(path.join(host, 'tagged'), 'host file\n');
  await execa('setfattr', ['-n', 'user.host', '-v', 'secret', path.join(host, 'tagged')]);
  fs.symlinkSync(path.join(host, 'tagged'), path.join(root, 'etc/host-link')); // nor read the host file's xattrs
  put(root, 'usr/bin/su', 'su\n', 0o4755);
  put(root, 'usr/bin/python3.11', 'python\n', 0o755);
  fs.symlinkSync('python3.11', path.join(root, 'usr/bin/python3'));
  fs.symlinkSync('usr/lib', path.join(root, 'lib'));
  put(root, 'usr/lib/os-release', 'ID=debian\n');
  put(root, 'home/user/.profile', 'PATH=$PATH\n', 0o644, 1000, 1000);
  if (isRoot) fs.chownSync(path.join(root, 'home/user'), 1000, 1000);
  put(root, 'etc/tagged', 'tagged\n');
  await execa('setfattr', ['-n', 'user.tag', '-v', '0x00ff80', path.join(root, 'etc/tagged')]);
  put(root, LONG_PATH, 'long\n');
  fs.mkdirSync(path.join(root, 'tmp'));
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.mkdirSync(path.join(root, 'run'));
  await execa('mkfifo', [path.join(root, 'run/initctl')]);
  fs.mkdirSync(path.join(root, 'dev'));
  if (isRoot) await execa('mknod', ['-m', '0666', path.join(root, 'dev/null'), 'c', '1', '3']);
}

/** GNU tar of a tree, the way a distribution's rootfs tarball is made. */
export async function tarOf(root: string, out: string): Promise<string> {
  const compress = out.endsWith('.gz') ? ['-z'] : out.endsWith('.xz') ? ['-J'] : out.endsWith('.zst') ? ['--zstd'] : [];
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', root, ...compress, '-cf', out, '.']);
  return out;
}

export function file(p: string, content: string, mode = 0o644, uid = 0, gid = 0): PlannedFile {
  return { path: p, type: 'file', mode, uid, gid, content: Buffer.from(content), source: 'test' };
}

export function link(p: string, target: string): PlannedFile {
  return { path: p, type: 'symlink', mode: 0o777, uid: 0, gid: 0, target, source: 'test' };
}

/** An overlay like a k3s node's: replaces a file, an absolute symlink, a symlink into the sentinel and a hard link holder; adds new directories, a secret and an enable link. */
export function overlay(node: string): PlannedFile[] {
  return [
    file('etc/hostname', `${node}\n`),
    file('etc/resolv.conf', 'nameserver 10.0.0.1\n'),
    file('etc/hosts', `127.0.1.1 ${node}\n`),
    file('etc/rancher/k3s/config.yaml', `node-name: ${node}\n`, 0o600),
    file('etc/netroot/secret', `token-${node}\n`, 0o600),
    file('usr/bin/perl', '#!overlay perl\n', 0o755),
    link('etc/systemd/system/multi-user.target.wants/k3s.service', '/etc/systemd/system/k3s.service'),
    file('etc/systemd/system/k3s.service', '[Unit]\n'),
  ];
}

export interface Snap {
  type: string;
  mode: string;
  owner: string;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  /** The first path (sorted) sharing this inode, for files with hard links. */
  linkedTo?: string;
  xattrs?: string;
}

/** Everything about a tree that an extraction must reproduce, mtimes aside. */
export async function snapshot(root: string): Promise<Record<string, Snap>> {
  const out: Record<string, Snap> = {};
  const inodes = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs);
    const snap: Snap = { type: '?', mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
    if (st.isDirectory()) snap.type = 'dir';
    else if (st.isSymbolicLink()) Object.assign(snap, { type: 'symlink', target: fs.readlinkSync(abs) });
    else if (st.isFile()) {
      Object.assign(snap, { type: 'file', size: st.size, sha256: createHash('sha256').update(fs.readFileSync(abs)).digest('hex') });
      if (st.nlink > 1) {
        const key = `${st.ino}`;
        if (!inodes.has(key)) inodes.set(key, rel);
        snap.linkedTo = inodes.get(key);
      }
    } else if (st.isCharacterDevice() || st.isBlockDevice())
      Object.assign(snap, { type: st.isCharacterDevice() ? 'char' : 'block', rdev: String(st.rdev) });
    else if (st.isFIFO()) snap.type = 'fifo';
    if (snap.type === 'symlink') delete (snap as Partial<Snap>).mode;
    out[rel || '.'] = snap;
    if (st.isDirectory()) for (const name of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  const dump = await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { reject: false });
  let current = '';
  for (const line of dump.stdout.split('\n')) {
    if (line.startsWith('# file: ')) current = path.relative(root, line.slice(8)) || '.';
    else if (line && out[current]) out[current]!.xattrs = `${out[current]!.xattrs ?? ''}${line};`;
  }
  return out;
}

/** GNU tar extraction as documented for the artifacts. */
export async function extract(archive: string, dest: string): Promise<void> {
  fs.mkdirSync(dest, { recursive: true });
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', archive, '-C', dest]);
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
