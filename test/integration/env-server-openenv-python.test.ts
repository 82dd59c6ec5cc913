import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { useServedDemoRun } from '../helpers/env-server-clients.js';
import { silentLogger, until, type Fleet } from '../helpers/integration.js';

/**
 * OpenEnv's own Python clients (GenericEnvClient, MCPToolClient, what `openenv validate --url` runs), unmodified,
 * against `envfleet serve`, through scripts/openenv-client-check.py. OpenEnv is not in this repo: the test runs
 * when ENVFLEET_OPENENV_SRC names a checkout and an interpreter imports its clients (ENVFLEET_OPENENV_PYTHON, else
 * python3, else /usr/bin/python3; ENVFLEET_OPENENV_EXTRA_PATH, colon-separated, is appended to its sys.path, by
 * default /usr/lib/python3/dist-packages when it exists, for a system websockets); otherwise it is skipped with the
 * reason.
 */

const SCRIPT = fileURLToPath(new URL('../../scripts/openenv-client-check.py', import.meta.url));

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a child without blocking the event loop (the server it talks to is in this process). */
function run(command: string, args: readonly string[], timeoutMs = 120_000): Promise<Ran> {
  return new Promise(resolve => {
    let child;
    try {
      child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: null, stdout: '', stderr: (err as Error).message });
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', err => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + err.message });
    });
    child.on('close', code => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const openenvSrc = process.env['ENVFLEET_OPENENV_SRC'];
const extraPaths = (process.env['ENVFLEET_OPENENV_EXTRA_PATH'] ?? (existsSync('/usr/lib/python3/dist-packages') ? '/usr/lib/python3/dist-packages' : '')).split(':').filter(p => p !== '');
const baseArgs = () => [SCRIPT, '--openenv-src', openenvSrc!, ...extraPaths.flatMap(p => ['--extra-path', p])];

/** The first interpreter that imports OpenEnv's clients, or why none does. */
async function findInterpreter(): Promise<{ python: string } | { reason: string }> {
  if (!openenvSrc) return { reason: 'ENVFLEET_OPENENV_SRC is not set (an OpenEnv checkout, e.g. meta-pytorch/OpenEnv; it is never part of this repo)' };
  if (!existsSync(join(openenvSrc, 'src', 'openenv', 'core', 'env_client.py')) && !existsSync(join(openenvSrc, 'openenv', 'core', 'env_client.py'))) {
    return { reason: `ENVFLEET_OPENENV_SRC=${openenvSrc} is not an OpenEnv checkout (no src/openenv/core/env_client.py)` };
  }
  const candidates = process.env['ENVFLEET_OPENENV_PYTHON'] ? [process.env['ENVFLEET_OPENENV_PYTHON']] : ['python3', '/usr/bin/python3'];
  const reasons: string[] = [];
  for (const python of candidates) {
    const probe = await run(python, [...baseArgs(), '--probe'], 30_000);
    if (probe.code === 0) return { python };
    reasons.push(`${python}: ${(probe.stdout.trim() || probe.stderr.trim()).split('\n').pop() ?? `exit ${probe.code}`}`);
  }
  return { reason: `no interpreter imports OpenEnv's clients (pydantic 2, requests, websockets): ${reasons.join('; ')}` };
}

describe("envfleet serve: OpenEnv's own Python clients (GenericEnvClient, MCPToolClient, openenv validate)", function () {
  this.timeout(300_000);
  let python = '';
  before(async function () {
    const found = await findInterpreter();
    if ('reason' in found) {
      process.stderr.write(`skipping OpenEnv's Python clients: ${found.reason}\n`);
      this.skip();
    } else python = found.python;
  });

  let f: Fleet;
  let serving: Serving;
  let scenarios: ScenarioRecord[];
  useServedDemoRun('py1', 4, run => ({ f, serving, scenarios } = run));

  it('the clients drive a scenario to the reward of its checks, the mcp message works beside step, and openenv validate passes', async () => {
    const iris = scenarios.find(s => s.task?.includes('Iris Vance'))!;
    const calls = ['get_member={"member_id": "M7"}', 'return_book={"loan_id": "L21"}', 'pay_fine={"member_id": "M7", "amount": 2.5}', 'borrow_book={"member_id": "M7", "book_id": "B5"}'];
    const out = await run(python, [...baseArgs(), '--url', serving.url, '--scenario', iris.id, ...calls.flatMap(c => ['--call', c]), '--expect-reward', '1']);
    const report = `exit ${out.code}\n${out.stdout}\n${out.stderr}`;
    expect(out.code, report).to.equal(0);
    expect(out.stdout, report).to.match(/^PASSED: 0 mismatch/m);
    for (const line of ['reset: an observation dict', 'state: step_count 4', 'step __envfleet_finish__: done True', 'list_tools: Tool(name, description, input_schema)', '{"type": "mcp"} tools/call get_member', 'call_tool of an unknown tool raises', 'validate: passed']) {
      expect(out.stdout, line).to.include(`ok       ${line}`);
    }
    expect(out.stdout).to.include('"standard_profile": "openenv-http/1.x"');
    // Both clients' episodes ended with the finish action; nothing is left open.
    await new Promise(r => setTimeout(r, 200));
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('with a token, the clients reach the server through the token in the path (they send no headers)', async () => {
    const token = 'py-token/42'; // printable ASCII only (810d0ab); the slash must be URL-encoded in the path
    const secured = await startServing(f.config, silentLogger(), { run: 'py1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000, token });
    try {
      const gx = scenarios.find(s => s.task?.includes('GX-310'))!;
      const refused = await run(python, [...baseArgs(), '--url', secured.url, '--scenario', gx.id, '--skip', 'mcp', '--skip', 'validate']);
      expect(refused.code, refused.stdout).to.equal(1);
      const out = await run(python, [...baseArgs(), '--url', `${secured.url}/t/${encodeURIComponent(token)}`, '--scenario', gx.id, '--call', 'exit_vehicle={"ticket_id": "T5"}']);
      expect(out.code, `${out.stdout}\n${out.stderr}`).to.equal(0);
      expect(out.stdout).to.include('ok       validate: passed');
    } finally {
      await secured.close();
    }
  });

  it("when the server stops during their episodes, the clients raise (a step answered by the stop's SESSION_INTERRUPTED message, and the next step of an idle client): no StepResult with a reward", async () => {
    const stopping = await startServing(f.config, silentLogger(), { run: 'py1', port: 0, host: '127.0.0.1', maxSessions: 4, idleTimeout: 600_000 });
    let closed = false;
    try {
      const iris = scenarios.find(s => s.task?.includes('Iris Vance'))!;
      const child = spawn(python, [...baseArgs(), '--url', stopping.url, '--scenario', iris.id, '--call', 'return_book={"loan_id": "L21"}', '--stop-check'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
      const code = new Promise<number | null>(resolve => child.on('close', c => resolve(c)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          stdout += b.toString('utf8');
          if (stdout.includes('WAITING FOR THE STOP')) resolve();
        });
        void code.then(c => reject(new Error(`the script exited ${c} before waiting: ${stdout}\n${stderr}`)));
      });
      // What SIGTERM runs (cli/serve.ts): the sessions end, each /ws connection is told, the listener closes.
      await stopping.close();
      closed = true;
      child.stdin.end('stopped\n');
      const exit = await code;
      const report = `exit ${exit}\n${stdout}\n${stderr}`;
      expect(exit, report).to.equal(0);
      expect(stdout, report).to.include('ok       in flight at the stop: the step raises RuntimeError (SESSION_ERROR)');
      expect(stdout, report).to.match(/RuntimeError: Server error: session \S+ was interrupted: the server stopped during the episode/);
      expect(stdout, report).to.include('ok       idle at the stop: its next step raises');
    } finally {
      if (!closed) await stopping.close();
    }
  });

  it("a step over the 16 MiB message cap makes the client raise, saying the limit (the server's error message, read as the reply), and the next step raise (the connection is closed)", async () => {
    const pl = scenarios.find(s => s.task?.includes('PL-900'))!;
    const out = await run(python, [...baseArgs(), '--url', serving.url, '--scenario', pl.id, '--too-large-check']);
    const report = `exit ${out.code}\n${out.stdout}\n${out.stderr}`;
    expect(out.code, report).to.equal(0);
    expect(out.stdout, report).to.include('ok       a step over the cap raises, no StepResult');
    expect(out.stdout, report).to.match(/RuntimeError: Server error: the message is larger than the 16 MiB \(16777216 bytes\)[^\n]*\(code: VALIDATION_ERROR\)/);
    expect(out.stdout, report).to.include('ok       the next step raises: the server closed the connection');
    // The close the client met carries the code and the reason (websockets' ConnectionClosedError shows both).
    expect(out.stdout, report).to.match(/ConnectionClosed\w*: received 1009 \(message too big\) over the 16 MiB \(16777216 bytes\) limit of a \/ws message; send smaller messages/);
    // Its episode ended as on a disconnect (scored, kept): nothing is left open.
    await until(() => Promise.resolve(serving.registry.stats().active === 0), 'the episode to end');
  });

  it('a wrong expectation is a mismatch: the script exits 1', async () => {
    const gx = scenarios.find(s => s.task?.includes('GX-310'))!;
    const out = await run(python, [...baseArgs(), '--url', serving.url, '--scenario', gx.id, '--expect-reward', '2', '--skip', 'validate', '--skip', 'mcp']);
    expect(out.code, out.stdout + out.stderr).to.equal(1);
    expect(out.stdout).to.match(/^FAILED: 1 mismatch/m);
  });
});
