/** Small synchronous I/O helpers: write(2) may write less than asked, so loop. */
import * as fs from 'node:fs';

/** Writes all of `data`, at the file's offset, or at `position` (pwrite) when given. */
export function writeAll(fd: number, data: Buffer, position?: number): void {
  for (let offset = 0; offset < data.length;)
    offset += fs.writeSync(fd, data, offset, data.length - offset, position === undefined ? null : position + offset);
}
