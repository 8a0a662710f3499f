/** What a build writes of each node's root filesystem, given a base: a tree (rootfs/NODE/), a tar artifact, or both. */
export const OUTPUT_FORMATS = ['tree', 'tar'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
