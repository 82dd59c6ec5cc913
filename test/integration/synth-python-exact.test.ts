import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../../config/index.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { EnvironmentLine, environmentRecordFromLine } from '../../src/datasets/environments-file.js';
import { environmentLine } from '../../src/datasets/lines.js';
import { createModelGateway } from '../../src/llm/gateway.js';
import { parseModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { StageDeps } from '../../src/stage-deps.js';
import { makeTestConfig, probeEnvironment } from '../../src/synthesis/check.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../helpers/memory-ports.js';
import { REDIS_URL, dropPrefix, requireRedis } from '../helpers/integration.js';

/** A Python class whose method says which types it was given and holds: what the seed's json.loads would give it. */
const SOURCE = [
  'from typing import Optional',
  '',
  'class Balance:',
  '    def __init__(self, init_config: Optional[dict] = None):',
  '        self.scale = 0',
  '        self.label = ""',
  '',
  '    def weigh(self, grams) -> dict:',
  '        """Weigh on the scale."""',
  '        return {"success": True, "kinds": [type(grams).__name__, type(self.scale).__name__], "label": self.label}',
].join('\n');

const TOOLS = [{ type: 'function' as const, function: { name: 'weigh', description: 'Weigh on the scale.', parameters: { type: 'object', properties: { grams: { type: 'number' } }, required: ['grams'] } } }];

/** The model answers in prose around a fence, with floats written as floats (which JavaScript reads as ints). */
const SCRIPT = parseModelScript({
  rules: [
    { name: 'config', stage: 'check.config', matchAny: 'kitchen scale', respond: { content: 'L’état de test ⚖️ :\n```json\n{"state": {"scale": 1.0, "label": "balance 天平 ⚖️"}}\n```' } },
    { name: 'tester', stage: 'check.probe.tester', matchAny: 'kitchen scale', respond: { content: '{"thought": "Peser 2,0 g — 称重", "tool": "weigh", "arguments": {"grams": 2.0}, "caseType": "positive"}' } },
    { name: 'checker', stage: 'check.probe.checker', matchAny: 'kitchen scale', respond: { json: { analysis: 'ok', verdict: 'pass', reason: 'no error' } } },
  ],
});

/**
 * check.config and check.probe on a Python environment (real Redis, the scripted model server, the real Pyodide
 * runtime): the test state and the tester's arguments reach the class as the model wrote them, as in the seed.
 */
describe('the dual-agent check of a Python environment reads the model text as Python does (real Redis, scripted server, Pyodide)', function () {
  this.timeout(300_000);
  const prefix = `envfleet-test-pyexact-${randomUUID().slice(0, 8)}`;
  let server: ModelServer;
  let redis: Redis;
  let sandbox: SandboxRunner;

  before(async () => {
    await requireRedis();
    server = await startModelServer({ script: SCRIPT });
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    sandbox = createLanguageRouter({
      js: createLocalSandboxRunner(),
      python: createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) }),
    });
  });
  after(async () => {
    await sandbox?.close();
    await server?.close();
    redis?.disconnect();
    await dropPrefix(prefix);
  });

  /** A run holding the assembled Balance environment, and the stage deps to check it with. */
  const setUp = async (run: string, probeSteps: number) => {
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const store = createRedisRunStore(redis, prefix);
    const deps: StageDeps = { gateway, sandbox, store };
    await store.createRun({ id: run, createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(config, { probeSteps, language: 'python' }) });
    const env: EnvironmentRecord = {
      id: 'env-balance',
      runId: run,
      status: 'building',
      description: { summary: 'A kitchen scale', introduction: 'A kitchen scale ⚖️ that weighs ingredients.' },
      state: { className: 'Balance', entities: [], rules: [], stateSchema: { type: 'object', properties: { scale: { type: 'number' }, label: { type: 'string' } } }, exampleState: { scale: 1, label: '' } },
      className: 'Balance',
      operations: [{ name: 'weigh', description: 'Weigh on the scale.', parameters: { grams: { type: 'number' } }, kind: 'query' }],
      source: SOURCE,
      language: 'python',
      tools: TOOLS,
      lineage: { runId: run, sourceTaskId: null, models: {}, prompts: {}, createdAt: new Date().toISOString() },
    } as unknown as EnvironmentRecord;
    await store.putDoc(run, 'env', env.id, env);
    return { deps, store, env };
  };

  it('keeps 1.0 of the test state (testStateJson) and hands the tester’s 2.0 to the method as a float', async () => {
    const run = 'exact';
    const { deps, store, env } = await setUp(run, 1);
    await makeTestConfig(deps, run, env.id);
    const configured = (await store.getDoc(run, 'env', env.id))!;
    expect(configured.status).to.equal('probing');
    expect(configured.testStateJson).to.equal('{"scale":1.0,"label":"balance 天平 ⚖️"}');
    // environments.jsonl carries it, and reading the file back keeps it; a text that is not an object's is refused by name.
    const line = JSON.parse(JSON.stringify(environmentLine(configured))) as Record<string, unknown>;
    expect(line['testStateJson']).to.equal('{"scale":1.0,"label":"balance 天平 ⚖️"}');
    expect(environmentRecordFromLine(EnvironmentLine.parse(line), 'again').testStateJson).to.equal('{"scale":1.0,"label":"balance 天平 ⚖️"}');
    const bad = EnvironmentLine.safeParse({ ...line, testStateJson: '[1.0]' });
    expect(bad.success).to.equal(false);
    expect(bad.error?.issues[0]).to.deep.include({ path: ['testStateJson'], message: 'must be the JSON text of an object (testState as Python reads it)' });

    await probeEnvironment(deps, run, env.id, 1);
    const [step] = await store.steps(run, env.id, 1);
    expect(step!.runtimeError).to.equal(null);
    expect(step!.result).to.deep.equal({ success: true, kinds: ['float', 'float'], label: 'balance 天平 ⚖️' });
  });

  it('resumes a probe round stopped after its first step from the state as the session wrote it (1.0 still a float)', async () => {
    const run = 'resumed';
    const { deps, store, env } = await setUp(run, 2);
    await makeTestConfig(deps, run, env.id);
    // The job stops once its first step is recorded (as a worker that dies there, or a paused run).
    const stop = new AbortController();
    const stopping: StageDeps = {
      ...deps,
      signal: stop.signal,
      store: new Proxy(store, {
        get: (target, key, receiver) => key !== 'appendStep' ? Reflect.get(target, key, receiver) as unknown : async (...args: Parameters<typeof store.appendStep>) => {
          const added = await target.appendStep(...args);
          stop.abort();
          return added;
        },
      }),
    };
    const stopped = await probeEnvironment(stopping, run, env.id, 1).then(() => null, (err: unknown) => err);
    expect(stopped).to.have.property('name', 'AbortError');
    expect(await store.steps(run, env.id, 1)).to.have.length(1);
    expect(await store.probeStateJson(run, env.id, 1)).to.equal('{"label":"balance 天平 ⚖️","scale":1.0}');

    await probeEnvironment(deps, run, env.id, 1);
    const steps = await store.steps(run, env.id, 1);
    expect(steps.map(s => s.result)).to.deep.equal([
      { success: true, kinds: ['float', 'float'], label: 'balance 天平 ⚖️' },
      { success: true, kinds: ['float', 'float'], label: 'balance 天平 ⚖️' },
    ]);
  });
});
