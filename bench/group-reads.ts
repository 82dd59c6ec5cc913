/**
 * What a group job costs the worker (issue 14, the trajectory path): `computeGroup` over a group of K samples
 * whose trajectories are not archived yet (the sink has not written them: in a run of many small groups the
 * group job follows its last sample by moments), with the outcomes the workers keep beside the trajectories,
 * and without them (the hash deleted, as for trajectories an older worker stored: every trajectory read whole
 * and parsed). Each trajectory is hotel-sized (the reference hotel state as its final state, tool messages
 * with accented, CJK and emoji text; ≈ 90 KB), stored through the run store as a worker stores it.
 *
 *   node --import tsx bench/group-reads.ts [--samples 16] [--rounds 200]
 *
 * Prints the worker process's CPU and the wall time per sample read, for each way, alternating rounds.
 * Uses REDIS_URL (default redis://127.0.0.1:6379) and deletes its keys afterwards.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { Redis } from 'ioredis';
import { computeGroup } from '../src/rollouts/stages.js';
import type { Trajectory } from '../src/rollouts/types.js';
import { groupIdOf, trajectoryIdOf } from '../src/runs/ids.js';
import { runKeys } from '../src/runs/keys.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['samples', 'rounds'] });
const K = args.int('samples', 16);
const ROUNDS = args.int('rounds', 200);
const url = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const prefix = `envfleet-bench-group-reads-${randomUUID().slice(0, 8)}`;
const redis = new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
const store = createRedisRunStore(redis, prefix);
const runId = 'bench';
const scenarioId = 's1';
const mode = 'non-conversational' as const;
const finalState = JSON.parse(readFileSync(new URL('../fixtures/reference/hotel-state.json', import.meta.url), 'utf8')) as unknown;

function trajectory(sample: number): Trajectory {
  const tool = (i: number) => ({ role: 'tool' as const, tool_call_id: `c${i}`, content: JSON.stringify({ guest: `G000${i}`, name: 'Zoë 客房 🏨', notes: 'x'.repeat(2_500) }) });
  return {
    id: trajectoryIdOf(runId, scenarioId, mode, sample),
    runId,
    scenarioId,
    environmentId: 'hotel',
    mode,
    sample,
    model: 'scripted',
    userModel: null,
    sampling: { temperature: 1, maxTokens: 512 },
    tools: [],
    messages: [{ role: 'system', content: 'You are a hotel agent.' }, { role: 'user', content: 'Look up guest G0001.' }, ...[1, 2, 3, 4].map(tool)],
    userMessages: null,
    steps: [],
    checks: [],
    reward: sample % 4 === 0 ? 1 : 0.75,
    solved: sample % 4 === 0,
    checksError: null,
    termination: { reason: 'agent-finished', detail: null },
    turns: 5,
    usage: { promptTokens: 1000, completionTokens: 100, modelCalls: 5 },
    timings: { startedAt: new Date(0).toISOString(), wallMs: 10_000, envUs: 1_000 },
    finalState,
    lineage: { runId, scenarioId },
  } as unknown as Trajectory;
}

const outcomesKey = runKeys(prefix, runId).outcomes(groupIdOf(scenarioId, mode));
let docBytes = 0;
for (let sample = 0; sample < K; sample++) {
  const t = trajectory(sample);
  const text = Buffer.from(JSON.stringify(t), 'utf8');
  docBytes = text.byteLength;
  const member = { id: t.id, sample, reward: t.reward, solved: t.solved, termination: { reason: t.termination.reason, detail: null } };
  await store.addDocText(runId, 'trajectory', t.id, text, [], { group: groupIdOf(scenarioId, mode), json: JSON.stringify(member) });
}
const kept = await redis.hgetall(outcomesKey);

/** One group job's reads; returns [CPU µs, wall µs] per sample. */
async function timed(withOutcomes: boolean): Promise<[number, number]> {
  if (withOutcomes) await redis.hset(outcomesKey, kept);
  else await redis.del(outcomesKey);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const g = await computeGroup(store, runId, scenarioId, mode, K);
  const wall = (performance.now() - t0) * 1000;
  const cpu = process.cpuUsage(cpu0);
  if (g.samples !== K || g.terminations['missing']) throw new Error('the group is not whole');
  return [(cpu.user + cpu.system) / K, wall / K];
}

for (let i = 0; i < 10; i++) {
  await timed(true);
  await timed(false);
}
const sums = { outcomes: [0, 0], whole: [0, 0] };
for (let r = 0; r < ROUNDS; r++) {
  for (const way of r % 2 === 0 ? (['outcomes', 'whole'] as const) : (['whole', 'outcomes'] as const)) {
    const [cpu, wall] = await timed(way === 'outcomes');
    sums[way][0]! += cpu;
    sums[way][1]! += wall;
  }
}
const keys = await redis.keys(`${prefix}:*`);
if (keys.length) await redis.del(...keys);
redis.disconnect();
const row = (name: string, [cpu, wall]: number[]) => `| ${name} | ${(cpu! / ROUNDS).toFixed(0)} | ${(wall! / ROUNDS).toFixed(0)} |`;
process.stdout.write(
  `group-reads — ${new Date().toISOString()} — ${os.cpus()[0]?.model ?? 'cpu'} ×${os.availableParallelism()}, Node ${process.version}; load average ${os.loadavg().map(x => x.toFixed(2)).join(' / ')}\n` +
    `command: node --import tsx bench/group-reads.ts ${args.raw.join(' ')} (${K} samples a group, ${ROUNDS} rounds each way, alternating; trajectories of ${docBytes} bytes)\n\n` +
    `| group job reads | worker CPU µs per sample | wall µs per sample |\n| --- | --- | --- |\n${row('the outcomes kept beside the trajectories', sums.outcomes)}\n${row('every trajectory whole (no outcome kept)', sums.whole)}\n`,
);
