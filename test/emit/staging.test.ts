/**
 * Outputs appear whole or not at all, and writers never leave their root.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile, lstat, readlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeAtomically } from '../../src/emit/staging.js';
import { assertInside, writeTree } from '../../src/emit/tree.js';
import { isRoot } from '../../src/privileges.js';
import type { PlannedFile } from '../../src/plan/plan.js';
import { rejects } from '../support/assert.js';
import { execa } from 'execa';

let tmp: string;
test.before.each(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-emit-'));
});
test.after.each(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('a writer that fails leaves no target and no staging directory', async () => {
  const target = path.join(tmp, 'out', 'opz3');
  await rejects(() =>
    writeAtomically(target, async (staging) => {
      await writeFile(path.join(staging, 'half'), 'x');
      throw new Error('boom');
    }),
  );
  assert.not.ok(existsSync(target));
  assert.equal(await readdir(path.join(tmp, 'out')), []);
});

test('a failed rebuild keeps the previous output untouched', async () => {
  const target = path.join(tmp, 'opz3');
  await writeAtomically(target, (staging) => writeFile(path.join(staging, 'v'), '1'));
  await rejects(() =>
    writeAtomically(target, async (staging) => {
      await writeFile(path.join(staging, 'v'), '2');
      throw new Error('boom');
    }),
  );
  assert.is(await readFile(path.join(target, 'v'), 'utf8'), '1');
  assert.equal((await readdir(tmp)).sort(), ['opz3']);
});

test('a failed rebuild that moved part of the previous output into staging moves it back', async () => {
  const target = path.join(tmp, 'opz3');
  await writeAtomically(target, async (staging) => {
    await mkdir(path.join(staging, 'rootfs/node-1/etc'), { recursive: true });
    await writeFile(path.join(staging, 'rootfs/node-1/etc/hostname'), 'node-1\n');
  });
  await rejects(() =>
    writeAtomically(target, async (staging, rollback) => {
      const from = path.join(target, 'rootfs/node-1');
      const to = path.join(staging, 'rootfs/node-1');
      await mkdir(path.dirname(to), { recursive: true });
      await rename(from, to);
      rollback.add(() => rename(to, from));
      throw new Error('boom');
    }),
  );
  assert.is(await readFile(path.join(target, 'rootfs/node-1/etc/hostname'), 'utf8'), 'node-1\n');
  assert.equal((await readdir(tmp)).sort(), ['opz3']);
});

test('a successful rebuild replaces the output whole (no stale files survive)', async () => {
  const target = path.join(tmp, 'opz3');
  await writeAtomically(target, async (staging) => {
    await writeFile(path.join(staging, 'old-node'), 'x');
  });
  await writeAtomically(target, (staging) => writeFile(path.join(staging, 'new-node'), 'y'));
  assert.equal(await readdir(target), ['new-node']);
  // The previous output is gone when the write returns: nothing is still being deleted beside it.
  assert.equal(await readdir(tmp), ['opz3']);
});

test("staging left by a killed run is removed by the next run; a live run's is not", async () => {
  const dead = path.join(tmp, '.opz3.tmp-999999999-abcd');
  const alive = path.join(tmp, `.opz3.tmp-${process.pid}-beef`);
  await mkdir(dead);
  await mkdir(alive);
  await writeAtomically(path.join(tmp, 'opz3'), async () => undefined);
  assert.not.ok(existsSync(dead));
  assert.ok(existsSync(alive));
});

test('a run killed between moving the old output aside and the new one in: the next run puts the old one back', async () => {
  const old = path.join(tmp, '.opz3.old-999999999-abcd');
  await mkdir(old);
  await writeFile(path.join(old, 'v'), '1');
  await mkdir(path.join(tmp, '.opz3.tmp-999999999-abcd'));
  await rejects(() =>
    writeAtomically(path.join(tmp, 'opz3'), async () => {
      throw new Error('boom');
    }),
  );
  assert.is(await readFile(path.join(tmp, 'opz3', 'v'), 'utf8'), '1');
  assert.equal(await readdir(tmp), ['opz3']);
});

const file = (p: string, mode = 0o644): PlannedFile => ({
  path: p,
  type: 'file',
  mode,
  uid: 0,
  gid: 0,
  content: Buffer.from(p),
  source: 'test',
});

test('writeTree writes exact modes whatever the umask, and symlinks as links', async () => {
  const old = process.umask(0o077);
  try {
    await writeTree(
      path.join(tmp, 'root'),
      [
        file('etc/hosts', 0o644),
        file('etc/keepalived/keepalived.conf', 0o600),
        file('usr/local/lib/netroot/x', 0o755),
        { path: 'usr/local/bin/kubectl', type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: 'k3s', source: 'test' },
      ],
      isRoot(),
    );
  } finally {
    process.umask(old);
  }
  const mode = async (p: string) => ((await lstat(path.join(tmp, 'root', p))).mode & 0o777).toString(8);
  assert.is(await mode('etc/hosts'), '644');
  assert.is(await mode('etc/keepalived/keepalived.conf'), '600');
  assert.is(await mode('usr/local/lib/netroot/x'), '755');
  assert.is(await mode('etc'), '755');
  assert.is(await readlink(path.join(tmp, 'root', 'usr/local/bin/kubectl')), 'k3s');
});

test('writeTree refuses paths that leave the root, and never writes through an existing file', async () => {
  for (const bad of ['../escape', '/etc/passwd', 'etc/../../x', '', 'a//b']) {
    assert.throws(() => assertInside(tmp, bad), /not a plain relative path/, bad);
  }
  const root = path.join(tmp, 'root');
  await mkdir(path.join(root, 'etc'), { recursive: true });
  const outside = path.join(tmp, 'outside');
  await writeFile(outside, 'keep');
  const { symlink } = await import('node:fs/promises');
  await symlink(outside, path.join(root, 'etc', 'hosts'));
  await rejects(() => writeTree(root, [file('etc/hosts')], isRoot()), /EEXIST/);
  assert.is(await readFile(outside, 'utf8'), 'keep');
});

/** The previous output the writers below replace: opz3/rootfs/n1/hostname, holding `hostname`. */
async function previousOutput(hostname: string): Promise<string> {
  const target = path.join(tmp, 'opz3');
  await mkdir(path.join(target, 'rootfs/n1'), { recursive: true });
  await writeFile(path.join(target, 'rootfs/n1/hostname'), hostname);
  return target;
}

/** A writer program for a child process (its target is argv[2]): `body` after the imports it may use. */
async function writerScript(body: string): Promise<string> {
  const script = path.join(tmp, 'writer.mts');
  await writeFile(
    script,
    `import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomically } from ${JSON.stringify(path.resolve('src/emit/staging.ts'))};
import { onStopped, throwIfStopped } from ${JSON.stringify(path.resolve('src/stop.ts'))};
const target = process.argv[2]!;
${body}
`,
  );
  return script;
}

/** What a write left hidden beside the target: staging or old output. */
const hiddenLeft = async (): Promise<string[]> => (await readdir(tmp)).filter((n) => n.startsWith('.opz3'));

// What the writer does when the signal comes: it is in a step that takes a second, or it goes on writing
// into its staging directory until its next step sees the stop (as netroot's writers do, src/stop.ts).
const GOES_ON = {
  'is in a long step': 'await new Promise((resolve) => setTimeout(resolve, 1000));',
  'keeps writing':
    'for (let i = 0; ; i++) { throwIfStopped(); await mkdir(path.join(staging, `d${i}`)); await writeFile(path.join(staging, `d${i}/f`), String(i)); }',
};
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  for (const [then, code] of Object.entries(GOES_ON))
    test(`${signal} while writing (the writer ${then}) puts back what was taken from the previous output, leaves no staging, and the signal ends the process`, async () => {
      const target = await previousOutput('n1\n');
      // A writer that moves the previous tree into its staging directory (as a rebuild does), then waits or goes on.
      const script = await writerScript(`await writeAtomically(target, async (staging, rollback) => {
  const from = path.join(target, 'rootfs/n1');
  const to = path.join(staging, 'rootfs/n1');
  await mkdir(path.dirname(to), { recursive: true });
  await rename(from, to);
  rollback.add(() => rename(to, from));
  console.log('moved');
  ${code}
});`);
      const child = execa(process.execPath, ['--import', 'tsx', script, target], { reject: false, timeout: 30_000 });
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('moved') && resolve());
        void child.then((r) => reject(new Error(`the writer ended first: ${r.stderr}`)));
      });
      child.kill(signal);
      const result = await child;
      assert.is(result.signal, signal, result.stderr);
      assert.is(await readFile(path.join(target, 'rootfs/n1/hostname'), 'utf8'), 'n1\n');
      assert.equal(await hiddenLeft(), []);
    });

test('a signal once the writer is done, as the new output is moved in: the move finishes, the stop says so, and the new output is whole', async () => {
  const target = await previousOutput('old\n');
  // The writer's last act sends the signal to its own process: node runs the handler no sooner than the
  // first wait for I/O after the writer returned, which is the first rename of the move.
  const script = await writerScript(`onStopped((signal, finished) => console.log(\`stopped by \${signal}, finished: \${finished}\`));
await writeAtomically(target, async (staging) => {
  await mkdir(path.join(staging, 'rootfs/n1'), { recursive: true });
  await writeFile(path.join(staging, 'rootfs/n1/hostname'), 'new\\n');
  process.kill(process.pid, 'SIGINT');
});`);
  const result = await execa(process.execPath, ['--import', 'tsx', script, target], { reject: false, timeout: 30_000 });
  assert.is(result.signal, 'SIGINT', result.stderr);
  assert.is(result.stdout, 'stopped by SIGINT, finished: true');
  assert.is(await readFile(path.join(target, 'rootfs/n1/hostname'), 'utf8'), 'new\n');
  assert.equal(await hiddenLeft(), []);
});
