import OpenAI, { APIConnectionError, APIError } from 'openai';
import { ConfigError, loadConfig, type AppConfig, type EndpointConfig } from '../config/index.js';
import { modelCodeOfStatus } from '../src/errors.js';
import { createRedisConnection, redactRedisUrl, waitForRedis } from '../src/redis/connection.js';
import { inspectRedis, judgeRedis } from '../src/redis/guard.js';
import { STAGE_HEADER } from '../src/llm/gateway.js';

export interface Check {
  readonly name: string;
  readonly status: 'ok' | 'warn' | 'fail';
  readonly detail: string;
}

/**
 * `envfleet doctor`: checks the configuration, Redis (reachable, eviction policy, persistence) and
 * every model endpoint (reachable, key accepted, models served), and says what to fix.
 */
export async function runDoctor(load: () => AppConfig = () => loadConfig()): Promise<Check[]> {
  const checks: Check[] = [];
  let config: AppConfig;
  try {
    config = load();
    checks.push({ name: 'configuration', status: 'ok', detail: config.modelsFile ? `valid (models file ${config.modelsFile})` : 'valid' });
  } catch (err) {
    if (err instanceof ConfigError) {
      checks.push({ name: 'configuration', status: 'fail', detail: err.message });
      return checks;
    }
    throw err;
  }
  checks.push(...(await checkRedis(config)));
  const models = new Map<string, Set<string>>();
  for (const profile of Object.values(config.profiles)) {
    for (const { name } of profile.endpoints) {
      const set = models.get(name) ?? new Set<string>();
      set.add(profile.model);
      models.set(name, set);
    }
  }
  for (const [name, wanted] of models) checks.push(await checkEndpoint(config.endpoints[name]!, [...wanted]));
  return checks;
}

async function checkRedis(config: AppConfig): Promise<Check[]> {
  const where = redactRedisUrl(config.redis.url);
  const redis = createRedisConnection(config.redis.url, 'producer');
  try {
    await waitForRedis(redis, config.redis.url, 3_000);
  } catch (err) {
    redis.disconnect();
    return [{ name: 'redis', status: 'fail', detail: (err as Error).message }];
  }
  try {
    const verdict = judgeRedis(await inspectRedis(redis), { requirePersistence: config.redis.requirePersistence });
    const checks: Check[] = [{ name: 'redis', status: 'ok', detail: `${where} answers (Redis ${verdict.facts.version})` }];
    for (const e of verdict.errors) checks.push({ name: 'redis settings', status: 'fail', detail: e });
    for (const w of verdict.warnings) checks.push({ name: 'redis settings', status: 'warn', detail: w });
    if (verdict.errors.length === 0 && verdict.warnings.length === 0) {
      checks.push({ name: 'redis settings', status: 'ok', detail: 'maxmemory-policy noeviction, persistence on' });
    }
    return checks;
  } finally {
    redis.disconnect();
  }
}

async function checkEndpoint(endpoint: EndpointConfig, wanted: string[]): Promise<Check> {
  const name = `endpoint ${endpoint.name}`;
  const client = new OpenAI({ baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, maxRetries: 0, timeout: 10_000 });
  try {
    const list = await client.models.list({ headers: { [STAGE_HEADER]: 'doctor' } });
    const served = new Set(list.data.map(m => m.id));
    const missing = wanted.filter(m => !served.has(m));
    if (served.size > 0 && missing.length > 0) {
      return {
        name,
        status: 'warn',
        detail: `${endpoint.baseURL} answers, but does not list model(s) ${missing.join(', ')} (it lists ${[...served].slice(0, 10).join(', ')}). Check ENVFLEET_MODEL or the models file.`,
      };
    }
    return { name, status: 'ok', detail: `${endpoint.baseURL} answers and accepts the key; serves ${wanted.join(', ')}` };
  } catch (err) {
    if (err instanceof APIConnectionError) {
      return { name, status: 'fail', detail: `cannot reach ${endpoint.baseURL} (${err.message}). Start the server, or fix OPENAI_BASE_URL.` };
    }
    const code = err instanceof APIError ? modelCodeOfStatus((err.status as number | undefined) ?? 0) : null;
    if (code === 'MODEL_AUTH') {
      return { name, status: 'fail', detail: `${endpoint.baseURL} rejected the API key (${String(err instanceof APIError ? err.status : '')}). Set OPENAI_API_KEY${endpoint.name === 'default' ? '' : ` (or this endpoint's apiKeyEnv)`} to a valid key.` };
    }
    if (code === 'MODEL_NOT_FOUND') {
      return { name, status: 'fail', detail: `${endpoint.baseURL}/models does not exist (404): the base URL is probably missing its /v1 suffix or is not an OpenAI-compatible server.` };
    }
    return { name, status: 'fail', detail: `${endpoint.baseURL}: ${(err as Error).message}` };
  }
}

export function formatChecks(checks: readonly Check[]): string {
  const mark = { ok: '✓', warn: '!', fail: '✗' } as const;
  return checks.map(c => `${mark[c.status]} ${c.name}: ${c.detail}`).join('\n');
}

/** `envfleet doctor`: prints the checks; exits 1 when one failed. */
export async function doctorCommand(opts: { json?: boolean }): Promise<void> {
  const checks = await runDoctor();
  process.stdout.write(opts.json ? `${JSON.stringify(checks)}\n` : `${formatChecks(checks)}\n`);
  process.exitCode = checks.some(c => c.status === 'fail') ? 1 : 0;
}
