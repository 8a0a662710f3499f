/**
 * The lab catches what it claims to catch: a real lab run (root, network
 * namespaces, systemd-nspawn, keepalived, Galera) on trees whose rendered
 * config was broken on purpose fails, and its report points at the failing
 * check. The passing run is `npm run lab`, which .ci/run runs and counts.
 * Needs root and the packages of scripts/install-lab-deps.sh (.ci/run installs them).
 */
import { chown, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { build } from '../../src/build.js';
import { execa } from 'execa';
import { containerProcesses, K3S_STANDIN, runLab, type LabOptions, type LabReport } from '../../src/lab/lab.js';
import { waitFor } from '../../src/lab/run-command.js';

const PROFILE = path.resolve('profiles/opz3-lab.yaml');
const Lab = suite<{ tmp: string; secrets: string; tree: (node: string, file: string) => string }>('lab catches broken configs');

Lab.before(async (ctx) => {
  ctx.tmp = await mkdtemp(path.join(os.tmpdir(), 'netroot-lab-'));
  ctx.secrets = path.join(ctx.tmp, 'secrets.yaml');
  await build({
    profile: PROFILE,
    out: path.join(ctx.tmp, 'build'),
    formats: ['tree'],
    k3sBinary: K3S_STANDIN,
    secrets: ctx.secrets,
    reporter: { info() {}, step: () => ({ update() {}, finish() {} }) },
  });
  ctx.tree = (node, file) => path.join(ctx.tmp, 'build/opz3-lab/rootfs', node, file);
});
Lab.after(async (ctx) => {
  await rm(ctx.tmp, { recursive: true, force: true });
});

/** Edits one rendered file of one node's tree for the duration of `body`. */
async function withBroken(file: string, change: (text: string) => string, body: () => Promise<void>): Promise<void> {
  const saved = `${file}.saved`;
  await copyFile(file, saved);
  const text = await readFile(file, 'utf8');
  const broken = change(text);
  assert.is.not(broken, text, 'the edit must change the file');
  await writeFile(file, broken);
  try {
    await body();
  } finally {
    await copyFile(saved, file);
    await rm(saved);
  }
}

const coldStart = (report: LabReport) => report.scenarios.find((s) => s.name === 'cold-start');

/** The cold start alone, on the trees the suite built (and a test broke), quietly unless `options` say otherwise. */
const coldStartOnTrees = (ctx: { tmp: string; secrets: string }, options: Partial<LabOptions> = {}) =>
  runLab({
    profile: PROFILE,
    out: ctx.tmp,
    skipBuild: true,
    scenarios: ['cold-start'],
    secrets: ctx.secrets,
    log: () => undefined,
    ...options,
  });

Lab('wrong keepalived auth_pass on one server: two servers take the VIP, and the report says so', async (ctx) => {
  const conf = ctx.tree('opz3-2-midden', 'etc/keepalived/keepalived.conf');
  await withBroken(
    conf,
    (t) => t.replace(/auth_pass \S+/, 'auth_pass wrongpw1'),
    async () => {
      const report = await coldStartOnTrees(ctx);
      assert.not.ok(report.pass, 'the lab must fail');
      const cold = coldStart(report);
      assert.ok(cold && !cold.pass, JSON.stringify(report.scenarios));
      assert.match(cold!.detail, 'the VIP 192.0.2.50 is held by 2 servers at once (opz3-1-onder, opz3-2-midden)');
      assert.match(cold!.detail, 'auth_pass');
      assert.ok(existsSync(path.join(ctx.tmp, 'report.json')), 'the report is written');
    },
  );
});

Lab('a wrong Galera cluster name on one server: it never joins, and the report names it and its MariaDB log', async (ctx) => {
  const cnf = ctx.tree('opz3-3-boven', 'etc/mysql/mariadb.conf.d/70-netroot-galera.cnf');
  // A wrong peer address is not enough: the other servers, which list this one, connect to it and
  // it joins through them. Galera refuses a member whose group name differs.
  await withBroken(
    cnf,
    (t) => t.replace(/^wsrep_cluster_name=.*$/m, 'wsrep_cluster_name=not_the_cluster'),
    async () => {
      const report = await coldStartOnTrees(ctx, { bounds: { coldStartSeconds: 90 } });
      assert.not.ok(report.pass, 'the lab must fail');
      const cold = coldStart(report)!;
      assert.match(cold.detail, 'Galera did not form within 90 s: wsrep_cluster_size is not 3 on every server');
      assert.match(
        cold.detail,
        /opz3-1-onder: size 2, Primary, Synced; opz3-2-midden: size 2, Primary, Synced; opz3-3-boven: (MariaDB not answering|size 0)/,
      );
      assert.match(cold.detail, 'mariadb on opz3-3-boven:');
    },
  );
});

Lab(
  "a node whose resolver misses the lab's DNS server and that has a failing unit, and Galera without TLS: the cold start names each",
  async (ctx) => {
    const agent = (file: string) => ctx.tree('opz3-4-top', file);
    const tls = ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven'].map((node) =>
      ctx.tree(node, 'etc/mysql/mariadb.conf.d/72-netroot-tls.cnf'),
    );
    const noGaleraTls = (t: string) => t.replace(/^wsrep_provider_options=.*$/m, '');
    await withBroken(
      agent('etc/resolv.conf'),
      (t) => t.replace('nameserver 192.0.2.1', 'nameserver 192.0.2.9'),
      () =>
        // nofail: the mount fails, the boot goes on (degraded), as a bad line in a real fstab would.
        withBroken(
          agent('etc/fstab'),
          (t) => `${t}none\t/mnt/labbroken\ttmpfs\tnofail,size=bogus\t0\t0\n`,
          () =>
            withBroken(tls[0]!, noGaleraTls, () =>
              withBroken(tls[1]!, noGaleraTls, () =>
                withBroken(tls[2]!, noGaleraTls, async () => {
                  const report = await coldStartOnTrees(ctx);
                  assert.not.ok(report.pass, 'the lab must fail');
                  const cold = coldStart(report)!;
                  assert.match(cold.detail, 'names: opz3-4-top: getent hosts lab-check.netroot.test found nothing', cold.detail);
                  assert.not.match(cold.detail, /names: [^\n]*opz3-[123]/, 'the other nodes resolve');
                  assert.match(cold.detail, /systemd on opz3-4-top is degraded, failed: mnt-labbroken\.mount/, cold.detail);
                  assert.match(cold.detail, 'mnt-labbroken.mount on opz3-4-top:', cold.detail);
                  // Galera 4 without socket.ssl_* lists no socket.ssl option at all, and listens on tcp://.
                  assert.match(
                    cold.detail,
                    /Galera does not run over TLS \(wsrep_provider_options\): opz3-1-onder: socket\.ssl is not set, socket\.ssl_ca is empty/,
                    cold.detail,
                  );
                  assert.match(cold.detail, 'opz3-3-boven: socket.ssl is not set', cold.detail);
                  assert.match(cold.detail, 'gmcast.listen_addr is tcp://0.0.0.0:4567, not ssl://', cold.detail);
                }),
              ),
            ),
        ),
    );
  },
);

Lab('a bootstrap node whose base has no MariaDB system tables (as a qemu-user build leaves it) still forms the cluster', async (ctx) => {
  const datadir = ctx.tree('opz3-1-onder', 'var/lib/mysql');
  const aside = path.join(ctx.tmp, 'datadir-aside');
  await rename(datadir, aside);
  await mkdir(datadir);
  await chown(datadir, (await stat(aside)).uid, (await stat(aside)).gid);
  try {
    const report = await coldStartOnTrees(ctx, { bounds: { coldStartSeconds: 120 } });
    assert.ok(report.pass, JSON.stringify(report.scenarios, null, 1));
  } finally {
    await rm(datadir, { recursive: true, force: true });
    await rename(aside, datadir);
  }
});

Lab('a Ganesha export open to every client: the netboot check fails before anything boots', async (ctx) => {
  const exportsFile = path.join(ctx.tmp, 'build/opz3-lab/exports/opz3-lab.ganesha.conf');
  await withBroken(
    exportsFile,
    (t) => t.replace(/Clients = 192\.0\.2\.60;/, 'Clients = *;'),
    async () => {
      const report = await runLab({ profile: PROFILE, out: ctx.tmp, skipBuild: true, secrets: ctx.secrets, log: () => undefined });
      assert.not.ok(report.pass, 'the lab must fail');
      assert.equal(
        report.scenarios.map((s) => s.name),
        ['netboot'],
        'nothing boots after a failed netboot check',
      );
      assert.match(
        report.scenarios[0]!.detail,
        'NFS /srv/nfs/opz3/opz3-1-onder (the root of opz3-1-onder) is served to opz3-2-midden at 192.0.2.61',
      );
    },
  );
});

Lab('a lab killed with SIGKILL leaves its nodes running; the next run stops them before it starts', async (ctx) => {
  const runDir = path.join(ctx.tmp, 'run');
  // .mts: an ES module wherever it sits (top-level await), run by tsx like the lab itself.
  const child = path.join(ctx.tmp, 'killed-lab.mts');
  await writeFile(
    child,
    `import { runLab } from ${JSON.stringify(path.resolve('src/lab/lab.ts'))};\nawait runLab(${JSON.stringify({ profile: PROFILE, out: ctx.tmp, skipBuild: true, scenarios: ['cold-start'], secrets: ctx.secrets })});\n`,
  );
  const lab = execa('node', ['--import', 'tsx', child], {
    reject: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'ignore',
    timeout: 300_000,
  });
  try {
    // Once its nodes' systemd run their journald (past nspawn's own setup, whose processes die with
    // nspawn), pull the plug on the lab itself.
    const journalds = async () => {
      let count = 0;
      for (const pid of await containerProcesses(runDir))
        if ((await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim() === 'systemd-journal') count++;
      return count;
    };
    const booted = await waitFor(async () => ((await journalds()) >= 4 ? true : undefined), 180_000, 500);
    assert.ok(booted, 'the lab booted its nodes');
  } finally {
    lab.kill('SIGKILL');
    await lab;
  }
  // Killed with it (as `kill -9` of the whole process group does): each systemd-nspawn. The
  // containers' systemd are re-parented to PID 1 and keep running, MariaDB and keepalived too.
  const nspawn = await execa('pgrep', ['-f', `systemd-nspawn .*--directory=${runDir}/`], { reject: false });
  for (const pid of nspawn.stdout.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
  const nspawnGone = async () =>
    (await execa('pgrep', ['-f', `systemd-nspawn .*--directory=${runDir}/`], { reject: false })).stdout.trim() === '' ? true : undefined;
  assert.ok(await waitFor(nspawnGone, 10_000, 100), 'the killed systemd-nspawn processes are gone');
  assert.ok((await containerProcesses(runDir)).length > 0, "the killed lab's nodes outlive it (this is what the sweep is for)");
  const lines: string[] = [];
  const report = await coldStartOnTrees(ctx, { log: (l) => lines.push(l) });
  assert.ok(
    lines.some((l) => /^stopping \d+ processes of nodes left running by an earlier lab run$/.test(l)),
    lines.join('\n'),
  );
  assert.ok(report.pass, JSON.stringify(report.scenarios, null, 1));
  assert.equal(await containerProcesses(runDir), [], 'nothing of either run is left');
});

Lab('nothing of the lab is left behind', async () => {
  const namespaces = existsSync('/run/netns')
    ? (await import('node:fs')).readdirSync('/run/netns').filter((n) => n.startsWith(`nrl${process.pid}-`))
    : [];
  assert.equal(namespaces, [], 'network namespaces');
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.includes('netroot-lab-'));
  assert.equal(mounts, [], 'overlay mounts');
});
