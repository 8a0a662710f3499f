/**
 * The Longhorn UI behind a password: an htpasswd entry for Traefik's basicAuth
 * middleware. Apache's `$apr1$` (MD5-crypt) form, which Traefik reads and
 * `openssl passwd -apr1` makes too; its salt comes from the password, so the
 * same secrets give the same manifest byte for byte. The password is random
 * (32 characters from the secrets file), so the entry cannot be guessed back.
 */
import { createHash } from 'node:crypto';
import { InternalError } from '../errors.js';

export const LONGHORN_UI_USER = 'longhorn';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const md5 = (...parts: Buffer[]): Buffer => createHash('md5').update(Buffer.concat(parts)).digest();

function to64(value: number, count: number): string {
  let out = '';
  for (let v = value; count > 0; count--, v >>= 6) out += ITOA64[v & 0x3f];
  return out;
}

/** The `$apr1$salt$hash` of `password` (Apache's MD5-crypt variant); `salt` is at most 8 characters of ./0-9A-Za-z. */
export function apr1(password: string, salt: string): string {
  if (!/^[./0-9A-Za-z]{1,8}$/.test(salt))
    throw new InternalError(`apr1 salt must be 1–8 characters of ./0-9A-Za-z, got ${salt.length} characters`);
  const pw = Buffer.from(password, 'utf8');
  const s = Buffer.from(salt);
  const magic = Buffer.from('$apr1$');
  const alt = md5(pw, s, pw);
  const parts: Buffer[] = [pw, magic, s];
  for (let i = pw.length; i > 0; i -= 16) parts.push(alt.subarray(0, Math.min(16, i)));
  for (let i = pw.length; i > 0; i >>= 1) parts.push(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let final = md5(...parts);
  for (let i = 0; i < 1000; i++) {
    const round: Buffer[] = [i & 1 ? pw : final];
    if (i % 3) round.push(s);
    if (i % 7) round.push(pw);
    round.push(i & 1 ? final : pw);
    final = md5(...round);
  }
  const f = final;
  const encoded =
    to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) +
    to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4) +
    to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) +
    to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4) +
    to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) +
    to64(f[11]!, 2);
  return `$apr1$${salt}$${encoded}`;
}

/** The `user:$apr1$…` line Traefik's basicAuth reads, with a salt derived from the password (same secrets, same line). */
export function htpasswdEntry(user: string, password: string): string {
  const digest = createHash('sha256').update(`netroot longhorn-ui salt\0${password}`).digest();
  const salt = [...digest.subarray(0, 8)].map((b) => ITOA64[b & 0x3f]).join('');
  return `${user}:${apr1(password, salt)}`;
}
