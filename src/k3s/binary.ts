/**
 * The k3s binary for an air-gap install: from the profile's `k3s.binary` or
 * `--k3s-binary`, or downloaded once for `k3s.version` with the sha256 the
 * release publishes checked, and cached. Nodes never run an install script.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { NetrootError, UsageError } from '../errors.js';
import { rememberedDigest, stageIntoCache } from '../cache.js';

export const DEFAULT_RELEASE_URL = 'https://github.com/k3s-io/k3s/releases/download';

/** Release asset names by Debian architecture. */
const ASSETS: Record<string, string> = { amd64: 'k3s', arm64: 'k3s-arm64', armhf: 'k3s-armhf' };
const SUMS: Record<string, string> = { amd64: 'sha256sum-amd64.txt', arm64: 'sha256sum-arm64.txt', armhf: 'sha256sum-arm.txt' };

export interface K3sBinaryOptions {
  version: string;
  /** Debian architecture of the nodes: arm64, armhf, amd64. */
  arch: string;
  /** A binary the user gives (profile `k3s.binary` or `--k3s-binary`): used as is. */
  binary?: string;
  cacheDir: string;
  /** Where releases are fetched from (a mirror, or a local server in tests). */
  releaseUrl?: string;
  /** Seconds before a download is abandoned. */
  timeoutSeconds?: number;
}

export interface K3sBinary {
  path: string;
  sha256: string;
  source: 'given' | 'cache' | 'download';
}

async function fetchOk(url: string, timeoutSeconds: number): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutSeconds * 1000), redirect: 'follow' });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new DownloadError(url, `cannot be reached (${cause})`);
  }
  if (!response.ok) throw new DownloadError(url, `answered HTTP ${response.status}`);
  return response;
}

class DownloadError extends NetrootError {
  constructor(url: string, what: string) {
    super(
      `the k3s release ${url} ${what}. Without network access give the binary yourself: ` +
        "k3s.binary: PATH in the profile or --k3s-binary PATH (the release asset for the nodes' architecture)",
      2,
    );
  }
}

/** The sha256 the release publishes for one asset (`HASH  NAME` lines). */
function publishedSum(sums: string, asset: string): string | undefined {
  for (const line of sums.split('\n')) {
    const [hash, name] = line.trim().split(/\s+/);
    if (name === asset && hash && /^[0-9a-f]{64}$/.test(hash)) return hash;
  }
  return undefined;
}

/** ELF e_machine values, the word size (e_ident class: 1 = 32-bit, 2 = 64-bit) they run with, and the Debian architectures that run them. */
const ELF_MACHINES: Record<number, { name: string; bits: 32 | 64; arches: string[] }> = {
  3: { name: 'i386', bits: 32, arches: ['i386'] },
  40: { name: '32-bit ARM', bits: 32, arches: ['armhf', 'armel'] },
  62: { name: 'x86-64', bits: 64, arches: ['amd64'] },
  183: { name: 'arm64 (AArch64)', bits: 64, arches: ['arm64'] },
  243: { name: 'RISC-V', bits: 64, arches: ['riscv64'] },
};

/** e_ident (16 bytes) and e_type (2) come before e_machine (2). */
const ELF_HEADER = 20;

/**
 * What a given k3s file is: an ELF program must be built for the base's
 * architecture (its e_machine and word size); a script (#!) is taken as a
 * stand-in, as the lab's and the tests' are; anything else is not a program
 * at all.
 */
export async function checkK3sProgram(file: string, arch: string): Promise<void> {
  const handle = await open(file, 'r');
  const header = Buffer.alloc(ELF_HEADER);
  let size: number;
  try {
    size = (await handle.read(header, 0, ELF_HEADER, 0)).bytesRead;
  } finally {
    await handle.close();
  }
  const wanted = `give the k3s release's binary for ${arch} (k3s${arch === 'amd64' ? '' : `-${arch}`})`;
  if (header.subarray(0, 2).toString('latin1') === '#!') return;
  if (size < 4 || header.readUInt32BE(0) !== 0x7f454c46) {
    const text = !header.subarray(0, size).some((b) => b < 0x09 || (b > 0x0d && b < 0x20));
    throw new UsageError(
      `the k3s binary ${file} is neither a program (ELF) nor a script (#!): it is ${size < ELF_HEADER ? `${size} bytes of ` : ''}${text ? 'text' : 'data'} with no ELF header, and the base is ${arch}; ${wanted}`,
    );
  }
  if (size < ELF_HEADER)
    throw new UsageError(
      `the k3s binary ${file} is a truncated ELF file (${size} bytes), not a program the nodes (${arch}) can run; ${wanted}`,
    );
  const bits = header[4] === 1 ? 32 : header[4] === 2 ? 64 : undefined;
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  const known = ELF_MACHINES[machine];
  const what = `a ${bits ? `${bits}-bit ` : ''}ELF program for ${known?.name ?? `machine ${machine}`}`;
  if (!known?.arches.includes(arch) || bits !== known.bits) {
    throw new UsageError(`the k3s binary ${file} is ${what}, but the base is ${arch}: the nodes could not run it; ${wanted}`);
  }
}

export async function resolveK3sBinary(options: K3sBinaryOptions): Promise<K3sBinary> {
  if (options.binary) {
    const info = await stat(options.binary).catch(() => undefined);
    if (!info?.isFile()) throw new UsageError(`the k3s binary ${options.binary} does not exist or is not a file`);
    await checkK3sProgram(options.binary, options.arch);
    return { path: options.binary, sha256: await rememberedDigest(options.binary, options.cacheDir), source: 'given' };
  }
  const asset = ASSETS[options.arch];
  const sumsName = SUMS[options.arch];
  if (!asset || !sumsName) throw new UsageError(`k3s publishes no binary for architecture ${options.arch}; give one with --k3s-binary`);
  const dir = path.join(options.cacheDir, 'k3s', options.version);
  const cached = path.join(dir, asset);
  const sumFile = `${cached}.sha256`;
  if (existsSync(cached) && existsSync(sumFile)) {
    const expected = (await readFile(sumFile, 'utf8')).trim();
    const actual = await rememberedDigest(cached, options.cacheDir);
    if (actual === expected) return { path: cached, sha256: actual, source: 'cache' };
    await rm(cached, { force: true }); // a damaged cache entry is fetched again
  }
  const base = `${(options.releaseUrl ?? DEFAULT_RELEASE_URL).replace(/\/$/, '')}/${encodeURIComponent(options.version)}`;
  const timeout = options.timeoutSeconds ?? 600;
  const sums = await (await fetchOk(`${base}/${sumsName}`, 60)).text();
  const expected = publishedSum(sums, asset);
  if (!expected) throw new NetrootError(`${base}/${sumsName} lists no sha256 for ${asset}; refusing an unchecked binary`, 1);

  const actual = await stageIntoCache(cached, async (tmp) => {
    const response = await fetchOk(`${base}/${asset}`, timeout);
    const hash = createHash('sha256');
    const handle = await open(tmp, 'wx', 0o755);
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        await handle.write(chunk);
      }
    } finally {
      await handle.close();
    }
    const actual = hash.digest('hex');
    if (actual !== expected) {
      throw new NetrootError(
        `the downloaded ${asset} ${options.version} has sha256 ${actual}, but the release publishes ${expected}; not using it`,
        1,
      );
    }
    await chmod(tmp, 0o755);
    return actual;
  });
  await writeFile(sumFile, `${actual}\n`);
  return { path: cached, sha256: actual, source: 'download' };
}
