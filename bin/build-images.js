#!/usr/bin/env -S node --max-old-space-size=192
// Runs the compiled CLI; `npm ci` compiles it (the prepare script).
// The heap cap keeps peak memory flat on large bases: indexing one makes much
// short-lived garbage that V8 would otherwise keep as resident memory; what is
// kept (the index) is about 0.7 KB per entry, so 192 MiB holds ~250 000 entries.
import('../dist/cli.js').catch((error) => {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/cli.js')) {
    process.stderr.write('build-images: not compiled yet; run `npm ci` (or `npm run build`) in the netroot directory\n');
    process.exit(1);
  }
  throw error;
});
