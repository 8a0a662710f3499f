/**
 * What every scenario is given and what it gives back: the lab's context (its
 * nodes, bounds, DNS, cleanup and seeded shuffle), the time bounds derived
 * from the profile, and a scenario's result, built one way (`scenario`).
 */
import type { Cleanup } from './cleanup.js';
import type { LabDns } from './dns.js';
import type { Machine } from './machine.js';
import type { Datastore } from './probes.js';
import type { LabTopology } from './topology.js';

export interface ScenarioResult {
  name: string;
  pass: boolean;
  seconds: number;
  detail: string;
  /** From the end of the disruption (power on, MariaDB killed) to a primary component of all servers. */
  primarySeconds?: number;
}

export interface LabBounds {
  /** From power-on until Galera, the VIP, the datastore and every stand-in are up. */
  coldStartSeconds: number;
  /** Once Galera formed, keepalived has run for a while: one holder must emerge within this. */
  vipSettleSeconds: number;
  /** The goal for the VIP to move after its holder lost power. */
  failoverSeconds: number;
  /** From power-on until a restarted server is back in a full Galera cluster. */
  rejoinSeconds: number;
  /** keepalived's health check (2 failures checkInterval apart) plus the takeover: the VIP leaves a server whose MariaDB died. */
  healthFailoverSeconds: number;
  /** From powering the servers on after a whole-cluster outage until a primary component of all of them. */
  recoverySeconds: number;
  /** The profile's galera.recovery.survivorAfter: when a lone server may bootstrap under the survivor policy. */
  survivorAfterSeconds: number;
  /** The profile's galera.recovery.waitForAll: how long servers wait for one that may hold a few writes more. */
  waitForAllSeconds: number;
  /**
   * From a node's power-on until its systemd reports the system running: every server more
   * starts and joins Galera in turn, and the servers' k3s waits for the datastore.
   */
  systemRunningSeconds: number;
  /** How long a stranger's MariaDB is watched for joining the cluster (its own wait for a primary component is 30 s). */
  rogueSeconds: number;
}

/**
 * The time bounds, derived from the profile: keepalived declares a master dead
 * after three missed adverts, its health check fails after two 2-s intervals,
 * and every server more boots, recovers and transfers its state in turn.
 */
export function boundsFor(
  profile: {
    keepalived: { advertInterval: number; checkInterval?: number };
    galera: { recovery: { survivorAfter: number; waitForAll: number } };
  },
  servers: number,
): LabBounds {
  const advert = profile.keepalived.advertInterval;
  const check = profile.keepalived.checkInterval ?? 2;
  return {
    coldStartSeconds: 120 + 60 * servers,
    vipSettleSeconds: 30 + 15 * advert,
    failoverSeconds: 3 * advert + 2,
    rejoinSeconds: 120 + 40 * servers,
    healthFailoverSeconds: 2 * check + 3 * advert + 8,
    recoverySeconds: 120 + 40 * servers,
    survivorAfterSeconds: profile.galera.recovery.survivorAfter,
    waitForAllSeconds: profile.galera.recovery.waitForAll,
    systemRunningSeconds: 60 + 20 * servers,
    rogueSeconds: 60,
  };
}

export interface LabContext {
  topology: LabTopology;
  /** The profile's recovery policy for a whole-cluster outage (galera.recovery.policy). */
  recoveryPolicy: 'majority' | 'survivor';
  /** The server that starts a brand-new cluster (galera.bootstrapNode). */
  bootstrapNode: string;
  /** Shuffles with the lab's seed, so an order can be repeated. */
  shuffle<T>(items: T[]): T[];
  machines: Machine[];
  datastore: Datastore & { optionsFile: string };
  /** Brings a powered-off node back: DHCP again, then boot (what a power cycle does). */
  powerOn(machine: Machine): Promise<void>;
  log(line: string): void;
  bounds: LabBounds;
  /** The lab's DNS server on the gateway and the name it serves. */
  dns: LabDns;
  /** The lab's run directory: what a scenario starts keeps its files under it. */
  runDir: string;
  /** Undoes what a scenario started, should the lab be stopped in the middle of it. */
  cleanup: Cleanup;
  /** How to build and deploy again onto the export root the nodes run from (rolling-redeploy). */
  deployment?: LabDeployment;
}

/** What the scenario needs of the lab's build to build and deploy again. */
export interface LabDeployment {
  profile: string;
  cwd: string;
  /** The lab's build output (OUT of OUT/CLUSTER), which the export root's nodes came from. */
  buildOut: string;
  /** The export root the nodes run from: the deploy's --to. */
  exportRoot: string;
  /** The k3s the lab builds with (its stand-in). */
  k3sBinary: string;
  secrets?: string;
  cacheDir?: string;
}

/** A scenario of the container lab: it starts from a whole cluster and says how it went. */
export type ScenarioRun = (ctx: LabContext) => Promise<ScenarioResult>;

/** Seconds since `start`, to a tenth. */
export const elapsed = (start: number): number => Math.round((Date.now() - start) / 100) / 10;

/** A scenario's result builder: its name, the seconds since `start`, and the time to a primary component once known. */
export function scenario(
  name: string,
  start: number,
): { result: (pass: boolean, detail: string) => ScenarioResult; primary(seconds: number): void } {
  let primarySeconds: number | undefined;
  return {
    result: (pass, detail) => ({
      name,
      pass,
      seconds: elapsed(start),
      detail,
      ...(primarySeconds !== undefined ? { primarySeconds } : {}),
    }),
    primary: (seconds) => void (primarySeconds = seconds),
  };
}
