/**
 * Trajectories at rest: what a written trajectory costs in Redis before and after the sink archives
 * it, and the peak memory of `envfleet export` as the run grows.
 *
 *   node --import tsx bench/export.ts [--counts 2000,8000] [--turns 30] [--heap-cap 128]
 *
 * For each count N: N synthetic trajectories of --turns agent turns (a tool call, a ~600-byte tool
 * result and a step record each; a ~4 KB final state) are stored in a fresh run under their own
 * Redis prefix and published to the run's stream, as rollout.run does. Redis `used_memory` is read
 * before, after storing, and after `runSink` wrote them to a temporary directory (and replaced each
 * document by its summary). Then three fresh processes (bench/export/child.ts) each report their
 * peak RSS: `idle` (connect, list ids), `export` (exportRun: SFT formats, one trajectory at a time
 * from the shards) and `hold` (every full trajectory in one array, as an export that loads the run
 * first would), then `export` and `hold` again with V8's old space capped at --heap-cap MB
 * (`--max-old-space-size`): whether each finishes shows whether its memory is bounded or grows
 * with the run (peak RSS alone mostly shows how lazily V8 collects). Prints a markdown report; the prefix and the directory are deleted at the end.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat, readdir } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { loadConfig } from '../config/index.js';
import { runOptionsFrom } from '../queues/submit.js';
import { runSink } from '../src/datasets/sink.js';
import { createRedisTrajectoryStream } from '../src/rollouts/stream.js';
import type { Trajectory } from '../src/rollouts/types.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { benchArgs } from './args.js';
import { deletePrefix } from './redis-keys.js';

const args = benchArgs(import.meta.url, { values: ['counts', 'turns', 'heap-cap'] });
const COUNTS = args.ints('counts', '2000,8000');
const TURNS = args.int('turns', 30);
const HEAP_CAP_MB = args.int('heap-cap', 128);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const run = promisify(execFile);
const progress = (line: string) => process.stderr.write(`[bench/export] ${line}\n`);

function syntheticTrajectory(runId: string, i: number): Trajectory {
  const messages: Record<string, unknown>[] = [
    { role: 'system', content: 'You are a helpful agent. '.repeat(20) },
    { role: 'user', content: `Task ${i}: reconcile the ledger of guest G${i} and settle every open charge.` },
  ];
  const steps = [];
  for (let turn = 1; turn <= TURNS; turn += 1) {
    const id = `call_${i}_${turn}`;
    const args = JSON.stringify({ guest_id: `G${i}`, charge_id: `C${turn}`, note: 'n'.repeat(40) });
    messages.push({ role: 'assistant', content: null, reasoning_content: `Step ${turn}: look up the charge. `.repeat(3), tool_calls: [{ id, type: 'function', function: { name: 'get_charge', arguments: args } }] });
    const result = { success: true, data: { charge_id: `C${turn}`, amount: turn * 13.5, items: Array.from({ length: 8 }, (_, k) => ({ sku: `S${k}`, qty: k + 1, label: 'item label text' })) } };
    messages.push({ role: 'tool', tool_call_id: id, content: JSON.stringify(result) });
    steps.push({ turn, tool: 'get_charge', toolCallId: id, rawArguments: args, result, runtimeError: null, us: 40 });
  }
  messages.push({ role: 'assistant', content: 'All charges are settled.' });
  return {
    id: `${runId}.s${String(i).padStart(6, '0')}.non-conversational.0`,
    runId,
    scenarioId: `s${i}`,
    environmentId: 'e1',
    mode: 'non-conversational',
    sample: 0,
    model: 'policy',
    userModel: null,
    sampling: { temperature: 1, maxTokens: 1024 },
    tools: [{ type: 'function', function: { name: 'get_charge', description: 'Look up a charge', parameters: { type: 'object', properties: { guest_id: { type: 'string' }, charge_id: { type: 'string' } } } } }],
    messages: messages as unknown as Trajectory['messages'],
    userMessages: null,
    steps,
    checks: [{ item: 'every charge settled', passed: true }],
    reward: 1,
    solved: true,
    checksError: null,
    termination: { reason: 'agent-finished', detail: null },
    turns: TURNS + 1,
    usage: { promptTokens: 1000 * TURNS, completionTokens: 60 * TURNS, modelCalls: TURNS + 1 },
    timings: { startedAt: new Date(0).toISOString(), wallMs: 1000, envUs: 40 * TURNS },
    finalState: { guests: Array.from({ length: 40 }, (_, k) => ({ id: `G${k}`, name: `Guest ${k}`, balance: k * 2.5, notes: 'x'.repeat(40) })) },
    lineage: { runId, scenarioId: `s${i}`, prompts: { policy: 'v1' } },
  };
}

const usedMemory = async (redis: Redis) => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
interface ChildResult {
  maxRssMB: number;
  ms: number;
  count: number;
}
const child = async (nodeArgs: string[], ...argv: string[]): Promise<ChildResult> => {
  const { stdout } = await run(process.execPath, [...nodeArgs, '--import', 'tsx', 'bench/export/child.ts', ...argv], { env: { ...process.env, REDIS_URL }, maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildResult;
};
/** The same under a V8 heap cap: null when the process ran out of heap (or failed otherwise). */
const capped = async (...argv: string[]): Promise<ChildResult | null> => {
  try {
    return await child([`--max-old-space-size=${HEAP_CAP_MB}`], ...argv);
  } catch {
    return null;
  }
};

interface Row {
  n: number;
  docKB: number;
  redisFullKB: number;
  redisArchivedKB: number;
  shardMB: number;
  sinkMs: number;
  idle: number;
  exportRss: number;
  exportMs: number;
  exportCount: number;
  holdRss: number;
  exportCapped: ChildResult | null;
  holdCapped: ChildResult | null;
}

const redis = new Redis(REDIS_URL);
const rows: Row[] = [];
const started = Date.now();
for (const n of COUNTS) {
  const prefix = `envfleet-bench-export-${randomUUID().slice(0, 8)}`;
  const dir = await mkdtemp(join(os.tmpdir(), 'envfleet-bench-export-'));
  try {
    const store = createRedisRunStore(redis, prefix);
    const stream = createRedisTrajectoryStream(redis, prefix);
    const runId = 'bench';
    await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(loadConfig({}, { overrides: { REDIS_URL } })) });
    const before = await usedMemory(redis);
    let bytes = 0;
    for (let i = 0; i < n; i += 1) {
      const t = syntheticTrajectory(runId, i);
      bytes += JSON.stringify(t).length;
      await store.putDoc(runId, 'trajectory', t.id, t);
      await stream.publish(runId, t.id);
      if ((i + 1) % 2000 === 0) progress(`N = ${n}: stored ${i + 1}`);
    }
    const full = await usedMemory(redis);
    const sinkStarted = performance.now();
    const sunk = await runSink({ redis, prefix, store, runId, dir });
    const sinkMs = performance.now() - sinkStarted;
    if (sunk.written !== n) throw new Error(`the sink wrote ${sunk.written} of ${n}`);
    const archived = await usedMemory(redis);
    let shardBytes = 0;
    for (const f of await readdir(join(dir, 'trajectories'))) shardBytes += (await stat(join(dir, 'trajectories', f))).size;
    progress(`N = ${n}: sink done; measuring the export processes`);
    const idle = await child([], 'idle', prefix, runId);
    const exported = await child([], 'export', prefix, runId, join(dir, 'datasets'));
    const hold = await child([], 'hold', prefix, runId);
    const exportCapped = await capped('export', prefix, runId, join(dir, 'datasets-capped'));
    const holdCapped = await capped('hold', prefix, runId);
    if (exported.count !== n || hold.count !== n) throw new Error(`export saw ${exported.count}, hold ${hold.count}, of ${n}`);
    rows.push({
      n,
      docKB: bytes / n / 1024,
      redisFullKB: (full - before) / n / 1024,
      redisArchivedKB: (archived - before) / n / 1024,
      shardMB: shardBytes / 1024 / 1024,
      sinkMs,
      idle: idle.maxRssMB,
      exportRss: exported.maxRssMB,
      exportMs: exported.ms,
      exportCount: exported.count,
      holdRss: hold.maxRssMB,
      exportCapped,
      holdCapped,
    });
  } finally {
    const left = await deletePrefix(redis, prefix);
    if (left) progress(`${left} keys of ${prefix} left in Redis`);
    await rm(dir, { recursive: true, force: true });
  }
}
redis.disconnect();

const f1 = (x: number) => x.toFixed(1);
const out: string[] = [];
out.push(`- machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${f1(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
out.push(`- command: \`node --import tsx bench/export.ts${args.raw.length ? ` ${args.raw.join(' ')}` : ''}\` (${f1((Date.now() - started) / 1000)} s, ${new Date().toISOString()})`, '');
const cappedCell = (r: ChildResult | null, n: number) => (r && r.count === n ? `finishes (peak RSS ${f1(r.maxRssMB)} MB)` : '**runs out of heap**');
out.push(`| N | trajectory (JSON) | Redis per trajectory: full → summary | shards on disk | sink | export peak RSS (idle process) | export time | peak RSS holding all | export, heap ≤ ${HEAP_CAP_MB} MB | holding all, heap ≤ ${HEAP_CAP_MB} MB |`);
out.push('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  out.push(
    `| ${r.n} | ${f1(r.docKB)} KB | ${f1(r.redisFullKB)} KB → ${f1(r.redisArchivedKB)} KB (${f1(r.redisFullKB / r.redisArchivedKB)}× less) | ${f1(r.shardMB)} MB | ${f1(r.sinkMs / 1000)} s | ${f1(r.exportRss)} MB (${f1(r.idle)} MB) | ${f1(r.exportMs / 1000)} s | ${f1(r.holdRss)} MB | ${cappedCell(r.exportCapped, r.n)} | ${cappedCell(r.holdCapped, r.n)} |`,
  );
}
process.stdout.write(`${out.join('\n')}\n`);
