/**
 * One measured step of bench/export.ts, in a fresh process so its peak RSS is its own:
 *   child.ts export PREFIX RUN DIR   exportRun into DIR (trajectories streamed one at a time)
 *   child.ts hold PREFIX RUN         every full trajectory read into one array (what an export that
 *                                    loads the run first holds)
 *   child.ts idle PREFIX RUN         connects and reads the id list only (the floor)
 * Prints one JSON line: { maxRssMB, ms, count }.
 */
import { Redis } from 'ioredis';
import { exportRun } from '../../src/datasets/export.js';
import { forEachFullTrajectory } from '../../src/datasets/shards.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import { createRedisRunStore } from '../../src/runs/store.js';

const [mode, prefix, runId, dir] = process.argv.slice(2);
if (!mode || !prefix || !runId) throw new Error('usage: child.ts export|hold|idle PREFIX RUN [DIR]');
const redis = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
const store = createRedisRunStore(redis, prefix);
const started = performance.now();
let count: number;
const ids = (await store.listDocIds(runId, 'trajectory')).sort();
if (mode === 'export') {
  const result = await exportRun(store, runId, dir!, { formats: ['openai', 'sharegpt', 'llamafactory'] });
  count = result.datasets['sft-openai.jsonl'] ?? 0;
} else if (mode === 'hold') {
  const all: Trajectory[] = [];
  await forEachFullTrajectory(store, runId, ids, {}, t => {
    all.push(t);
  });
  count = all.length;
} else {
  count = ids.length;
}
const ms = performance.now() - started;
redis.disconnect();
process.stdout.write(`${JSON.stringify({ maxRssMB: process.resourceUsage().maxRSS / 1024, ms, count })}\n`);
