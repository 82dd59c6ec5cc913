import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { requireRedis } from '../helpers/integration.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * `npm run chaos -- --quick` (bench/chaos.ts): the demo run twice on a private redis-server with an
 * append-only file, 3 `envfleet worker` processes and the sink — fault-free, then while workers and
 * the sink are SIGKILLed every few seconds, Redis is SIGKILLed and started again, the run is paused
 * for 150 rechecks and the model answers a 429 storm, 5xx and truncated replies — and its own
 * assertions: every item done or left with a reason, no trajectory lost or written twice, the
 * datasets identical to the fault-free run's.
 */
describe('chaos run (--quick)', function () {
  before(requireRedis);

  it('loses nothing, writes nothing twice and ends with the fault-free datasets', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/chaos.ts', '--quick'], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)));
    expect(code, `${stdout}\n--- stderr (end) ---\n${stderr}`).to.equal(0);
    expect(stdout).to.match(/chaos: all \d+ assertions hold/);
    expect(stdout).to.match(/\| chaos: 0 trajectories lost \| PASS \|/);
    expect(stdout).to.match(/\| chaos: datasets identical to the fault-free run \(sorted lines\) \| PASS \|/);
  });
});
