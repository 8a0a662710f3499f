/** Small synchronous I/O helpers: write(2) may write less than asked, so loop. */
import * as fs from 'node:fs';

export function writeAll(fd: number, data: Buffer): void {
  for (let offset = 0; offset < data.length;) offset += fs.writeSync(fd, data, offset, data.length - offset);
}
