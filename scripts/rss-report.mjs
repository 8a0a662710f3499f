// Preloaded by the benchmark (node --import): writes the process's peak RSS
// (KiB) to $NETROOT_RSS_FILE when it exits.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.NETROOT_RSS_FILE) writeFileSync(process.env.NETROOT_RSS_FILE, String(process.resourceUsage().maxRSS));
});
