/**
 * The order of a deploy and of a rollback: what is read (read.ts), decided
 * (plan.ts, pure), written (apply.ts) and recorded (records.ts), and when the
 * target's lock is held. A deploy: build first where the build is missing or
 * stale, check the secrets, take the lock, read again and plan, journal the
 * operation, write the nodes, the boot server's files, exportfs, the record.
 */
import path from 'node:path';
import { build, GENERATOR, prepare, programsForBuild, type Prepared } from '../build.js';
import { NothingToUndoError, UsageError } from '../errors.js';
import { TFTP_OUTPUT } from '../plan/boot-server-files.js';
import { fingerprint } from '../profile/store.js';
import { silentReporter, type Reporter } from '../progress.js';
import { requirePrograms } from '../tools.js';
import { decideRollback, NOTHING_RECORDED, type NodeChanges, type Operation, type RollbackInput } from './plan.js';
import {
  finishOperation,
  keepBootFiles,
  keptBootFiles,
  readJournal,
  readRecord,
  restoreBootFiles,
  writeJournal,
  type ClusterRecord,
} from './records.js';
import { applyBootFiles, applyNode, applyRollback, lockTarget, readNodeTarget, runExportfs, undoList } from './apply.js';
import { checkBuild } from './current.js';
import { checkSecrets, open, publicPlan, readPlan, type Context, type Planned } from './read.js';
import { deployPrograms, parseTarget, type Target } from './target.js';
import type { DeployOptions, DeployPlan, DeployResult, RollbackResult, TargetOptions } from './options.js';

/** What a deploy would do, per node and for the boot server's files; writes nothing. */
export async function planDeploy(options: TargetOptions & Pick<DeployOptions, 'build'>): Promise<DeployPlan> {
  const prepared = await prepare(options);
  // A stale build is refused, with the command that rebuilds it: plan writes nothing, not even a build.
  await checkBuild(options, prepared, 'plan');
  const ctx = await open(options, prepared);
  try {
    return publicPlan(await readPlan(ctx, options, false));
  } finally {
    await ctx.target.close();
  }
}

/** Deploy the last build (building first if there is none) onto the export root. */
export async function deploy(options: DeployOptions): Promise<DeployResult> {
  const opened: { target?: Target } = {};
  try {
    return await deployWith(options, opened);
  } finally {
    await opened.target?.close();
  }
}

async function deployWith(options: DeployOptions, opened: { target?: Target }): Promise<DeployResult> {
  const reporter = options.reporter ?? silentReporter;
  const prepared = await prepare(options);
  const cwd = options.cwd ?? process.cwd();
  // A deploy puts the profile's build in place: none yet, or a stale one, is built first.
  const check = await checkBuild(options, prepared, 'deploy');
  const buildOptions = check.status === 'current' ? undefined : { ...check.rebuild, reporter };
  // What the deploy and the build it may need run here, checked together before any work.
  requirePrograms([
    ...deployPrograms(parseTarget(options.to, cwd), options.ssh),
    ...(buildOptions ? await programsForBuild(buildOptions, prepared.loaded) : []),
  ]);
  const ctx = await open(options, prepared);
  opened.target = ctx.target;
  checkSecrets(ctx, options);
  let built = false;
  if (buildOptions && check.status !== 'current') {
    const why = check.status === 'none' ? 'there is no build to deploy yet' : `the build is stale: ${check.reasons.join('; ')}`;
    const step = reporter.step(`building ${prepared.loaded.cluster.name} (${why})`);
    // The same secrets as were checked: the build saves them if it generated them.
    await build({ ...buildOptions, prepared });
    step.finish();
    built = true;
  }
  const release = await lockTarget(ctx.target, ctx.root);
  try {
    const result = await deployLocked(ctx, prepared, options, reporter, built);
    return check.status === 'stale' ? { ...result, rebuilt: check.reasons } : result;
  } finally {
    await release();
  }
}

async function deployLocked(
  opened: Context,
  prepared: Prepared,
  options: DeployOptions,
  reporter: Reporter,
  built: boolean,
): Promise<DeployResult> {
  const { target, root } = opened;
  // Read again under the lock: a deploy or rollback that ended while this one waited changed it.
  const { record: _before, ...rest } = opened;
  const record = await readRecord(target, root, prepared.loaded.cluster.name);
  const ctx: Context = { ...rest, ...(record ? { record } : {}) };
  const planned = await readPlan(ctx, options, true);
  // An unchanged node is left alone, unless a deploy cut short left its generation unfinished.
  const writing = planned.nodes.filter((changes) => {
    const s = planned.sources[changes.node]!;
    const work = changes.added.length + changes.changed.length + changes.removed.length + changes.seeded.length + changes.orphans.length;
    return work > 0 || s.target.pending || !s.target.current;
  });
  const operation = await startDeploy(ctx, planned, writing);
  const deployed = await writeNodes(ctx, planned, writing, reporter);
  await applyBootFiles(target, planned.boot, planned.files, path.join(ctx.clusterDir, TFTP_OUTPUT), ctx.tftpDir);
  const exportsTouched = planned.boot.some((b) => b.what === 'exports' && b.status !== 'unchanged') || deployed.length > 0;
  const exportfs = await runExportfs(
    target,
    options.exportfs !== false,
    exportsTouched,
    planned.files.some((f) => f.what === 'ganesha'),
  );
  await recordDeploy(ctx, planned, operation ?? ctx.record?.last);
  return { ...publicPlan(planned), deployed, exportfs, ...(built ? { built } : {}) };
}

/**
 * The journal names every node this deploy changes before the first change (a rollback undoes exactly
 * those), and the boot server's files it replaces are kept. Nothing to change: the journal of a deploy
 * cut short, if any, as it is.
 */
async function startDeploy(ctx: Context, planned: Planned, writing: NodeChanges[]): Promise<Operation | undefined> {
  const { target, root } = ctx;
  const bootTouched = planned.boot.filter((b) => b.status !== 'unchanged').map((b) => b.path);
  const unfinished = await readJournal(target, root, planned.cluster);
  const resumed = unfinished?.kind === 'deploy' ? unfinished : undefined;
  if (!writing.length && !bootTouched.length) return resumed;
  const nodes: Operation['nodes'] = Object.fromEntries(
    writing.map((c) => [c.node, { from: planned.sources[c.node]!.target.generation, to: c.generation }]),
  );
  const operation: Operation = {
    kind: 'deploy',
    op: resumed?.op ?? (ctx.record?.last?.op ?? 0) + 1,
    at: resumed?.at ?? new Date().toISOString(),
    // A node the cut-short run already finished keeps the generation it started from.
    nodes: { ...nodes, ...resumed?.nodes },
  };
  await writeJournal(target, root, planned.cluster, operation);
  // A rollback cut short is superseded: what it kept is not this deploy's.
  await keepBootFiles(target, root, planned.cluster, operation.op, bootTouched, !resumed);
  return operation;
}

/** Write each node's new generation, in the plan's order; the nodes written. */
async function writeNodes(ctx: Context, planned: Planned, writing: NodeChanges[], reporter: Reporter): Promise<string[]> {
  const deployed: string[] = [];
  for (const changes of writing) {
    const s = planned.sources[changes.node]!;
    const step = reporter.step(
      `deploying ${changes.node}: ${changes.added.length} added, ${changes.changed.length} changed, ${changes.removed.length} removed`,
    );
    await applyNode(ctx.target, {
      root: ctx.root,
      node: changes.node,
      source: s.dir,
      manifest: s.manifest,
      ...(s.target.current ? { current: s.target.current } : {}),
      changes,
      undone: s.undone,
    });
    step.finish();
    deployed.push(changes.node);
  }
  return deployed;
}

/** The cluster's record after a deploy: what the deployed files hold, and the operation a rollback undoes. */
async function recordDeploy(ctx: Context, planned: Planned, last: Operation | undefined): Promise<void> {
  const { secrets, identities } = ctx.prepared.secrets;
  const nodes = planned.nodes.map((n) => n.node);
  const record: ClusterRecord = {
    kind: 'netroot-deploy',
    cluster: planned.cluster,
    generator: GENERATOR,
    deployedAt: new Date().toISOString(),
    nodes,
    // What the deployed files hold: the build's own record, when it has one.
    secrets: planned.secrets ?? fingerprint(secrets, identities, nodes),
    bootFiles: planned.files.map(({ what, path: p, sha256: h }) => ({ what, path: p, sha256: h })),
    ...(last ? { last } : {}),
  };
  await finishOperation(ctx.target, ctx.root, record);
}

/** Undo exactly the last deploy (or rollback): the nodes it changed and the boot server's files; all nodes or none. */
export async function rollback(options: TargetOptions): Promise<RollbackResult> {
  const reporter = options.reporter ?? silentReporter;
  const prepared = await prepare(options);
  const ctx = await open(options, prepared);
  try {
    // Said before the lock is taken: a rollback with nothing to undo writes nothing at all.
    if (!ctx.record?.last && !(await readJournal(ctx.target, ctx.root, ctx.prepared.loaded.cluster.name)))
      throw new NothingToUndoError(`nothing to undo on ${ctx.target.shown}: ${NOTHING_RECORDED}; nothing was changed`);
    const release = await lockTarget(ctx.target, ctx.root);
    try {
      return await rollbackWith(ctx, prepared, options, reporter);
    } finally {
      await release();
    }
  } finally {
    await ctx.target.close();
  }
}

/** What the rollback needs of each node the operation to undo names: its generations and what its live one replaced. */
async function readRollbackNodes(ctx: Context, named: string[]): Promise<RollbackInput['nodes']> {
  const nodes: RollbackInput['nodes'] = {};
  for (const node of named) {
    const t = await readNodeTarget(ctx.target, ctx.root, node, ctx.state);
    nodes[node] = { ...t, undo: t.generation > 0 ? await undoList(ctx.target, ctx.root, node, t.generation) : [] };
  }
  return nodes;
}

async function rollbackWith(ctx: Context, prepared: Prepared, options: TargetOptions, reporter: Reporter): Promise<RollbackResult> {
  const { target, root } = ctx;
  const cluster = prepared.loaded.cluster.name;
  // Read again under the lock: a deploy that ended while this rollback waited is the one to undo.
  const record = await readRecord(target, root, cluster);
  const unfinished = await readJournal(target, root, cluster);
  const last = record?.last;
  const nodes = await readRollbackNodes(ctx, Object.keys((unfinished?.kind === 'rollback' ? unfinished : last)?.nodes ?? {}));
  const decision = decideRollback({
    ...(last ? { last } : {}),
    ...(unfinished ? { unfinished } : {}),
    nodes,
    state: ctx.state,
    now: new Date().toISOString(),
  });
  if (decision.action === 'nothing')
    throw new NothingToUndoError(`nothing to undo on ${target.shown}: ${decision.reason}; nothing was changed`);
  if (decision.action === 'refuse')
    throw new UsageError(`cannot roll back ${target.shown}; nothing was changed:\n${decision.problems.map((p) => `  ${p}`).join('\n')}`);
  const { undoing, operation } = decision;
  const kept = await keptBootFiles(target, root, cluster, undoing.op);
  if (!decision.resumed) await writeJournal(target, root, cluster, operation);
  // What this rollback replaces is kept in turn, so that a second rollback redoes what it undid.
  await keepBootFiles(target, root, cluster, operation.op, [...kept.restore, ...kept.remove], !decision.resumed);
  for (const r of decision.nodes) {
    const t = nodes[r.node]!;
    const step = reporter.step(`rolling back ${r.node} to its generation ${t.generation - 1}`);
    await applyRollback(target, root, r.node, r, t.previous!, t.current!);
    step.finish();
  }
  await restoreBootFiles(target, root, cluster, undoing.op);
  const whatOf = new Map([...(record?.bootFiles ?? []), ...(kept.record?.bootFiles ?? [])].map((f) => [f.path, f.what]));
  const boot: RollbackResult['boot'] = [
    ...kept.restore.map((p) => ({ path: p, status: 'restored' as const })),
    ...kept.remove.map((p) => ({ path: p, status: 'removed' as const })),
  ].map((b) => ({ ...(whatOf.has(b.path) ? { what: whatOf.get(b.path)! } : {}), ...b }));
  const exportfs = await runExportfs(
    target,
    options.exportfs !== false,
    boot.some((b) => b.what === 'exports') || decision.nodes.length > 0,
    boot.some((b) => b.what === 'ganesha'),
  );
  // The cluster's record as it was before the undone operation (its boot files, its secrets), with this rollback as the last.
  await finishOperation(target, root, { ...(kept.record ?? { ...record!, bootFiles: [] }), last: operation });
  return {
    cluster,
    target: target.shown,
    undid: { kind: undoing.kind, at: undoing.at, nodes: Object.keys(undoing.nodes) },
    nodes: decision.nodes,
    untouched: prepared.plan.nodes.map((n) => n.node.name).filter((n) => !(n in operation.nodes)),
    boot,
    exportfs,
  };
}
