/**
 * npm run lab -- --profile opz3-lab [--scenario NAME] [--out out/lab] [--arch arm64] [--skip-build] [--json]
 * npm run lab -- --profile opz3-netboot --scenario netboot-arm64 [--node NAME]
 *
 * Builds the profile's export trees with the k3s stand-in, boots every node in
 * network namespaces with the real keepalived, MariaDB/Galera, dnsmasq and
 * nfs-ganesha, and runs the convergence scenarios. Needs root and the packages
 * of scripts/install-lab-deps.sh. Exit 0 when every scenario passed, 1 when
 * one failed, 2 on bad usage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_FAILURE, NetrootError } from '../src/errors.js';
import { runLab, summary } from '../src/lab/lab.js';
import { EMULATED_SCENARIOS, SCENARIOS, type LabScenario } from '../src/lab/scenarios/index.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run lab --')
  .option('profile', { type: 'string', default: 'opz3-lab', describe: 'Profile to boot (name in profiles/ or a path)' })
  .option('scenario', {
    type: 'string',
    describe: `Run only these scenarios, comma-separated (after the cold start they need): ${SCENARIOS.join(', ')}; or, on its own with a profile of emulated boards (opz3-netboot): ${EMULATED_SCENARIOS.join(', ')}`,
  })
  .option('node', {
    type: 'string',
    describe: 'netboot-arm64: boot only these nodes, comma-separated (the cluster is checked only when all boot)',
  })
  .option('seed', { type: 'number', describe: 'Repeat the order of scenarios and power-ons of an earlier run (its report says its seed)' })
  .option('out', { type: 'string', default: 'out/lab', describe: 'Lab directory: build/, run/ and report.json' })
  .option('arch', { type: 'string', describe: 'Boot nodes of this architecture (arm64 runs under qemu-user; slow)' })
  .option('skip-build', { type: 'boolean', default: false, describe: 'Use the trees already built in <out>/build' })
  .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON on stdout' })
  .strict()
  .help()
  .parse();

const scenarios = argv.scenario
  ?.split(',')
  .map((name) => name.trim())
  .filter(Boolean);
const known: readonly string[] = [...SCENARIOS, ...EMULATED_SCENARIOS];
const unknown = scenarios?.filter((name) => !known.includes(name)) ?? [];
if (unknown.length) {
  process.stderr.write(`npm run lab: no scenario ${unknown.join(', ')}; the scenarios are ${known.join(', ')}\n`);
  process.exit(2);
}

try {
  const report = await runLab({
    profile: argv.profile,
    out: argv.out,
    skipBuild: argv['skip-build'],
    ...(scenarios ? { scenarios: scenarios as LabScenario[] } : {}),
    ...(argv.node
      ? {
          nodes: argv.node
            .split(',')
            .map((n) => n.trim())
            .filter(Boolean),
        }
      : {}),
    ...(argv.seed !== undefined ? { seed: argv.seed } : {}),
    ...(argv.arch ? { arch: argv.arch } : {}),
  });
  process.stdout.write(argv.json ? `${JSON.stringify(report, null, 2)}\n` : `${summary(report)}\nreport: ${argv.out}/report.json\n`);
  process.exitCode = report.pass ? 0 : EXIT_FAILURE;
} catch (error) {
  if (!(error instanceof NetrootError)) throw error;
  process.stderr.write(`npm run lab: ${error.message}\n`);
  process.exitCode = error.exitCode;
}
