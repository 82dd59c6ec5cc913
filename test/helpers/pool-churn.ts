/**
 * A child process for test/integration/sandbox-pool.test.ts: makes `count` sandbox pools of the thread file `argv[2]`
 * and terminates each one's threads as they finish loading that file, as a worker that shuts down while its pool starts
 * (or replaces a thread) does. The thread file writes the file named by CHURN_MARK when its evaluation begins; the
 * pool is terminated at a random moment 0-`spreadMs` ms after the mark is there. Exits 0 when every pool is gone;
 * a thread terminated inside require(esm) aborts the whole process instead (exit code 134, SIGABRT).
 *
 *   CHURN_MARK=FILE node --import tsx test/helpers/pool-churn.ts THREAD_FILE_URL [count] [spreadMs]
 */
import { existsSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createSandboxPool } from '../../workers/sandbox-pool.js';

const [file, countText = '100', spreadText = '6'] = process.argv.slice(2);
const mark = process.env['CHURN_MARK']!;
const count = Number(countText);
const spreadMs = Number(spreadText);
for (let i = 0; i < count; i += 1) {
  rmSync(mark, { force: true });
  const pool = createSandboxPool({ pool: { threads: 2, tasksPerThread: 1 }, sandbox: DEFAULT_SANDBOX_LIMITS }, pino({ level: 'silent' }), new URL(file!));
  for (let waited = 0; !existsSync(mark) && waited < 60_000; waited += 1) await sleep(1);
  await sleep(Math.random() * spreadMs);
  await pool.piscina.destroy();
}
process.stdout.write(`${count} pools made and terminated\n`);
