/**
 * What k3s asks of its datastore, through the VIP as kine does: kine's table
 * (created by the k3s stand-ins at start, exactly as kine's MySQL driver
 * creates it), revisions that are AUTO_INCREMENT ids growing by exactly 1
 * while the VIP moves between servers, and kine's compaction statement.
 * Statements are those of k3s-io/kine, pkg/drivers/mysql/mysql.go and
 * pkg/drivers/generic/generic.go.
 */
import type { Machine } from '../machine.js';
import { waitFor, type CommandResult } from '../run-command.js';
import { sqlThroughVip, vipHolders } from '../probes.js';
import { ensureWhole, galeraFullWithin, settledVipHolder } from '../cluster-checks.js';
import { elapsed, scenario, type LabContext, type ScenarioResult } from '../context.js';

/** The indexes kine creates on its table. */
export const KINE_INDEXES = [
  'kine_name_index',
  'kine_name_id_index',
  'kine_id_deleted_index',
  'kine_prev_revision_index',
  'kine_name_prev_revision_uindex',
];

/** kine's compaction: rows superseded by a later revision, and deleted rows, up to a revision. */
export const KINE_COMPACT = (revision: number): string => `DELETE kv FROM kine AS kv
  INNER JOIN (
    SELECT kp.prev_revision AS id FROM kine AS kp
    WHERE kp.name != 'compact_rev_key' AND kp.prev_revision != 0 AND kp.id <= ${revision}
    UNION
    SELECT kd.id AS id FROM kine AS kd
    WHERE kd.deleted != 0 AND kd.id <= ${revision}
  ) AS ks
  ON kv.id = ks.id`;

const ROWS = 200;
const KEYS = 20;

/**
 * One kine write through the VIP, retried (bounded) while the VIP moves; its revision (id).
 * A reply can be lost after the commit when the VIP moves mid-statement (the old holder commits, the
 * client's connection dies). The retry then hits kine's unique (name, prev_revision) index, as kine's
 * own retry would; kine re-reads the key, and so does this: the row is adopted only if it carries this
 * write's own value, so a real conflict still fails.
 */
async function put(
  ctx: LabContext,
  name: string,
  prev: number,
  deleted: boolean,
  value: string,
  lostReplies: string[],
): Promise<number | string> {
  const statement = `INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('${name}', ${prev ? 0 : 1}, ${deleted ? 1 : 0}, ${prev}, ${prev}, 0, '${value}', 'o'); SELECT LAST_INSERT_ID();`;
  let attempts = 0;
  let last: CommandResult | undefined;
  const id = await waitFor(
    async () => {
      attempts++;
      last = await sqlThroughVip(ctx.topology, ctx.datastore, statement, 10_000);
      if (last.ok) return Number(last.stdout.trim().split('\n').pop());
      if (attempts === 1 || !/ERROR 1062 .*kine_name_prev_revision_uindex/.test(last.stderr)) return undefined;
      const row = await sqlThroughVip(
        ctx.topology,
        ctx.datastore,
        `SELECT id, value FROM kine WHERE name = '${name}' AND prev_revision = ${prev}`,
        10_000,
      );
      const [found, foundValue] = row.stdout.trim().split('\t');
      if (!row.ok || foundValue !== value) return undefined;
      lostReplies.push(`${name} (revision ${found})`);
      return Number(found);
    },
    30_000,
    250,
  );
  return id ?? `writing ${name} through the VIP failed for 30 s (${attempts} attempts): ${last?.stderr.trim()}`;
}

async function keepalived(machine: Machine, action: 'stop' | 'start'): Promise<void> {
  await machine.exec('systemctl', [action, 'keepalived'], { timeoutMs: 20_000 });
}

/** kine's table through the VIP as k3s needs it: its indexes, a BIGINT AUTO_INCREMENT id, ids growing by 1. */
async function kineTableProblem(ctx: LabContext): Promise<string | undefined> {
  const indexes = await sqlThroughVip(
    ctx.topology,
    ctx.datastore,
    "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'kine'",
  );
  const found = indexes.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const missing = KINE_INDEXES.filter((i) => !found.includes(i));
  if (!indexes.ok || missing.length)
    return `kine's table through the VIP lacks ${missing.join(', ') || 'everything'} (netroot's datastore SQL completes it on every server's boot; the k3s stand-ins create it as kine does): ${indexes.stderr.trim()}`;
  const column = await sqlThroughVip(
    ctx.topology,
    ctx.datastore,
    "SELECT column_type, extra FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'kine' AND column_name = 'id'",
  );
  if (!/bigint\(20\) unsigned\tauto_increment/.test(column.stdout))
    return `kine.id is not BIGINT UNSIGNED AUTO_INCREMENT: ${column.stdout.trim()}`;
  const increment = await sqlThroughVip(ctx.topology, ctx.datastore, 'SELECT @@auto_increment_increment');
  if (increment.stdout.trim() !== '1')
    return `auto_increment_increment is ${increment.stdout.trim()} through the VIP; kine needs 1 (wsrep_auto_increment_control=OFF)`;
  return undefined;
}

/** What the writes left: their revisions in order, the VIP holders seen, and the replies lost as the VIP moved. */
interface KineWrites {
  run: string;
  ids: number[];
  holdersSeen: Set<string>;
  lostReplies: string[];
}

/** The last write of every fifth key deletes it, as kine records a delete. */
const deletesKey = (i: number): boolean => i >= ROWS - KEYS && (i % KEYS) % 5 === 0;

/**
 * Moves the VIP while kine writes: a third of the way in its holder's keepalived stops (the VIP moves),
 * two thirds in it starts again (and takes it back). Returns the machine it stopped, once it has.
 */
async function moveVipAt(ctx: LabContext, i: number, moved: Machine | undefined): Promise<Machine | undefined> {
  if (i !== Math.floor(ROWS / 3) && i !== Math.floor((2 * ROWS) / 3)) return moved;
  if (!moved) {
    const [holder] = await vipHolders(ctx.topology, ctx.machines);
    const stopped = ctx.machines.find((m) => m.node.name === holder);
    if (stopped) {
      ctx.log(`kine-sequence: stopping keepalived on ${stopped.node.name} after ${i} writes, so the VIP moves`);
      await keepalived(stopped, 'stop');
    }
    return stopped;
  }
  ctx.log(`kine-sequence: starting keepalived on ${moved.node.name} again after ${i} writes`);
  await keepalived(moved, 'start');
  return moved;
}

/** ROWS kine writes over KEYS keys through the VIP while it moves; what went wrong, or what they left. */
async function writeWhileVipMoves(ctx: LabContext): Promise<KineWrites | string> {
  const writes: KineWrites = { run: `/registry/netroot-lab/${Date.now()}`, ids: [], holdersSeen: new Set(), lostReplies: [] };
  const latest = new Map<string, number>();
  let moved: Machine | undefined;
  for (let i = 0; i < ROWS; i++) {
    moved = await moveVipAt(ctx, i, moved);
    const key = `${writes.run}/key-${i % KEYS}`;
    const id = await put(ctx, key, latest.get(key) ?? 0, deletesKey(i), `v${i}`, writes.lostReplies);
    if (typeof id === 'string') return `${id} (after ${i} writes)`;
    latest.set(key, id);
    writes.ids.push(id);
    for (const h of await vipHolders(ctx.topology, ctx.machines)) writes.holdersSeen.add(h);
  }
  if (moved && (await moved.unitState('keepalived')) !== 'active') await keepalived(moved, 'start');
  return writes;
}

/** Revisions grow by exactly 1 while the VIP moves, and it did move. */
function revisionProblem({ ids, holdersSeen }: KineWrites): string | undefined {
  const gaps = ids
    .slice(1)
    .map((id, i) => [ids[i]!, id] as const)
    .filter(([a, b]) => b !== a + 1);
  if (gaps.length)
    return `ids through the VIP are not consecutive: ${gaps
      .slice(0, 5)
      .map(([a, b]) => `${a} → ${b}`)
      .join(', ')} (VIP held by ${[...holdersSeen].join(', ')})`;
  if (holdersSeen.size < 2) return `the VIP never moved during the writes (held by ${[...holdersSeen].join(', ')})`;
  return undefined;
}

/** The datastore holds every write of this run: the highest revision stored, or what differs. */
async function storedRevision(ctx: LabContext, { run, ids }: KineWrites): Promise<number | string> {
  const stored = await sqlThroughVip(ctx.topology, ctx.datastore, `SELECT COUNT(*), MIN(id), MAX(id) FROM kine WHERE name LIKE '${run}/%'`);
  const [count, min, max] = stored.stdout.trim().split('\t').map(Number);
  if (count !== ROWS || min !== ids[0] || max !== ids[ids.length - 1])
    return `the datastore holds ${stored.stdout.trim()} (count, min, max) for this run, not ${ROWS} rows ${ids[0]}..${ids[ids.length - 1]}`;
  return max!;
}

/** kine's compaction up to `max`: superseded revisions and deleted keys go, the latest revision of every live key stays. */
async function compaction(ctx: LabContext, { ids }: KineWrites, max: number): Promise<number | string> {
  const superseded = new Set<number>();
  const rows = ids.map((id, i) => ({ id, deleted: deletesKey(i) }));
  const lastOf = new Map<string, number>();
  ids.forEach((id, i) => {
    const key = `key-${i % KEYS}`;
    if (lastOf.has(key)) superseded.add(lastOf.get(key)!);
    lastOf.set(key, id);
  });
  const expected = new Set([...superseded, ...rows.filter((r) => r.deleted).map((r) => r.id)]).size;
  const compact = await sqlThroughVip(ctx.topology, ctx.datastore, `${KINE_COMPACT(max)}; SELECT ROW_COUNT();`, 60_000);
  if (!compact.ok) return `kine's compaction through the VIP failed: ${compact.stderr.trim()}`;
  const deletedRows = Number(compact.stdout.trim().split('\n').pop());
  if (deletedRows !== expected) return `kine's compaction deleted ${deletedRows} rows, expected ${expected}`;
  return deletedRows;
}

export async function kineSequence(ctx: LabContext): Promise<ScenarioResult> {
  const { result, primary } = scenario('kine-sequence', Date.now());
  const whole = await ensureWhole(ctx);
  if (whole) return result(false, whole);
  const table = await kineTableProblem(ctx);
  if (table) return result(false, table);
  const writes = await writeWhileVipMoves(ctx);
  if (typeof writes === 'string') return result(false, writes);
  const revisions = revisionProblem(writes);
  if (revisions) return result(false, revisions);
  const max = await storedRevision(ctx, writes);
  if (typeof max === 'string') return result(false, max);
  const deletedRows = await compaction(ctx, writes, max);
  if (typeof deletedRows === 'string') return result(false, deletedRows);

  const settle = Date.now();
  const galera = await galeraFullWithin(ctx, ctx.bounds.rejoinSeconds * 1000);
  if (galera.ok) primary(elapsed(settle));
  await settledVipHolder(ctx, 6_000, ctx.bounds.vipSettleSeconds * 1000);
  const { ids, holdersSeen, lostReplies } = writes;
  return result(
    true,
    `kine's table and its ${KINE_INDEXES.length} indexes through the VIP; ${ROWS} writes while the VIP moved (held by ${[...holdersSeen].join(', ')}): ids ${ids[0]}..${ids[ids.length - 1]}, consecutive; compaction deleted ${deletedRows} superseded and deleted rows${
      lostReplies.length
        ? `; ${lostReplies.length} reply lost while the VIP moved, the write found committed on retry: ${lostReplies.join(', ')}`
        : ''
    }`,
  );
}
