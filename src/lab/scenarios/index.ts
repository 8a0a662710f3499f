/**
 * Every scenario the lab knows, by the name `--scenario` takes. A new
 * scenario is a file in this folder that exports its run, one import and one
 * line in SCENARIO_RUNS below; the CLI's list, the default run and the order
 * shuffled with the lab's seed all come from here.
 */
import type { ScenarioRun } from '../context.js';
import { bootstrapDatadirLost } from './bootstrap-datadir-lost.js';
import { galeraNodeLoss } from './galera-node-loss.js';
import { impostorK3sServer } from './impostor-k3s-server.js';
import { kineSequence } from './kine-sequence.js';
import { mariadbDown } from './mariadb-down.js';
import { mariadbRestartBootstrap } from './mariadb-restart-bootstrap.js';
import { powerCut } from './power-cut.js';
import { powerLastLeaverMissing } from './power-last-leaver-missing.js';
import { powerOneSurvivor } from './power-one-survivor.js';
import { powerOrderly } from './power-orderly.js';
import { powerStaleFlag } from './power-stale-flag.js';
import { powerStaleNode } from './power-stale-node.js';
import { rogueGaleraNode } from './rogue-galera-node.js';
import { rollingRedeploy } from './rolling-redeploy.js';
import { rolloutMariadbKilled } from './rollout-mariadb-killed.js';
import { vipFailover } from './vip-failover.js';

/** Every node powered on at once (cold-start.ts): the lab runs it first, and the others start from the cluster it formed. */
export const COLD_START = 'cold-start';

/** The scenarios after the cold start; each starts from a whole cluster, so they pass alone and in any order. */
export const SCENARIO_RUNS = {
  'vip-failover': vipFailover,
  'galera-node-loss': galeraNodeLoss,
  'mariadb-down': mariadbDown,
  'mariadb-restart-bootstrap': mariadbRestartBootstrap,
  'kine-sequence': kineSequence,
  'power-orderly': powerOrderly,
  'power-cut': powerCut,
  'power-stale-node': powerStaleNode,
  'power-one-survivor': powerOneSurvivor,
  'power-last-leaver-missing': powerLastLeaverMissing,
  'power-stale-flag': powerStaleFlag,
  'bootstrap-datadir-lost': bootstrapDatadirLost,
  'rogue-galera-node': rogueGaleraNode,
  'rolling-redeploy': rollingRedeploy,
  'rollout-mariadb-killed': rolloutMariadbKilled,
  'impostor-k3s-server': impostorK3sServer,
} satisfies Record<string, ScenarioRun>;

export type ScenarioName = typeof COLD_START | keyof typeof SCENARIO_RUNS;
export const SCENARIOS: readonly ScenarioName[] = [COLD_START, ...(Object.keys(SCENARIO_RUNS) as (keyof typeof SCENARIO_RUNS)[])];

/** Scenarios on emulated boards (a profile with board: qemu-virt-arm64, netboot-arm64.ts); each runs on its own. */
export const EMULATED_SCENARIOS = ['netboot-arm64'] as const;
export type LabScenario = ScenarioName | (typeof EMULATED_SCENARIOS)[number];
