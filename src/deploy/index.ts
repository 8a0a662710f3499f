/**
 * `plan`, `deploy` and `rollback`: put what the last build wrote onto an NFS
 * export root (a local directory or `[user@]host:/dir`), node by node at
 * ROOT/NODE, without touching what the nodes keep there (their state), with
 * the previous generation kept for a rollback. The modules, by job:
 *
 *   run.ts              the order of a deploy and of a rollback (the lock, the journal, the steps)
 *   read.ts             what is read before the plan: the target, its records, the build to deploy
 *   plan.ts             the decisions, pure: what changes per node, what a rollback undoes
 *   apply.ts            the writing: a node's generation, a rollback, the boot server's files, exportfs
 *   records.ts          the cluster's record, the journal and the boot server files kept for a rollback
 *   target-commands.ts  every command run on the target host, one named function each
 *   target.ts           how those commands and rsync reach the target (here, or over ssh)
 */
export { deploy, planDeploy, rollback } from './run.js';
export type { DeployOptions, DeployPlan, DeployResult, RollbackResult, TargetOptions } from './options.js';
export { STATE_PATHS, statePaths, type NodeChanges, type BootFileChange, type Operation } from './plan.js';
