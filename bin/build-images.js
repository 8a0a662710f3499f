#!/usr/bin/env node
// Runs the compiled CLI; `npm ci` compiles it (the prepare script).
// No heap cap: a cap low enough to keep RSS flat fails large bases outright;
// `npm run bench` measures peak memory on a base of 300 000 entries instead.
import('../dist/cli.js').catch((error) => {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/cli.js')) {
    process.stderr.write('build-images: not compiled yet; run `npm ci` (or `npm run build`) in the netroot directory\n');
    process.exit(1);
  }
  throw error;
});
