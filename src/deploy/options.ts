/** What `plan`, `deploy` and `rollback` are given and what they answer: the deploy's public shapes. */
import type { BuildOptions, CommonOptions } from '../build.js';
import type { Reporter } from '../progress.js';
import type { BootFile, BootFileChange, NodeChanges, Operation } from './plan.js';

export interface TargetOptions extends CommonOptions {
  /** Output directory of the build (default: out); the build is OUT/CLUSTER. */
  out?: string;
  /** The export root: a directory here, or `[user@]host:/dir`. */
  to: string;
  /** TFTP root on the target host (default: the profile's exports.tftpRoot). */
  tftp?: string;
  /** dnsmasq's configuration directory on the target host (default: /etc/dnsmasq.d). */
  dnsmasq?: string;
  /** Where the exports(5) file goes on the target host (default: /etc/exports.d). */
  exportsDir?: string;
  /** Where the nfs-ganesha export file goes (default: /etc/ganesha when the nfs-ganesha service runs on the target host; false: never). */
  ganeshaDir?: string | false;
  /** Run `exportfs -ra` on the target host after writing the exports (default: true). */
  exportfs?: boolean;
  /** Deploy even though the secrets differ from the ones the target holds. */
  rotateSecrets?: boolean;
  /** How to reach a remote target (default: ssh). */
  ssh?: string[];
  /** Where digests of the build's files are cached between deploys (default: $XDG_CACHE_HOME/netroot). */
  cacheDir?: string;
  reporter?: Reporter;
}

export interface DeployOptions extends TargetOptions {
  /** Build options for the build run first when OUT/CLUSTER holds none. */
  build?: Omit<BuildOptions, keyof CommonOptions | 'out' | 'reporter'>;
}

export interface DeployPlan {
  cluster: string;
  target: string;
  /** The build deployed, and whether its nodes are full roots or overlays alone (a build without a base). */
  build: { dir: string; builtAt?: string; trees: 'rootfs' | 'overlay' };
  nodes: NodeChanges[];
  boot: BootFileChange[];
  notes: string[];
}

/** Whether `exportfs -ra` ran on the target host. */
export type ExportfsOutcome = 'ran' | 'skipped' | 'not needed';

export interface DeployResult extends DeployPlan {
  /** Nodes written (the others were unchanged). */
  deployed: string[];
  exportfs: ExportfsOutcome;
  /** Set when a build was run first. */
  built?: boolean;
  /** Set when the build was stale and rebuilt first: why. */
  rebuilt?: string[];
}

export interface RollbackResult {
  cluster: string;
  target: string;
  /** The deploy (or rollback) undone: when it ran, and the nodes it had changed. */
  undid: { kind: Operation['kind']; at: string; nodes: string[] };
  /** The nodes rolled back (a rollback cut short and finished now: those left). */
  nodes: NodeChanges[];
  /** The nodes the undone operation did not change: not touched. */
  untouched: string[];
  /** The boot server's files put back as they were, or removed (the undone operation created them). */
  boot: { what?: BootFile['what']; path: string; status: 'restored' | 'removed' }[];
  exportfs: ExportfsOutcome;
}
