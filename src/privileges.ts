/** Whether this process runs as root: owners, devices and capabilities can be written only then. */
export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;
