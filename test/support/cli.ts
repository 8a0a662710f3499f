/**
 * The command line as the tests start it: `process.execPath` with CLI_ARGS, then the command's own
 * arguments. scripts/test.ts bundles src/cli.ts once per run and names the bundle in
 * NETROOT_TEST_CLI: it starts in a third of the CPU time tsx takes to load the sources, and the
 * fast tier starts the CLI some seventy times. A test file run by itself goes through tsx.
 */
import path from 'node:path';
import { REPO } from '../profile/helpers.js';

export const CLI_ARGS: readonly string[] = process.env.NETROOT_TEST_CLI
  ? [process.env.NETROOT_TEST_CLI]
  : ['--import', import.meta.resolve('tsx'), path.join(REPO, 'src/cli.ts')];
