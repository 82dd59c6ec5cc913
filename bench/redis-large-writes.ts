/**
 * What a large value costs the client on an auto-pipelined ioredis connection (issue 14): rounds of
 * B writes of a trajectory-sized document (the reference hotel state and padding, ≈ 97 KB) together with
 * 2 × B small commands, awaited round by round, on a connection with auto-pipelining off, on, and on
 * with the large write sent on its own (`autoPipeliningIgnoredCommands`), and the last two with the
 * document encoded to a Buffer by the caller first (as the run store passes a large document). Prints the client process's CPU and the wall time per document for each.
 *
 *   node --import tsx bench/redis-large-writes.ts [--writes 2000] [--batch 20] [--ascii]
 *
 * The document carries a few accented, CJK and emoji characters (V8 then holds it as a two-byte string),
 * as a trajectory with a model's non-ASCII text does; `--ascii` leaves them out (a one-byte string).
 *
 * Uses REDIS_URL (default redis://127.0.0.1:6379) and deletes its keys afterwards.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['writes', 'batch'], booleans: ['ascii'] });
const N = args.int('writes', 2000);
const B = Math.max(1, args.int('batch', 20));
const url = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const state = JSON.parse(readFileSync(new URL('../fixtures/reference/hotel-state.json', import.meta.url), 'utf8')) as unknown;
const doc = JSON.stringify({ finalState: state, notes: args.flag('ascii') ? 'Zoe rooms' : 'Zoë 客房 🏨', pad: 'x'.repeat(30_000) });
const prefix = `envfleet-bench-large-writes-${randomUUID().slice(0, 8)}`;

async function measure(name: string, options: { enableAutoPipelining: boolean; autoPipeliningIgnoredCommands?: string[] }, asBuffer = false): Promise<string> {
  const redis = new Redis(url, { ...options, maxRetriesPerRequest: 1 });
  const round = async (from: number) => {
    const pending: Promise<unknown>[] = [];
    for (let i = from; i < from + B; i += 1) pending.push(redis.set(`${prefix}:doc:${i % B}`, asBuffer ? Buffer.from(doc, 'utf8') : doc), redis.hincrby(`${prefix}:h`, 'n', 1), redis.get(`${prefix}:small`));
    await Promise.all(pending);
  };
  for (let i = 0; i < Math.min(N, 200); i += B) await round(i); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i += B) await round(i);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  redis.disconnect();
  return `| ${name} | ${((cpu.user + cpu.system) / 1000 / N).toFixed(3)} | ${(wall / N).toFixed(3)} |`;
}

const rows = [
  await measure('auto-pipelining off', { enableAutoPipelining: false }),
  await measure('auto-pipelining on', { enableAutoPipelining: true }),
  await measure('on, the large write on its own', { enableAutoPipelining: true, autoPipeliningIgnoredCommands: ['set'] }),
  await measure('on, the document encoded to a Buffer first', { enableAutoPipelining: true }, true),
  await measure('on, a Buffer on its own', { enableAutoPipelining: true, autoPipeliningIgnoredCommands: ['set'] }, true),
];
const cleanup = new Redis(url);
const keys = await cleanup.keys(`${prefix}:*`);
if (keys.length) await cleanup.del(...keys);
cleanup.disconnect();
process.stdout.write(`${N} writes of a ${Buffer.byteLength(doc)}-byte document (${args.flag('ascii') ? 'ASCII' : 'with non-ASCII text'}), ${B} per round with ${2 * B} small commands\n\n| connection | client CPU ms per document | wall ms per document |\n| --- | --- | --- |\n${rows.join('\n')}\n`);
