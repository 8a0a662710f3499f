/**
 * `build-images`: a thin command line over the API in build.ts. Errors are
 * printed here and only here, with their exit code.
 */
import yargs, { type ArgumentsCamelCase, type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { build, findPlannedFile, parseCompress, parseFormats, prepare, VERSION, type CommonOptions } from './build.js';
import { defaultReporter } from './progress.js';
import { InternalError, NetrootError, UsageError, type ErrorReport } from './errors.js';
import { profileJsonSchema } from './profile/schema.js';
import { closest } from './suggest.js';
import { onStopped, stopSignal } from './stop.js';
import { deploy, planDeploy, rollback, type TargetOptions } from './deploy/index.js';
import { formatDeploy, formatPlan, formatRollback, formatRollout, formatStatus } from './deploy/report.js';
import { rollout, status, type OperateOptions } from './deploy/rollout.js';
import { BOOT_SERVER_DIRS } from './plan/boot-server-files.js';

function targetFlags(y: Argv) {
  return common(y)
    .option('to', {
      type: 'string',
      demandOption: true,
      describe: 'Export root: a directory, or [user@]host:/dir over ssh; each node is TO/<node>',
    })
    .option('out', { alias: 'o', type: 'string', default: 'out', describe: 'Output directory of the build (OUT/<cluster>)' })
    .option('tftp', { type: 'string', describe: 'TFTP root on the target host (default: exports.tftpRoot)' })
    .option('dnsmasq', {
      type: 'string',
      describe: `dnsmasq configuration directory on the target host (default: ${BOOT_SERVER_DIRS.dnsmasq})`,
    })
    .option('exports-dir', {
      type: 'string',
      describe: `Directory for CLUSTER.exports on the target host (default: ${BOOT_SERVER_DIRS.exports})`,
    })
    .option('ganesha-dir', {
      type: 'string',
      describe: `Directory for the nfs-ganesha export file (default: ${BOOT_SERVER_DIRS.ganesha} where the nfs-ganesha service runs)`,
    })
    .option('exportfs', { type: 'boolean', default: true, describe: 'Run exportfs -ra on the target host (--no-exportfs: do not)' })
    .option('rotate-secrets', {
      type: 'boolean',
      default: false,
      describe: 'Deploy even though the secrets differ from the ones the target holds',
    })
    .option('ssh', { type: 'string', describe: 'ssh command for a remote target, e.g. "ssh -p 2222 -i key" (default: ssh)' })
    .option('json', { type: 'boolean', default: false, describe: 'Print the plan or result as JSON' });
}

function targetOptions(
  argv: Parameters<typeof commonOptions>[0] & {
    to: string;
    out: string;
    tftp?: string | undefined;
    dnsmasq?: string | undefined;
    exportsDir?: string | undefined;
    ganeshaDir?: string | undefined;
    exportfs: boolean;
    rotateSecrets: boolean;
    ssh?: string | undefined;
    json: boolean;
  },
): TargetOptions {
  return {
    ...commonOptions(argv),
    to: argv.to,
    out: argv.out,
    ...(argv.tftp ? { tftp: argv.tftp } : {}),
    ...(argv.dnsmasq ? { dnsmasq: argv.dnsmasq } : {}),
    ...(argv.exportsDir ? { exportsDir: argv.exportsDir } : {}),
    ...(argv.ganeshaDir ? { ganeshaDir: argv.ganeshaDir } : {}),
    exportfs: argv.exportfs,
    rotateSecrets: argv.rotateSecrets,
    ...(argv.ssh ? { ssh: argv.ssh.split(/\s+/).filter(Boolean) } : {}),
    reporter: defaultReporter({ json: argv.json }),
  };
}

function common(y: Argv) {
  return y
    .option('profile', {
      alias: 'p',
      type: 'string',
      demandOption: true,
      describe: 'Profile name (profiles/NAME.yaml) or path to a profile file',
    })
    .option('secrets', {
      type: 'string',
      describe: 'Secrets file (default: CLUSTER.secrets.yaml in $NETROOT_SECRETS_DIR or ~/.local/state/netroot/secrets)',
    })
    .option('overlays', { type: 'string', describe: 'Overlay template directory (default: the bundled overlays)' });
}

function commonOptions(argv: { profile: string; secrets?: string | undefined; overlays?: string | undefined }): CommonOptions {
  return {
    profile: argv.profile,
    ...(argv.secrets ? { secrets: argv.secrets } : {}),
    ...(argv.overlays ? { overlays: argv.overlays } : {}),
  };
}

const out = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

/** `plan`, and `deploy --dry-run`: what a deploy would change, as text or JSON. */
async function showPlan(options: Parameters<typeof planDeploy>[0], json: boolean): Promise<void> {
  const plan = await planDeploy(options);
  out(json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
}

/** The commands, as `build-images COMMAND` names them (build is also the default). */
const COMMANDS = ['build', 'validate', 'render', 'plan', 'deploy', 'rollback', 'rollout', 'status', 'schema', 'help'];

/** `status` and `rollout`: the export root, and how the nodes are reached. */
function nodeFlags(y: Argv) {
  return y
    .option('profile', {
      alias: 'p',
      type: 'string',
      demandOption: true,
      describe: 'Profile name (profiles/NAME.yaml) or path to a profile file',
    })
    .option('to', {
      type: 'string',
      demandOption: true,
      describe: 'Export root the nodes run from (as deploy --to): a directory, or [user@]host:/dir over ssh',
    })
    .option('ssh', { type: 'string', describe: 'ssh command for a remote export root (default: ssh)' })
    .option('node-ssh', {
      type: 'string',
      describe: 'ssh command for the nodes, reached as the profile\'s ssh.user at their IPs, e.g. "ssh -i ~/.ssh/cluster" (default: ssh)',
    })
    .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' });
}

function nodeOptions(argv: {
  profile: string;
  to: string;
  ssh?: string | undefined;
  nodeSsh?: string | undefined;
  json: boolean;
}): OperateOptions {
  const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);
  return {
    profile: argv.profile,
    to: argv.to,
    ...(argv.ssh ? { ssh: words(argv.ssh) } : {}),
    ...(argv.nodeSsh ? { nodeSsh: words(argv.nodeSsh) } : {}),
    reporter: defaultReporter({ json: argv.json }),
  };
}

/** The parsed words a command's handler gets from its flags. */
type ArgsOf<Flags extends (y: Argv) => Argv<unknown>> = ArgumentsCamelCase<Flags extends (y: Argv) => Argv<infer U> ? U : never>;

// The default command takes no word of its own: a first word that is no command is a mistyped one.
function rejectUnknownCommand(args: string[]): void {
  const first = args[0];
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    const meant = closest(first, COMMANDS);
    throw new UsageError(
      `unknown command ${first}${meant ? `; did you mean ${meant}?` : '.'} The commands are ${COMMANDS.slice(0, -1).join(', ')} (build-images --help).`,
    );
  }
}

function buildFlags(y: Argv) {
  return common(y)
    .option('out', { alias: 'o', type: 'string', default: 'out', describe: 'Output directory; the build goes to OUT/<cluster>' })
    .option('base', {
      alias: 'b',
      type: 'string',
      describe:
        "Base root filesystem: a directory, a .tar[.gz|.xz|.zst], an .img[.xz], or debootstrap:SUITE:ARCH[:pkg,…] (default: the profile's base:)",
    })
    .option('format', {
      alias: 'f',
      type: 'string',
      describe: 'With a base, what to write per node: tree, tar or tree,tar (default: tar)',
    })
    .option('compress', {
      type: 'string',
      describe: 'Artifact compressions: gz, zst or gz,zst (default: gz, plus zst where zstd is installed)',
    })
    .option('k3s-binary', {
      type: 'string',
      describe: "k3s binary to install (default: the profile's k3s.binary, else the release of k3s.version, downloaded once and checked)",
    })
    .option('cache-dir', { type: 'string', describe: 'Cache for bases, images and k3s downloads (default: $XDG_CACHE_HOME/netroot)' })
    .option('rotate-secrets', {
      type: 'boolean',
      default: false,
      describe: 'Build even though the secrets differ from the ones the previous build was made with',
    })
    .option('json', { type: 'boolean', default: false, describe: 'Print a machine-readable summary' });
}

async function runBuild(argv: ArgsOf<typeof buildFlags>): Promise<void> {
  const formats = parseFormats(argv.format);
  const compress = parseCompress(argv.compress);
  const result = await build({
    ...commonOptions(argv),
    out: argv.out,
    ...(argv.base ? { base: argv.base } : {}),
    ...(formats ? { formats } : {}),
    ...(compress ? { compress } : {}),
    ...(argv.k3sBinary ? { k3sBinary: argv.k3sBinary } : {}),
    ...(argv.cacheDir ? { cacheDir: argv.cacheDir } : {}),
    rotateSecrets: argv.rotateSecrets,
    reporter: defaultReporter({ json: argv.json }),
  });
  if (argv.json) return out(JSON.stringify(result, null, 2));
  for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
  const servers = result.nodes.filter((n) => n.roles.includes('server')).length;
  out(
    `built ${result.dir}: ${result.nodes.length} nodes (${servers} servers, ${result.nodes.length - servers} agent${result.nodes.length - servers === 1 ? '' : 's'}), ${result.files} files`,
  );
  if (result.base?.initrdRegenerated)
    out(
      `the base's initrd could not mount an NFS root: ${result.base.initrdRegenerated === 'now' ? 'regenerated it with MODULES=netboot in a copy of the base (cached)' : 'using the copy of the base regenerated with MODULES=netboot earlier'}`,
    );
  if (result.base)
    out(
      `base ${result.base.source} (${result.base.kind}, ${result.base.arch}${result.base.entries !== undefined ? `, ${result.base.entries} entries` : ''}${result.base.reused ? ', unchanged since the last build: not read' : ''}); k3s ${result.k3s!.source === 'given' ? result.k3s!.path : `${result.k3s!.source}, sha256 ${result.k3s!.sha256.slice(0, 12)}…`}; wrote ${result.formats.join(' and ')}${result.reused?.length ? `; ${result.reused.length} node(s) unchanged since the last build` : ''}`,
    );
  if (result.secretsMigrated)
    out(
      `copied the cluster's secrets from ${result.secretsMigrated.from} to ${result.secretsMigrated.to}, where every profile of this cluster finds them; the old file is no longer read`,
    );
  for (const note of result.notes) out(note);
  if (result.secretsCreated)
    out(`generated the cluster's secrets in ${result.secretsCreated} (mode 0600): keep it, back it up, never commit it`);
}

function validateFlags(y: Argv) {
  return common(y).option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' });
}

async function runValidate(argv: ArgsOf<typeof validateFlags>): Promise<void> {
  const { loaded, plan, warnings } = await prepare(commonOptions(argv));
  if (argv.json)
    return out(
      JSON.stringify(
        {
          profile: loaded.name,
          file: loaded.file,
          cluster: plan.cluster.name,
          nodes: plan.nodes.map(({ node }) => ({ name: node.name, roles: node.roles })),
          warnings,
        },
        null,
        2,
      ),
    );
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  out(`${loaded.name}: valid, cluster ${plan.cluster.name} (${plan.nodes.length} nodes, ${plan.cluster.servers.length} servers)`);
}

function renderFlags(y: Argv) {
  return common(y).option('node', { alias: 'n', type: 'string', demandOption: true, describe: 'Node name' }).positional('path', {
    type: 'string',
    describe:
      "File path in the node's root, e.g. /etc/keepalived/keepalived.conf, or a boot server file: pxelinux.cfg, dnsmasq, exports, ganesha",
  });
}

async function runRender(argv: ArgsOf<typeof renderFlags>): Promise<void> {
  const { secrets, plan } = await prepare(commonOptions(argv));
  const { files, bootServer } = findPlannedFile(plan, argv.node, argv.path);
  if (secrets.generated.length)
    process.stderr.write(`note: no saved secrets yet; ${secrets.generated.join(', ')} shown here are placeholders until the first build\n`);
  if (argv.path === undefined) {
    return out(
      files
        .map(
          (f) =>
            `${f.type === 'symlink' ? 'l' : '-'}${f.mode.toString(8).padStart(4, '0')} ${f.uid}:${f.gid} /${f.path}${f.type === 'symlink' ? ` -> ${f.target}` : ''}`,
        )
        .join('\n') +
        // The boot server's files this node boots with, under the names `render` takes.
        `\nboot server (render --node ${argv.node} NAME):\n` +
        bootServer.map(({ name, file }) => `  ${name.padEnd(13)} ${file.path}`).join('\n'),
    );
  }
  for (const f of files) out(f.type === 'symlink' ? `/${f.path} -> ${f.target}` : f.content!.toString());
}

async function runPlan(argv: ArgsOf<typeof targetFlags>): Promise<void> {
  return showPlan(targetOptions(argv), argv.json);
}

function deployFlags(y: Argv) {
  return targetFlags(y)
    .option('dry-run', { type: 'boolean', default: false, describe: 'Show the plan; write nothing' })
    .option('base', { alias: 'b', type: 'string', describe: 'When there is no build yet: the base to build with' })
    .option('format', { alias: 'f', type: 'string', describe: 'When there is no build yet: tree, tar or tree,tar (default: tree)' });
}

async function runDeploy(argv: ArgsOf<typeof deployFlags>): Promise<void> {
  const options = targetOptions(argv);
  if (argv.dryRun) return showPlan(options, argv.json);
  const formats = parseFormats(argv.format);
  const result = await deploy({ ...options, build: { ...(argv.base ? { base: argv.base } : {}), formats: formats ?? ['tree'] } });
  out(argv.json ? JSON.stringify(result, null, 2) : formatDeploy(result));
}

async function runRollback(argv: ArgsOf<typeof targetFlags>): Promise<void> {
  const result = await rollback(targetOptions(argv));
  out(argv.json ? JSON.stringify(result, null, 2) : formatRollback(result));
}

function rolloutFlags(y: Argv) {
  return nodeFlags(y)
    .option('dry-run', { type: 'boolean', default: false, describe: 'Print the order; reboot nothing' })
    .option('reboot-command', {
      type: 'string',
      describe: 'Reboot with this command here, with $NODE and $NODE_IP set (a PDU, a BMC), instead of systemctl reboot over ssh',
    })
    .option('wait', { type: 'number', describe: 'Seconds to wait for each node to come back healthy (default: from the profile)' });
}

async function runRollout(argv: ArgsOf<typeof rolloutFlags>): Promise<void> {
  if (argv.rebootCommand !== undefined && !argv.rebootCommand.trim())
    throw new UsageError('--reboot-command is empty: give the command that reboots $NODE (at $NODE_IP)');
  if (argv.wait !== undefined && !(argv.wait > 0)) throw new UsageError(`--wait ${argv.wait}: give a number of seconds above 0`);
  const result = await rollout({
    ...nodeOptions(argv),
    dryRun: argv.dryRun,
    ...(argv.rebootCommand ? { rebootCommand: argv.rebootCommand } : {}),
    ...(argv.wait !== undefined ? { waitSeconds: argv.wait } : {}),
  });
  out(argv.json ? JSON.stringify(result, null, 2) : formatRollout(result));
}

async function runStatus(argv: ArgsOf<typeof nodeFlags>): Promise<void> {
  const result = await status(nodeOptions(argv));
  out(argv.json ? JSON.stringify(result, null, 2) : formatStatus(result));
}

export async function main(args: string[]): Promise<void> {
  rejectUnknownCommand(args);
  await yargs(args)
    .scriptName('build-images')
    .version(VERSION)
    .strict()
    .command(['$0', 'build'], "Validate a profile and build every node's overlay, PXE, DHCP and NFS export files", buildFlags, runBuild)
    .command('validate', 'Check a profile and render every file in memory; writes nothing', validateFlags, runValidate)
    .command('render [path]', 'Print one rendered file of a node (or list its files) for review; writes nothing', renderFlags, runRender)
    .command('plan', 'Show what a deploy would change per node and on the boot server; writes nothing', targetFlags, runPlan)
    .command(
      'deploy',
      "Deploy the profile's build (built first if there is none or it is stale) onto the export root, keeping node state and the previous generation",
      deployFlags,
      runDeploy,
    )
    .command(
      'rollback',
      "Undo the last deploy on the export root: the nodes it changed and the boot server's files go back (node state untouched); again: redo it",
      targetFlags,
      runRollback,
    )
    .command(
      'rollout',
      'Reboot the nodes a deploy changed, one at a time, servers first, each back healthy (Galera Synced, one VIP holder, k3s) before the next',
      rolloutFlags,
      runRollout,
    )
    .command(
      'status',
      'One row a node: generation deployed and booted, reboot pending, MariaDB/Galera, keepalived and the VIP, k3s',
      nodeFlags,
      runStatus,
    )
    .command('schema', "Print the profile's JSON Schema (for editors and validators)", {}, () => {
      out(JSON.stringify(profileJsonSchema(), null, 2));
    })
    .fail((message, error) => {
      if (error) throw error;
      throw new UsageError(message);
    })
    .help()
    .parseAsync();
}

/** Whether the command asked for JSON (read from the words themselves: the error may be yargs' own). */
const wantsJson = (args: string[]): boolean => {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--json' || a === '--json=true');
};

// Ctrl-C or SIGTERM during a write: said once its half-written output is gone (or, when the signal came as the
// new output was being moved in, once that move is done), before the signal ends the process.
onStopped((signal, finished) =>
  process.stderr.write(
    finished
      ? `build-images: stopped by ${signal} as the new output was being moved into place: that finished, and the new output is whole\n`
      : `build-images: stopped by ${signal}; what was being written was removed, and the previous output is as it was\n`,
  ),
);

main(hideBin(process.argv)).catch((error: unknown) => {
  // A program the signal also stopped fails "with no message": the stop is what happened, and is said above.
  if (stopSignal()) return;
  let report: ErrorReport;
  if (error instanceof InternalError) {
    // A bug: the stack is what a report needs.
    process.stderr.write(`build-images: ${error.stack ?? error.message}\n`);
    report = error.toJSON();
  } else if (error instanceof NetrootError) {
    process.stderr.write(`build-images: ${error.message}\n`);
    report = error.toJSON();
  } else {
    process.stderr.write(
      `build-images: internal error (please report it): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    report = { message: `internal error (please report it): ${error instanceof Error ? error.message : String(error)}`, exitCode: 1 };
  }
  process.exitCode = report.exitCode;
  // A script that asked for JSON gets its error as JSON too, on stdout where it reads the result.
  if (wantsJson(hideBin(process.argv))) out(JSON.stringify({ error: report }, null, 2));
});
