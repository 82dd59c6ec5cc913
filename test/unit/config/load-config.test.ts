import { availableParallelism } from 'node:os';
import { expect } from 'chai';
import {
  ConfigError,
  ENV_VARS,
  loadConfig,
  redactConfig,
  redactUrl,
  MODEL_STAGES,
  MODEL_STAGE_NAMES,
  type AppConfig,
  type EnvVarName,
} from '../../../config/index.js';
import { DEFAULT_PRICES } from '../../../config/prices.js';

type Env = Record<string, string | undefined>;

/** What a profile without request-shape settings sends (what envfleet always sent). */
const DEFAULT_SHAPE = { preset: null, tokenParam: 'max_tokens', sampling: true, reasoningEffort: null, extraBody: {}, structuredOutput: 'prompt', toolCallFormat: 'native', textToolChoice: 'none', logprobs: false, returnTokenIds: false, seed: false, sendReasoning: false, reasoningField: 'reasoning_content' };

/** loadConfig with an in-memory models file system; returns the paths that were read too. */
function load(env: Env, files: Record<string, string> = {}): AppConfig {
  return loadConfig(env, {
    readFile: path => {
      const content = files[path];
      if (content === undefined) throw new Error(`ENOENT: no such file, open '${path}'`);
      return content;
    },
  });
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.code).to.equal('CONFIG_INVALID');
    expect(e.name).to.equal('ConfigError');
    return e;
  }
  expect.fail('expected a ConfigError, but loadConfig succeeded');
}

/** Every object reachable from `value` that is not frozen, by path. */
function unfrozenPaths(value: unknown, path = 'config'): string[] {
  if (value === null || typeof value !== 'object') return [];
  const own = Object.isFrozen(value) ? [] : [path];
  return own.concat(...Object.entries(value).map(([k, v]) => unfrozenPaths(v, `${path}.${k}`)));
}


const withModels = (file: string, env: Env = {}): Env => ({ ENVFLEET_MODELS_FILE: file, ...env });

describe('config: loadConfig defaults', () => {
  it('gives every default for an empty environment', () => {
    const config = loadConfig({});
    expect(config.redis).to.deep.equal({ url: 'redis://127.0.0.1:6379', clusterNodes: [], prefix: 'envfleet', requirePersistence: false, startupWaitMs: 60_000 });
    expect(config.endpoints).to.deep.equal({
      default: {
        name: 'default',
        baseURL: 'http://127.0.0.1:8787/v1',
        apiKey: 'envfleet-local',
        apiKeyFrom: 'OPENAI_API_KEY',
        timeoutMs: 120_000,
        timeoutFrom: 'ENVFLEET_MODEL_TIMEOUT_MS',
        maxConcurrency: 32,
        requestsPerMinute: 0,
      },
    });
    expect(config.gateway).to.deep.equal({
      repairAttempts: 2,
      cacheEnabled: true,
      cacheTtlSeconds: 30 * 86_400,
      rateLimitFallbackMs: 5_000,
      modelRetries: 2,
    });
    expect(config.jobs).to.deep.equal({ attempts: 5, backoffMs: 2_000, sandboxFullWaits: 120 });
    expect(config.worker).to.deep.equal({
      concurrency: 8,
      queues: 'all',
      lockDurationMs: 60_000,
      stalledIntervalMs: 15_000,
      shutdownTimeoutMs: 30_000,
      rolloutConcurrency: 64,
      rolloutStartPacing: 'auto',
      pausedRecheckMs: 3_600_000,
      rateLimitPauseMs: 3_600_000,
    });
    expect(config.pool.threads).to.equal(Math.max(1, availableParallelism()));
    expect(config.budgets).to.deep.equal({ usd: 0, tokens: 0 });
    expect(config.log.level).to.equal('info');
    expect(config.modelsFile).to.equal(null);
    expect(config.explicit).to.deep.equal([]);
    expect(config.prices).to.deep.equal(DEFAULT_PRICES);
  });

  it('gives every stage a profile from its built-in defaults on the default endpoint', () => {
    const config = loadConfig({});
    expect(Object.keys(config.profiles)).to.have.members(MODEL_STAGE_NAMES);
    for (const stage of MODEL_STAGE_NAMES) {
      const base = MODEL_STAGES[stage];
      expect(config.profiles[stage], stage).to.deep.equal({
        stage,
        kind: base.kind,
        model: base.kind === 'embedding' ? 'text-embedding-3-small' : 'gpt-4o-mini',
        temperature: base.temperature,
        maxTokens: base.maxTokens,
        request: DEFAULT_SHAPE,
        cache: base.cache,
        endpoints: [{ name: 'default', weight: 1 }],
      });
    }
  });

  it('returns a frozen object whose nested objects are frozen too', () => {
    const config = loadConfig({});
    expect(unfrozenPaths(config)).to.deep.equal([]);
    expect(() => {
      (config.worker as { concurrency: number }).concurrency = 99;
    }).to.throw(TypeError);
    expect(() => {
      (config.endpoints['default'] as { apiKey: string }).apiKey = 'changed';
    }).to.throw(TypeError);
    expect(() => {
      (config.profiles['mine.judge'] as { model: string }).model = 'changed';
    }).to.throw(TypeError);
    expect(() => {
      (config.explicit as string[]).push('X');
    }).to.throw(TypeError);
  });

  it('freezes every profile\'s endpoints list', () => {
    const file = 'profiles:\n  rollout.policy:\n    endpoint: [{ name: default, weight: 2 }]\n';
    for (const config of [loadConfig({}), load(withModels('m.yaml'), { 'm.yaml': file })]) {
      expect(unfrozenPaths(config)).to.deep.equal([]);
      expect(() => {
        (config.profiles['mine.judge'].endpoints as { name: string; weight: number }[]).push({ name: 'x', weight: 1 });
      }).to.throw(TypeError);
    }
  });

  it('is frozen with a models file too', () => {
    const file = 'profiles:\n  rollout.policy:\n    endpoint: [{ name: default, weight: 2 }]\nprices:\n  m: { inputPerMTok: 1, outputPerMTok: 2 }\n';
    const config = load(withModels('m.yaml'), { 'm.yaml': file });
    expect(unfrozenPaths(config)).to.deep.equal([]);
    expect(Object.isFrozen(config.prices['m'])).to.equal(true);
  });

  it('applies environment values, coercing numbers and booleans', () => {
    const config = loadConfig({
      REDIS_URL: 'rediss://user:pw@redis.example:6380/2',
      ENVFLEET_REDIS_PREFIX: '{fleet}',
      ENVFLEET_REQUIRE_PERSISTENCE: 'yes',
      OPENAI_BASE_URL: 'https://api.example.com/v1/',
      OPENAI_API_KEY: 'sk-test',
      ENVFLEET_MODEL: 'gpt-4.1',
      ENVFLEET_EMBEDDING_MODEL: 'text-embedding-3-large',
      ENVFLEET_MODEL_TIMEOUT_MS: '9000',
      ENVFLEET_CACHE: 'false',
      ENVFLEET_CACHE_TTL_DAYS: '2',
      ENVFLEET_POOL_THREADS: '3',
      ENVFLEET_BUDGET_USD: '12.5',
      LOG_LEVEL: 'debug',
    });
    expect(config.redis).to.deep.equal({ url: 'rediss://user:pw@redis.example:6380/2', clusterNodes: [], prefix: '{fleet}', requirePersistence: true, startupWaitMs: 60_000 });
    expect(config.endpoints['default']).to.include({ baseURL: 'https://api.example.com/v1', apiKey: 'sk-test', timeoutMs: 9000 });
    expect(config.profiles['mine.judge'].model).to.equal('gpt-4.1');
    expect(config.profiles['mine.dedup'].model).to.equal('text-embedding-3-large');
    expect(config.gateway).to.include({ cacheEnabled: false, cacheTtlSeconds: 2 * 86_400 });
    expect(config.pool.threads).to.equal(3);
    expect(config.budgets.usd).to.equal(12.5);
    expect(config.log.level).to.equal('debug');
  });

  it('reads ENVFLEET_ROLLOUT_START_PACING as auto, on or off (true and false too) and names it when it is none of them', () => {
    expect(loadConfig({ ENVFLEET_ROLLOUT_START_PACING: 'false' }).worker.rolloutStartPacing).to.equal('off');
    expect(loadConfig({ ENVFLEET_ROLLOUT_START_PACING: 'true' }).worker.rolloutStartPacing).to.equal('on');
    expect(loadConfig({ ENVFLEET_ROLLOUT_START_PACING: 'on' }).worker.rolloutStartPacing).to.equal('on');
    expect(() => loadConfig({ ENVFLEET_ROLLOUT_START_PACING: 'peut-être' })).to.throw(/ENVFLEET_ROLLOUT_START_PACING/);
  });

  it('treats empty and blank values as unset', () => {
    const blank = Object.fromEntries(Object.keys(ENV_VARS).map((name, i) => [name, i % 2 === 0 ? '' : '   ']));
    expect(loadConfig(blank)).to.deep.equal(loadConfig({}));
    expect(loadConfig({ OPENAI_API_KEY: '' }).endpoints['default']!.apiKey).to.equal('envfleet-local');
  });

  it('reads only the environment it is given', () => {
    const saved = process.env['ENVFLEET_MODEL'];
    process.env['ENVFLEET_MODEL'] = 'from-process-env';
    try {
      expect(loadConfig({}).profiles['mine.judge'].model).to.equal('gpt-4o-mini');
    } finally {
      if (saved === undefined) delete process.env['ENVFLEET_MODEL'];
      else process.env['ENVFLEET_MODEL'] = saved;
    }
  });
  it('lists the variables that were set, and lets overrides win over the environment', () => {
    const config = loadConfig(
      { LOG_LEVEL: 'warn', ENVFLEET_MODEL: 'env-model', ENVFLEET_CACHE: ' ' },
      { overrides: { ENVFLEET_MODEL: 'override-model', REDIS_URL: 'redis://10.0.0.1:6390' } },
    );
    expect(config.profiles['mine.judge'].model).to.equal('override-model');
    expect(config.redis.url).to.equal('redis://10.0.0.1:6390');
    expect(config.log.level).to.equal('warn');
    expect(config.explicit).to.have.members(['LOG_LEVEL', 'ENVFLEET_MODEL', 'REDIS_URL']);
  });
});

describe('config: invalid environment values', () => {
  const cases: [EnvVarName, string][] = [
    ['ENVFLEET_POOL_THREADS', 'abc'],
    ['ENVFLEET_POOL_THREADS', '0'],
    ['REDIS_URL', 'http://x'],
    ['REDIS_URL', 'not a url'],
    ['REDIS_URL', 'redis://127.0.0.1:6379/abc'],
    ['REDIS_URL', 'redis://127.0.0.1:6379/-1'],
    ['REDIS_URL', 'redis://127.0.0.1:6379/2/x'],
    ['OPENAI_BASE_URL', 'ftp://example.com/v1'],
    ['LOG_LEVEL', 'loud'],
    ['ENVFLEET_CACHE', 'maybe'],
    ['ENVFLEET_REPAIR_ATTEMPTS', '11'],
    ['ENVFLEET_BUDGET_USD', '-1'],
    ['ENVFLEET_WORKER_CONCURRENCY', '1.5'],
    ['ENVFLEET_LOCK_DURATION_MS', '10'],
    // Past what a Node timer holds: every model request timed out at once, the stalled check ran without a pause.
    ['ENVFLEET_MODEL_TIMEOUT_MS', '3000000000'],
    ['ENVFLEET_STALLED_INTERVAL_MS', '99999999999'],
    ['ENVFLEET_LOCK_DURATION_MS', '99999999999'],
    // Redis refused every cache write (ERR invalid expire time): the cache was off without a word.
    ['ENVFLEET_CACHE_TTL_DAYS', '999999999999'],
    ['ENVFLEET_REDIS_PREFIX', 'has space'],
    ['ENVFLEET_REDIS_CLUSTER_NODES', 'redis-a'],
    ['ENVFLEET_REDIS_CLUSTER_NODES', '10.0.0.5:7000,10.0.0.6:99999'],
    ['ENVFLEET_REDIS_CLUSTER_NODES', 'redis://10.0.0.5:7000'],
    ['ENVFLEET_SANDBOX_FULL_WAITS', '-1'],
    ['ENVFLEET_SANDBOX_FULL_WAITS', 'forever'],
    ['ENVFLEET_SERVE_WS_PING_MS', '-1'],
    ['ENVFLEET_SERVE_WS_PING_MS', '20s'],
    ['ENVFLEET_SERVE_WS_PING_MS', '3600001'],
    ['OPENAI_BASE_URL', 'http://vllm:8000/v1/chat/completions'],
    ['OPENAI_BASE_URL', 'https://res.openai.azure.com/openai/v1?api-version=2024-10-21'],
  ];
  for (const [name, value] of cases) {
    it(`${name}=${JSON.stringify(value)} throws a ConfigError naming the variable, with an example`, () => {
      const err = configError(() => loadConfig({ [name]: value }));
      expect(err.message).to.include(name);
      expect(err.message).to.include(JSON.stringify(value));
      expect(err.message).to.include(`Example: ${name}=${ENV_VARS[name].example}`);
      expect(err.message).to.include(ENV_VARS[name].description);
    });
  }

  it('every message shows an example value to copy, also for a variable without a default', () => {
    for (const [name, value] of [['ENVFLEET_POOL_THREADS', 'abc'], ['ENVFLEET_REDIS_CLUSTER_NODES', 'redis-a'], ['ENVFLEET_DASHBOARD_TOKEN', 'short'], ['ENVFLEET_PYTHON_SNAPSHOT_DIR', 'relative/dir']] as const) {
      const err = configError(() => loadConfig({ [name]: value }));
      expect(err.message).not.to.include('<unset>');
      expect(err.message, name).to.match(new RegExp(`Example: ${name}=\\S+`));
    }
    expect(configError(() => loadConfig({ ENVFLEET_POOL_THREADS: 'abc' })).message).to.include('Example: ENVFLEET_POOL_THREADS=4');
  });

  it('a whole number says which: non-negative, at least N, or between two bounds', () => {
    expect(configError(() => loadConfig({ ENVFLEET_LOCK_DURATION_MS: '-3' })).message).to.match(/"-3": expected a (non-negative whole number|whole number (≥|from|of milliseconds from))/);
    expect(configError(() => loadConfig({ ENVFLEET_MODEL_MAX_CONCURRENCY: '-3' })).message).to.include('"-3": expected a non-negative whole number (0, 1, 2, …)');
    expect(configError(() => loadConfig({ ENVFLEET_RATE_LIMIT_PAUSE_MS: '-3' })).message).to.include('"-3": expected a whole number of milliseconds from 0 to 2147483647 (about 24.8 days, the longest wait a timer holds)');
    expect(configError(() => loadConfig({ ENVFLEET_POOL_THREADS: '-3' })).message).to.include('"-3": expected a whole number from 1 to 256');
    expect(configError(() => loadConfig({ ENVFLEET_POOL_THREADS: '0' })).message).to.include('"0": expected a whole number from 1 to 256');
  });

  it('ENVFLEET_SERVE_WS_PING_MS: the /ws ping interval, 20 s by default (what OpenEnv\'s own server uses), 0 for never, milliseconds up to an hour', () => {
    expect(loadConfig({}).serve.wsPingIntervalMs).to.equal(20_000);
    expect(loadConfig({ ENVFLEET_SERVE_WS_PING_MS: '0' }).serve.wsPingIntervalMs).to.equal(0);
    expect(loadConfig({ ENVFLEET_SERVE_WS_PING_MS: '45000' }).serve.wsPingIntervalMs).to.equal(45_000);
    expect(configError(() => loadConfig({ ENVFLEET_SERVE_WS_PING_MS: '20s' })).message).to.include('ENVFLEET_SERVE_WS_PING_MS="20s": expected a whole number from 0 to 3600000');
  });

  it('reports every bad variable at once', () => {
    const err = configError(() => loadConfig({ LOG_LEVEL: 'loud', REDIS_URL: 'http://x', ENVFLEET_POOL_THREADS: 'abc' }));
    for (const name of ['LOG_LEVEL', 'REDIS_URL', 'ENVFLEET_POOL_THREADS']) expect(err.message).to.include(name);
  });

  it('never shows OPENAI_API_KEY in an error message', () => {
    const key = 'sk-test-DO-NOT-PRINT-0123456789';
    const err = configError(() => loadConfig({ OPENAI_API_KEY: key, LOG_LEVEL: 'loud', ENVFLEET_CACHE: 'maybe' }));
    expect(err.message).not.to.include(key);
    expect(err.message).not.to.include('DO-NOT-PRINT');
  });

  it('REDIS_URL: a path that is not a database number says so; a database number (or none) is taken', () => {
    const err = configError(() => loadConfig({ REDIS_URL: 'redis://:hunter2-secret@127.0.0.1:6379/abc' }));
    expect(err.message).to.include('REDIS_URL=').and.to.include('must be a database number').and.to.include('not "abc"').and.to.include('redis://127.0.0.1:6379/1');
    expect(err.message).not.to.include('hunter2-secret');
    for (const url of ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'redis://127.0.0.1:6379/0', 'rediss://u:p@h:6380/15']) expect(loadConfig({ REDIS_URL: url }).redis.url).to.equal(url);
  });

  it('an invalid REDIS_URL does not echo its password', () => {
    const err = configError(() => loadConfig({ REDIS_URL: 'redis://:hunter2-secret@redis.example:99999' }));
    expect(err.message).to.include('REDIS_URL');
    expect(err.message).not.to.include('hunter2-secret');
  });
});

describe('config: ENVFLEET_REDIS_CLUSTER_NODES', () => {
  it('lists the nodes, trimmed, with REDIS_URL kept for the credentials', () => {
    const config = loadConfig({ ENVFLEET_REDIS_CLUSTER_NODES: ' 10.0.0.5:7000, redis-b.internal:7001 ,[::1]:7002', REDIS_URL: 'rediss://user:pw@ignored:6379' });
    expect(config.redis.clusterNodes).to.deep.equal(['10.0.0.5:7000', 'redis-b.internal:7001', '[::1]:7002']);
    expect(config.redis.url).to.equal('rediss://user:pw@ignored:6379');
  });

  it('refuses braces in the prefix, saying why and what to use instead', () => {
    const err = configError(() => loadConfig({ ENVFLEET_REDIS_CLUSTER_NODES: '10.0.0.5:7000', ENVFLEET_REDIS_PREFIX: '{fleet}' }));
    expect(err.message).to.include('ENVFLEET_REDIS_PREFIX={fleet}');
    expect(err.message).to.include('one slot');
    expect(err.message).to.include('Use ENVFLEET_REDIS_PREFIX=fleet');
    // Without a cluster, braces are as they were: allowed.
    expect(loadConfig({ ENVFLEET_REDIS_PREFIX: '{fleet}' }).redis.prefix).to.equal('{fleet}');
  });

  it('refuses a REDIS_URL with a database other than 0', () => {
    const err = configError(() => loadConfig({ ENVFLEET_REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_URL: 'redis://127.0.0.1:6379/3' }));
    expect(err.message).to.include('only database 0');
    expect(loadConfig({ ENVFLEET_REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_URL: 'redis://127.0.0.1:6379/0' }).redis.clusterNodes).to.have.length(1);
  });
});

describe('config: models file', () => {
  const yamlFile = [
    'profiles:',
    '  mine.judge:',
    '    model: judge-model',
    '    temperature: 0.9',
    '    maxTokens: 333',
    '',
  ].join('\n');

  it('a YAML file overrides one stage and leaves the others at their defaults', () => {
    const config = load(withModels('conf/models.yaml'), { 'conf/models.yaml': yamlFile });
    expect(config.modelsFile).to.equal('conf/models.yaml');
    expect(config.profiles['mine.judge']).to.deep.equal({
      stage: 'mine.judge',
      kind: 'chat',
      model: 'judge-model',
      temperature: 0.9,
      request: DEFAULT_SHAPE,
      maxTokens: 333,
      cache: true,
      endpoints: [{ name: 'default', weight: 1 }],
    });
    const defaults = loadConfig({});
    for (const stage of MODEL_STAGE_NAMES.filter(s => s !== 'mine.judge')) {
      expect(config.profiles[stage], stage).to.deep.equal(defaults.profiles[stage]);
    }
  });

  it('a JSON file (.json) does the same', () => {
    const json = JSON.stringify({ profiles: { 'rollout.policy': { model: 'policy-8b', temperature: 0.6 } } });
    const config = load(withModels('models.json'), { 'models.json': json });
    expect(config.profiles['rollout.policy']).to.include({ model: 'policy-8b', temperature: 0.6, maxTokens: MODEL_STAGES['rollout.policy'].maxTokens, cache: 'salted' });
  });

  it('a .json file that is not JSON is rejected as JSON, even if it is valid YAML', () => {
    const err = configError(() => load(withModels('models.json'), { 'models.json': yamlFile }));
    expect(err.message).to.include('ENVFLEET_MODELS_FILE=models.json');
    expect(err.message).to.include('JSON');
  });

  it('an empty file changes nothing', () => {
    const config = load(withModels('empty.yaml'), { 'empty.yaml': '' });
    expect(config.profiles).to.deep.equal(loadConfig({}).profiles);
    expect(config.modelsFile).to.equal('empty.yaml');
  });

  it('resolves each field: stage entry > default entry > ENVFLEET_MODEL / ENVFLEET_EMBEDDING_MODEL > built-in', () => {
    const file = [
      'endpoints:',
      '  big: { baseURL: "http://big:8000/v1" }',
      'profiles:',
      '  default: { model: house-model, maxTokens: 777, endpoint: big }',
      '  skeleton.state: { model: state-model, maxTokens: 555, endpoint: default }',
      '',
    ].join('\n');
    const config = load(withModels('m.yaml', { ENVFLEET_MODEL: 'env-model', ENVFLEET_EMBEDDING_MODEL: 'env-embed' }), { 'm.yaml': file });
    // stage entry wins
    expect(config.profiles['skeleton.state']).to.include({ model: 'state-model', maxTokens: 555 });
    expect(config.profiles['skeleton.state'].endpoints).to.deep.equal([{ name: 'default', weight: 1 }]);
    // then the default entry (chat stages)
    expect(config.profiles['mine.judge']).to.include({ model: 'house-model', maxTokens: 777, temperature: MODEL_STAGES['mine.judge'].temperature });
    expect(config.profiles['mine.judge'].endpoints).to.deep.equal([{ name: 'big', weight: 1 }]);
    // the default entry's model is not used for the embedding stage: ENVFLEET_EMBEDDING_MODEL is
    expect(config.profiles['mine.dedup'].model).to.equal('env-embed');
    // without a default entry, the environment's models apply
    const plain = loadConfig({ ENVFLEET_MODEL: 'env-model', ENVFLEET_EMBEDDING_MODEL: 'env-embed' });
    expect(plain.profiles['mine.judge'].model).to.equal('env-model');
    expect(plain.profiles['mine.dedup'].model).to.equal('env-embed');
  });

  it('rejects an unknown stage key, naming the key', () => {
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': 'profiles:\n  mine.judg:\n    model: x\n' }));
    expect(err.message).to.include('ENVFLEET_MODELS_FILE=m.yaml');
    expect(err.message).to.include('mine.judg');
  });

  it('the unknown-stage error lists the known stages', () => {
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': 'profiles:\n  mine.judg:\n    model: x\n' }));
    for (const stage of ['default', ...MODEL_STAGE_NAMES]) expect(err.message).to.include(stage);
  });

  it('rejects a profile that uses an undefined endpoint, listing the defined ones', () => {
    const file = 'endpoints:\n  vllm: { baseURL: "http://vllm:8000/v1" }\nprofiles:\n  rollout.policy: { endpoint: vlm }\n';
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': file }));
    expect(err.message).to.include('"vlm"');
    expect(err.message).to.include('rollout.policy');
    expect(err.message).to.include('default, vllm');
  });

  it('a base URL copied with an operation\'s path or a query says what to give instead, in the env and in a models file; the key in a query is never shown', () => {
    const op = configError(() => loadConfig({ OPENAI_BASE_URL: 'http://vllm:8000/v1/chat/completions/' }));
    expect(op.message).to.include("give the API's base, http://vllm:8000/v1 (envfleet appends /chat/completions");
    const query = configError(() => loadConfig({ OPENAI_BASE_URL: 'https://gw.example/v1?api_key=sk-sekret-123456' }));
    expect(query.message).to.include('it has a query string (?…)');
    expect(query.message).to.not.include('sk-sekret-123456');
    const file = 'endpoints:\n  vllm: { baseURL: "http://vllm:8000/v1/embeddings" }\nprofiles:\n  rollout.policy: { endpoint: vllm }\n';
    const inFile = configError(() => load(withModels('m.yaml'), { 'm.yaml': file }));
    expect(inFile.message).to.include('vllm').and.to.include("give the API's base, http://vllm:8000/v1");
    // Another scheme is said as such (it was "Invalid URL", which ftp://x is not).
    expect(configError(() => loadConfig({ OPENAI_BASE_URL: 'ftp://x' })).message).to.include('OPENAI_BASE_URL="ftp://x": an http:// or https:// URL is needed, not ftp:// (e.g. http://127.0.0.1:8000/v1)');
    // A base with or without its trailing slash is fine.
    expect(loadConfig({ OPENAI_BASE_URL: 'http://vllm:8000/v1/' }).endpoints['default']!.baseURL).to.equal('http://vllm:8000/v1');
  });

  it('rejects an undefined endpoint in a weighted list', () => {
    const file = 'profiles:\n  rollout.policy:\n    endpoint: [{ name: default, weight: 1 }, { name: ghost, weight: 1 }]\n';
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': file }));
    expect(err.message).to.include('"ghost"');
  });

  it("refuses an endpoint's timeoutMs past what a timer holds (it fired at once: every request timed out)", () => {
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': 'endpoints:\n  b: { baseURL: "http://b:8000/v1", timeoutMs: 99999999999 }\n' }));
    expect(err.message).to.include('timeoutMs').and.include('at most 2147483647');
  });

  it('spreads a profile over weighted endpoints (weight defaults to 1)', () => {
    const file = [
      'endpoints:',
      '  a: { baseURL: "http://a:8000/v1/" }',
      '  b: { baseURL: "http://b:8000/v1", maxConcurrency: 4, requestsPerMinute: 60, timeoutMs: 1000 }',
      'profiles:',
      '  rollout.policy:',
      '    endpoint:',
      '      - { name: a, weight: 3 }',
      '      - { name: b }',
      '',
    ].join('\n');
    const config = load(withModels('m.yaml', { ENVFLEET_MODEL_TIMEOUT_MS: '4242' }), { 'm.yaml': file });
    expect(config.profiles['rollout.policy'].endpoints).to.deep.equal([
      { name: 'a', weight: 3 },
      { name: 'b', weight: 1 },
    ]);
    expect(config.endpoints['a']).to.deep.equal({
      name: 'a',
      baseURL: 'http://a:8000/v1',
      apiKey: 'envfleet-local',
      apiKeyFrom: null,
      timeoutMs: 4242,
      timeoutFrom: 'ENVFLEET_MODEL_TIMEOUT_MS',
      maxConcurrency: 0,
      requestsPerMinute: 0,
    });
    expect(config.endpoints['b']).to.include({ maxConcurrency: 4, requestsPerMinute: 60, timeoutMs: 1000, timeoutFrom: 'timeoutMs of endpoint "b" in m.yaml' });
  });

  it('rejects a non-positive weight', () => {
    const file = 'profiles:\n  rollout.policy:\n    endpoint: [{ name: default, weight: 0 }]\n';
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': file }));
    expect(err.message).to.include('profiles.rollout.policy.endpoint');
  });

  it('takes an endpoint key from the variable named by apiKeyEnv', () => {
    const file = 'endpoints:\n  vllm: { baseURL: "http://vllm:8000/v1", apiKeyEnv: VLLM_API_KEY }\n';
    const config = load(withModels('m.yaml', { VLLM_API_KEY: 'vllm-secret' }), { 'm.yaml': file });
    expect(config.endpoints['vllm']!.apiKey).to.equal('vllm-secret');
  });

  it('names the apiKeyEnv variable when it is not set (or blank)', () => {
    const file = 'endpoints:\n  vllm: { baseURL: "http://vllm:8000/v1", apiKeyEnv: VLLM_API_KEY }\n';
    for (const env of [{}, { VLLM_API_KEY: '  ' }]) {
      const err = configError(() => load(withModels('m.yaml', env), { 'm.yaml': file }));
      expect(err.message).to.include('VLLM_API_KEY');
      expect(err.message).to.include('"vllm"');
    }
  });

  it('never shows an endpoint key or OPENAI_API_KEY in a models-file error', () => {
    const file = [
      'endpoints:',
      '  vllm: { baseURL: "http://vllm:8000/v1", apiKeyEnv: VLLM_API_KEY }',
      '  other: { baseURL: "http://other:8000/v1", apiKeyEnv: OTHER_KEY }',
      'profiles:',
      '  mine.judge: { endpoint: nowhere }',
      '',
    ].join('\n');
    const env = withModels('m.yaml', { OPENAI_API_KEY: 'sk-openai-PRIVATE', VLLM_API_KEY: 'vllm-PRIVATE' });
    const missingKey = configError(() => load(env, { 'm.yaml': file }));
    expect(missingKey.message).to.include('OTHER_KEY');
    const undefinedEndpoint = configError(() => load({ ...env, OTHER_KEY: 'other-PRIVATE' }, { 'm.yaml': file }));
    expect(undefinedEndpoint.message).to.include('"nowhere"');
    for (const err of [missingKey, undefinedEndpoint]) expect(err.message).not.to.include('PRIVATE');
  });

  it('rejects unknown keys, bad values and unreadable or unparsable files, naming the file', () => {
    const bad: Record<string, string> = {
      'top.yaml': 'model: x\n',
      'field.yaml': 'profiles:\n  mine.judge: { modle: x }\n',
      'temp.yaml': 'profiles:\n  mine.judge: { temperature: 3 }\n',
      'url.yaml': 'endpoints:\n  e: { baseURL: "redis://e:1" }\n',
      'keyname.yaml': 'endpoints:\n  e: { baseURL: "http://e/v1", apiKeyEnv: "sk-literal-key" }\n',
      'syntax.yaml': 'profiles: [\n',
    };
    for (const path of [...Object.keys(bad), 'missing.yaml']) {
      const err = configError(() => load(withModels(path), bad));
      expect(err.message, path).to.include(`ENVFLEET_MODELS_FILE=${path}`);
    }
    expect(configError(() => load(withModels('temp.yaml'), bad)).message).to.include('profiles.mine.judge.temperature');
  });

  it('merges prices over the built-in ones', () => {
    const file = 'prices:\n  my-model: { inputPerMTok: 1, outputPerMTok: 2 }\n  gpt-4o: { inputPerMTok: 2, outputPerMTok: 8 }\n';
    const config = load(withModels('m.yaml'), { 'm.yaml': file });
    expect(config.prices).to.deep.equal({
      ...DEFAULT_PRICES,
      'my-model': { inputPerMTok: 1, outputPerMTok: 2 },
      'gpt-4o': { inputPerMTok: 2, outputPerMTok: 8 },
    });
    expect(config.prices['gpt-4o-mini']).to.deep.equal(DEFAULT_PRICES['gpt-4o-mini']);
  });
});

describe('config: ENVFLEET_WORKER_QUEUES', () => {
  const queues = (value: string | undefined) => loadConfig({ ENVFLEET_WORKER_QUEUES: value }).worker.queues;

  it('defaults to all', () => {
    expect(queues(undefined)).to.equal('all');
    expect(queues('')).to.equal('all');
    expect(queues('all')).to.equal('all');
    expect(queues('  all  ')).to.equal('all');
  });

  it('splits a comma-separated list, trimming names and dropping empty ones', () => {
    expect(queues('mine.judge')).to.deep.equal(['mine.judge']);
    expect(queues(' mine.judge , rollout.run ')).to.deep.equal(['mine.judge', 'rollout.run']);
    expect(queues('a,,b,')).to.deep.equal(['a', 'b']);
  });
});

describe('config: redactConfig', () => {
  const file = 'endpoints:\n  vllm: { baseURL: "http://vllm:8000/v1", apiKeyEnv: VLLM_API_KEY }\n';
  const config = load(withModels('m.yaml', { OPENAI_API_KEY: 'sk-openai-PRIVATE', VLLM_API_KEY: 'vllm-PRIVATE' }), { 'm.yaml': file });

  it('replaces every endpoint key and keeps everything else', () => {
    const redacted = redactConfig(config) as { endpoints: Record<string, { apiKey: string; baseURL: string }>; worker: unknown };
    expect(JSON.stringify(redacted)).not.to.include('PRIVATE');
    expect(redacted.endpoints['default']!.apiKey).to.equal('[redacted]');
    expect(redacted.endpoints['vllm']!.apiKey).to.equal('[redacted]');
    expect(redacted.endpoints['vllm']!.baseURL).to.equal('http://vllm:8000/v1');
    expect(redacted.worker).to.deep.equal(config.worker);
  });

  it('leaves the configuration itself untouched', () => {
    redactConfig(config);
    expect(config.endpoints['default']!.apiKey).to.equal('sk-openai-PRIVATE');
    expect(config.endpoints['vllm']!.apiKey).to.equal('vllm-PRIVATE');
  });

  it('hides a password in REDIS_URL', () => {
    const withPassword = loadConfig({ REDIS_URL: 'redis://user:hunter2-secret@redis.example:6379/0' });
    expect(JSON.stringify(redactConfig(withPassword))).not.to.include('hunter2-secret');
  });

  it("hides the credentials a model endpoint's base URL may carry: a password, a user name alone, a key in the query", () => {
    // A base URL with a query is refused (the client would append the path after it: ApiBaseUrl), so a loaded
    // configuration's base URL carries credentials only as user and password; a query's are hidden by redactUrl.
    const withKeys = loadConfig({ OPENAI_BASE_URL: 'https://bob:PASSWORDLEAK@llm.example/v1' });
    const text = JSON.stringify(redactConfig(withKeys));
    expect(text).not.to.match(/PASSWORDLEAK/);
    expect(text).to.include('llm.example/v1');
    expect(redactUrl('https://llm.example/v1?api-version=2024-06-01&api-key=QUERYKEYLEAK')).to.equal('https://llm.example/v1?api-version=2024-06-01&api-key=***');
    expect(redactUrl('https://TOKENLEAK@llm.example/v1')).to.equal('https://***@llm.example/v1');
    expect(redactUrl('https://llm.example/v1?token=TÖKEN%20LEAK&x=1')).to.equal('https://llm.example/v1?token=***&x=1');
    expect(redactUrl('http://127.0.0.1:8000/v1')).to.equal('http://127.0.0.1:8000/v1');
    expect(redactUrl('not a url //me:pw@host/?access_token=abc')).to.equal('not a url //***@host/?access_token=***');
  });

  it('never shows a REDIS_URL password that is not percent-encoded, and says to encode it (a / in a base64 password was printed whole)', () => {
    // A stranger's probe: managed Redis services issue base64 passwords, with / + = in them.
    for (const [url, says] of [
      ['redis://:ab+c/d=LEAK1@127.0.0.1:6452', 'it is not a URL'],
      ['redis://default:ab#LEAK2@127.0.0.1:6452/0', 'it is not a URL'],
      ['redis://:ab?LEAK3@127.0.0.1:6452', 'it is not a URL'],
      ['redis://:50%LEAK4@127.0.0.1:6452', "has a % that is not percent-encoding: write a % as %25"],
      ['redis://:p@ss@LEAK5@127.0.0.1:6452/x', 'must be a database number'],
      // The part before the / reads as a port: host "default", port 12, and the rest as the path.
      ['redis://default:12/xyzLEAK6+Q==@127.0.0.1:6379', 'an @ comes after the host'],
      // Cut at a ? (a reviewer's checks): it was refused printing the part before the ?, or loaded as host "default".
      ['redis://u:12/abLEAK7?cd@127.0.0.1:6379', 'an @ comes after the host'],
      ['redis://default:12?xyzLEAK8@127.0.0.1:6379', 'an @ comes after the host'],
    ] as const) {
      const err = configError(() => loadConfig({ REDIS_URL: url }));
      expect(err.message, url).not.to.match(/LEAK/);
      expect(err.message, url).to.include(says).and.include('must be percent-encoded (%2F %3F %23 %40 %25)');
    }
    expect(configError(() => loadConfig({ REDIS_URL: '127.0.0.1:6379' })).message).to.include('it has no scheme').and.include('redis://127.0.0.1:6379');
    // ioredis's options in the query string (an IPv6-only host name needs family=6) are taken.
    expect(loadConfig({ REDIS_URL: 'redis://redis.railway.internal:6379?family=6' }).redis.url).to.equal('redis://redis.railway.internal:6379?family=6');
    // Percent-encoded, it loads.
    expect(loadConfig({ REDIS_URL: 'redis://:ab%2Bc%2Fd%3D@127.0.0.1:6452' }).redis.url).to.equal('redis://:ab%2Bc%2Fd%3D@127.0.0.1:6452');
  });
});

describe('config: stricter values', () => {
  it('applies temperature from the models file default entry to chat stages', () => {
    const config = load(withModels('m.yaml'), { 'm.yaml': 'profiles:\n  default:\n    temperature: 0.1\n' });
    expect(config.profiles['mine.topic'].temperature).to.equal(0.1);
    expect(config.profiles['mine.dedup'].temperature).to.equal(0);
  });

  it('reserves the endpoint name "default" for OPENAI_BASE_URL', () => {
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': 'endpoints:\n  default:\n    baseURL: http://x/v1\n' }));
    expect(err.message).to.match(/"default" is reserved/);
  });

  it('blames an undefined endpoint on the default entry when that is where it is', () => {
    const err = configError(() => load(withModels('m.yaml'), { 'm.yaml': 'profiles:\n  default:\n    endpoint: nowhere\n' }));
    expect(err.message).to.match(/profile "default" uses endpoint "nowhere"/);
  });

  it('refuses an empty queue list and "all" mixed with names, and drops duplicates', () => {
    expect(configError(() => loadConfig({ ENVFLEET_WORKER_QUEUES: ',' })).message).to.match(/ENVFLEET_WORKER_QUEUES/);
    expect(configError(() => loadConfig({ ENVFLEET_WORKER_QUEUES: 'all,rollout.run' })).message).to.match(/without "all"/);
    expect(loadConfig({ ENVFLEET_WORKER_QUEUES: 'rollout.run, rollout.run' }).worker.queues).to.deep.equal(['rollout.run']);
  });

  it('refuses more environments per sandbox thread than its memory bound holds, saying what to raise or lower', () => {
    expect(() => loadConfig({ ENVFLEET_POOL_TASKS_PER_THREAD: '320' })).to.not.throw();
    expect(() => loadConfig({ ENVFLEET_POOL_TASKS_PER_THREAD: '516' }))
      .to.throw(/ENVFLEET_POOL_TASKS_PER_THREAD=516 .* about 826 MiB .* ENVFLEET_SANDBOX_HEAP_MB=512: .* about 320 per thread .* at least 826, or lower ENVFLEET_POOL_TASKS_PER_THREAD to at most 320/);
    expect(() => loadConfig({ ENVFLEET_POOL_TASKS_PER_THREAD: '516', ENVFLEET_SANDBOX_HEAP_MB: '1032' })).to.not.throw();
  });

  it('accepts only plain decimal numbers', () => {
    for (const value of ['0x4', '1e3', '4.5', '-1']) {
      expect(configError(() => loadConfig({ ENVFLEET_WORKER_CONCURRENCY: value })).message).to.match(/ENVFLEET_WORKER_CONCURRENCY/);
    }
    expect(loadConfig({ ENVFLEET_WORKER_CONCURRENCY: ' 12 ' }).worker.concurrency).to.equal(12);
    expect(loadConfig({ ENVFLEET_BUDGET_USD: '12.5' }).budgets.usd).to.equal(12.5);
  });
});
