import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ENV_VARS, ENV_VAR_NAMES, EnvSchema, type EnvVarName, type EnvVarSpec } from './env.js';
import { ModelsFile, type PriceEntry } from './models-file.js';
import { DEFAULT_PRICES } from './prices.js';
import { resolveRequestShape, type RequestShape } from './request-shapes.js';
import { MODEL_STAGES, MODEL_STAGE_NAMES, type ModelStage } from './model-stages.js';
import { parsePythonPackages, PythonPackageError, type PythonPackageSpec } from './python-packages.js';

export { ENV_VARS, ENV_VAR_NAMES, type EnvVarName } from './env.js';
export { MODEL_STAGES, MODEL_STAGE_NAMES, isModelStage, type ModelStage } from './model-stages.js';
export { REQUEST_PRESETS, REQUEST_PRESET_NAMES, TOOL_CALL_FORMATS, type RequestShape, type RequestPresetName, type ToolCallFormat } from './request-shapes.js';
export type { PriceEntry } from './models-file.js';
export { readPythonPackages, reservedPythonName, PythonPackageError, PYTHON_STDLIB_NAMES, PYTHON_SANDBOX_NAMES, type PythonPackageSpec, type PythonPackageFile } from './python-packages.js';

/** Thrown when the configuration is invalid. The message says which variable or file, and what to put there. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface EndpointConfig {
  readonly name: string;
  readonly baseURL: string;
  readonly apiKey: string;
  /**
   * Where the key comes from, for messages that say what to fix: `OPENAI_API_KEY` (the default endpoint), the
   * variable named by the models file's `apiKeyEnv`, or null when the file gives none (the key `envfleet-local`).
   */
  readonly apiKeyFrom?: string | null;
  readonly timeoutMs: number;
  /** Where timeoutMs comes from, for messages that say what to raise: `ENVFLEET_MODEL_TIMEOUT_MS`, or the models file's entry. */
  readonly timeoutFrom?: string;
  /** Requests in flight across the fleet; 0 = unlimited. */
  readonly maxConcurrency: number;
  /** Requests per minute across the fleet; 0 = unlimited. */
  readonly requestsPerMinute: number;
}

export interface ModelProfile {
  readonly stage: ModelStage;
  readonly kind: 'chat' | 'embedding';
  readonly model: string;
  readonly temperature: number;
  readonly maxTokens: number;
  readonly cache: boolean | 'salted';
  /** How requests of this stage are shaped for its endpoint (preset, token parameter, sampling, extra body, tool-call format). */
  readonly request: RequestShape;
  readonly endpoints: readonly { readonly name: string; readonly weight: number }[];
}

export interface AppConfig {
  readonly redis: {
    readonly url: string;
    /** `host:port` of some nodes of a Redis Cluster; empty for the one Redis at `url`. */
    readonly clusterNodes: readonly string[];
    readonly prefix: string;
    readonly requirePersistence: boolean;
    /** How long a worker or the sink waits at start for a Redis that is down. */
    readonly startupWaitMs: number;
  };
  readonly endpoints: Readonly<Record<string, EndpointConfig>>;
  /** The values of OPENAI_CUSTOM_HEADERS whose names name a credential (`api-key`, `X-Auth-Token`, …): masked as the API key is. */
  readonly headerSecrets: readonly string[];
  readonly profiles: Readonly<Record<ModelStage, ModelProfile>>;
  readonly prices: Readonly<Record<string, PriceEntry>>;
  readonly gateway: {
    readonly repairAttempts: number;
    readonly cacheEnabled: boolean;
    readonly cacheTtlSeconds: number;
    readonly rateLimitFallbackMs: number;
    /** ENVFLEET_MODEL_RETRIES: sends again at once of a call whose 5xx or reset connection is its own. */
    readonly modelRetries: number;
  };
  /** `sandboxFullWaits`: how many times a job that met a sandbox thread full of others' memory comes back without using an attempt. */
  readonly jobs: { readonly attempts: number; readonly backoffMs: number; readonly sandboxFullWaits: number };
  readonly worker: {
    readonly concurrency: number;
    /** Concurrency of the rollout.run queue (episodes in flight per process). */
    readonly rolloutConcurrency: number;
    /** Episode starts spread over one model latency (src/rollouts/start-pacer.ts): auto = when the rollout concurrency is large. */
    readonly rolloutStartPacing: 'auto' | 'on' | 'off';
    /** Queue names to consume, or 'all'. */
    readonly queues: readonly string[] | 'all';
    readonly lockDurationMs: number;
    readonly stalledIntervalMs: number;
    readonly shutdownTimeoutMs: number;
    /** How often a worker process brings back parked jobs of runs that are no longer paused (a missed resume). */
    readonly pausedRecheckMs: number;
    /** A job rate limited without a break for this long pauses its run (0 = never). */
    readonly rateLimitPauseMs: number;
  };
  readonly pool: { readonly threads: number; readonly tasksPerThread: number };
  readonly sandbox: {
    /** Deadline of one tool call. */
    readonly callDeadlineMs: number;
    /** Deadline of loading an environment source and running its constructor. */
    readonly createDeadlineMs: number;
    /** Deadline of one check function. */
    readonly checkDeadlineMs: number;
    /** Time one session (or probe) may keep its sandbox thread busy, summed over its calls. */
    readonly sessionCpuMs: number;
    /** Memory allowance of one environment: the heap of its own WebAssembly module (see docs/sandbox.md). */
    readonly envMemoryMb: number;
    /** Bound on a sandbox thread's WebAssembly memory, summed over its modules (the worker's own setting). */
    readonly heapMb: number;
    /** Largest serialized tool result. */
    readonly maxResultBytes: number;
    /** Largest serialized state. */
    readonly maxStateBytes: number;
    /** Guest stack size (QuickJS frames use the host thread's stack). */
    readonly stackBytes: number;
  };
  /** The Python runtime (Pyodide), read by the process that runs it. */
  readonly python: {
    /** Folder of the memory snapshot cache. */
    readonly snapshotDir: string;
    readonly interpreters: number;
    readonly heapMb: number;
    /** ENVFLEET_PYTHON_PACKAGES: the user-supplied pure-Python packages environments may import (checked at load). */
    readonly packages: readonly PythonPackageSpec[];
  };
  readonly budgets: { readonly usd: number; readonly tokens: number };
  readonly synthesis: {
    readonly minUsefulness: number;
    readonly minModelability: number;
    readonly dedupThreshold: number;
    readonly probeSteps: number;
    readonly notFailThreshold: number;
    readonly assembleRounds: number;
    readonly verdictRepairRounds: number;
  };
  readonly log: { readonly level: EnvSchema['LOG_LEVEL'] };
  readonly dashboard: { readonly host: string; readonly port: number; readonly token: string | null };
  /**
   * `envfleet serve`: the clients' token (ENVFLEET_SERVE_TOKEN), or null; how often each `/ws` client is pinged
   * (ENVFLEET_SERVE_WS_PING_MS; 0: never), one that missed the previous ping being dropped.
   */
  readonly serve: { readonly token: string | null; readonly wsPingIntervalMs: number };
  /** Where the models file came from, for `envfleet doctor`. */
  readonly modelsFile: string | null;
  /** The variables that were set (not defaulted). */
  readonly explicit: readonly EnvVarName[];
}

export interface LoadConfigOptions {
  /** Reads the models file; tests pass their own. */
  readonly readFile?: (path: string) => string;
  /** Values that win over the environment (e.g. the demo's private Redis and scripted server). */
  readonly overrides?: Partial<Record<EnvVarName, string>>;
}

/**
 * Reads, validates and freezes the configuration. The only function in envfleet that reads the
 * environment: everything else receives the returned object.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: LoadConfigOptions = {},
): AppConfig {
  const raw = Object.fromEntries(
    ENV_VAR_NAMES.map(name => [name, blankToUndefined(options.overrides?.[name] ?? env[name])]),
  );
  const explicit = ENV_VAR_NAMES.filter(name => raw[name] !== undefined);
  const parsed = EnvSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(describeEnvIssues(parsed.error, raw));
  const e = parsed.data;

  if (e.ENVFLEET_REDIS_CLUSTER_NODES) checkClusterSettings(e);
  checkSandboxRoom(e);

  const file = e.ENVFLEET_MODELS_FILE ? readModelsFile(e.ENVFLEET_MODELS_FILE, options.readFile) : {};

  const endpoints: Record<string, EndpointConfig> = {
    default: {
      name: 'default',
      baseURL: stripTrailingSlash(e.OPENAI_BASE_URL),
      apiKey: e.OPENAI_API_KEY,
      apiKeyFrom: 'OPENAI_API_KEY',
      timeoutMs: e.ENVFLEET_MODEL_TIMEOUT_MS,
      timeoutFrom: 'ENVFLEET_MODEL_TIMEOUT_MS',
      maxConcurrency: e.ENVFLEET_MODEL_MAX_CONCURRENCY,
      requestsPerMinute: e.ENVFLEET_MODEL_RPM,
    },
  };
  for (const [name, entry] of Object.entries(file.endpoints ?? {})) {
    if (name === 'default') {
      throw new ConfigError(
        `${e.ENVFLEET_MODELS_FILE}: the endpoint name "default" is reserved for OPENAI_BASE_URL; give this endpoint another name.`,
      );
    }
    let apiKey = 'envfleet-local';
    if (entry.apiKeyEnv) {
      const value = blankToUndefined(env[entry.apiKeyEnv]);
      if (value === undefined) {
        throw new ConfigError(
          `${e.ENVFLEET_MODELS_FILE}: endpoint "${name}" takes its key from ${entry.apiKeyEnv}, which is not set. ` +
            `Export ${entry.apiKeyEnv}=<the key for ${redactUrl(entry.baseURL)}> or remove apiKeyEnv.`,
        );
      }
      apiKey = value;
    }
    endpoints[name] = {
      name,
      baseURL: stripTrailingSlash(entry.baseURL),
      apiKey,
      apiKeyFrom: entry.apiKeyEnv ?? null,
      timeoutMs: entry.timeoutMs ?? e.ENVFLEET_MODEL_TIMEOUT_MS,
      timeoutFrom: entry.timeoutMs === undefined ? 'ENVFLEET_MODEL_TIMEOUT_MS' : `timeoutMs of endpoint "${name}" in ${e.ENVFLEET_MODELS_FILE}`,
      maxConcurrency: entry.maxConcurrency ?? 0,
      requestsPerMinute: entry.requestsPerMinute ?? 0,
    };
  }

  const fileDefault = file.profiles?.['default'];
  const checkEndpointNames = (owner: string, spec: string | readonly { name: string }[] | undefined) => {
    for (const name of typeof spec === 'string' ? [spec] : (spec ?? []).map(w => w.name)) {
      if (!endpoints[name]) {
        throw new ConfigError(
          `${e.ENVFLEET_MODELS_FILE}: profile "${owner}" uses endpoint "${name}", which is not defined. ` +
            `Defined endpoints: ${Object.keys(endpoints).join(', ')}. Add it under "endpoints".`,
        );
      }
    }
  };
  checkEndpointNames('default', fileDefault?.endpoint);
  for (const [stage, entry] of Object.entries(file.profiles ?? {})) checkEndpointNames(stage, entry.endpoint);
  const profiles = Object.fromEntries(
    MODEL_STAGE_NAMES.map(stage => {
      const base = MODEL_STAGES[stage];
      const override = file.profiles?.[stage];
      const endpointSpec = override?.endpoint ?? fileDefault?.endpoint ?? 'default';
      const weighted =
        typeof endpointSpec === 'string' ? [{ name: endpointSpec, weight: 1 }] : endpointSpec;
      const defaultModel = base.kind === 'embedding' ? e.ENVFLEET_EMBEDDING_MODEL : e.ENVFLEET_MODEL;
      const profile: ModelProfile = {
        stage,
        kind: base.kind,
        model: override?.model ?? (base.kind === 'chat' ? fileDefault?.model : undefined) ?? defaultModel,
        temperature: override?.temperature ?? (base.kind === 'chat' ? fileDefault?.temperature : undefined) ?? base.temperature,
        maxTokens: override?.maxTokens ?? fileDefault?.maxTokens ?? base.maxTokens,
        cache: base.cache,
        request: resolveRequestShape(fileDefault, override),
        endpoints: weighted,
      };
      return [stage, profile];
    }),
  ) as Record<ModelStage, ModelProfile>;

  const queues = parseQueueList(e.ENVFLEET_WORKER_QUEUES);
  const config: AppConfig = {
    redis: { url: e.REDIS_URL, clusterNodes: e.ENVFLEET_REDIS_CLUSTER_NODES ?? [], prefix: e.ENVFLEET_REDIS_PREFIX, requirePersistence: e.ENVFLEET_REQUIRE_PERSISTENCE, startupWaitMs: e.ENVFLEET_REDIS_STARTUP_WAIT_MS },
    endpoints,
    headerSecrets: headerSecretsOf(e.OPENAI_CUSTOM_HEADERS),
    profiles,
    prices: { ...DEFAULT_PRICES, ...(file.prices ?? {}) },
    gateway: {
      repairAttempts: e.ENVFLEET_REPAIR_ATTEMPTS,
      cacheEnabled: e.ENVFLEET_CACHE,
      cacheTtlSeconds: e.ENVFLEET_CACHE_TTL_DAYS * 86_400,
      rateLimitFallbackMs: e.ENVFLEET_RATE_LIMIT_FALLBACK_MS,
      modelRetries: e.ENVFLEET_MODEL_RETRIES,
    },
    jobs: { attempts: e.ENVFLEET_JOB_ATTEMPTS, backoffMs: e.ENVFLEET_JOB_BACKOFF_MS, sandboxFullWaits: e.ENVFLEET_SANDBOX_FULL_WAITS },
    worker: {
      concurrency: e.ENVFLEET_WORKER_CONCURRENCY,
      rolloutConcurrency: e.ENVFLEET_ROLLOUT_CONCURRENCY,
      rolloutStartPacing: e.ENVFLEET_ROLLOUT_START_PACING,
      queues,
      lockDurationMs: e.ENVFLEET_LOCK_DURATION_MS,
      stalledIntervalMs: e.ENVFLEET_STALLED_INTERVAL_MS,
      shutdownTimeoutMs: e.ENVFLEET_SHUTDOWN_TIMEOUT_MS,
      pausedRecheckMs: e.ENVFLEET_PAUSED_RECHECK_MS,
      rateLimitPauseMs: e.ENVFLEET_RATE_LIMIT_PAUSE_MS,
    },
    pool: { threads: e.ENVFLEET_POOL_THREADS, tasksPerThread: e.ENVFLEET_POOL_TASKS_PER_THREAD },
    sandbox: {
      callDeadlineMs: e.ENVFLEET_SANDBOX_DEADLINE_MS,
      createDeadlineMs: e.ENVFLEET_SANDBOX_CREATE_DEADLINE_MS,
      checkDeadlineMs: e.ENVFLEET_SANDBOX_CHECK_DEADLINE_MS,
      sessionCpuMs: e.ENVFLEET_SANDBOX_SESSION_CPU_MS,
      envMemoryMb: e.ENVFLEET_SANDBOX_ENV_MEMORY_MB,
      heapMb: e.ENVFLEET_SANDBOX_HEAP_MB,
      maxResultBytes: e.ENVFLEET_SANDBOX_MAX_RESULT_KB * 1024,
      maxStateBytes: e.ENVFLEET_SANDBOX_MAX_STATE_KB * 1024,
      stackBytes: 256 * 1024,
    },
    python: {
      snapshotDir: checkSnapshotDir(e.ENVFLEET_PYTHON_SNAPSHOT_DIR ?? join(tmpdir(), 'envfleet', 'pyodide')),
      interpreters: e.ENVFLEET_PYTHON_INTERPRETERS,
      heapMb: e.ENVFLEET_PYTHON_HEAP_MB,
      packages: checkPythonPackages(e.ENVFLEET_PYTHON_PACKAGES),
    },
    budgets: { usd: e.ENVFLEET_BUDGET_USD, tokens: e.ENVFLEET_BUDGET_TOKENS },
    synthesis: {
      minUsefulness: e.ENVFLEET_MIN_USEFULNESS,
      minModelability: e.ENVFLEET_MIN_MODELABILITY,
      dedupThreshold: e.ENVFLEET_DEDUP_THRESHOLD,
      probeSteps: e.ENVFLEET_PROBE_STEPS,
      notFailThreshold: e.ENVFLEET_NOT_FAIL_THRESHOLD,
      assembleRounds: e.ENVFLEET_ASSEMBLE_ROUNDS,
      verdictRepairRounds: e.ENVFLEET_REPAIR_ROUNDS,
    },
    log: { level: e.LOG_LEVEL },
    dashboard: { host: e.ENVFLEET_DASHBOARD_HOST, port: e.ENVFLEET_DASHBOARD_PORT, token: e.ENVFLEET_DASHBOARD_TOKEN ?? null },
    serve: { token: e.ENVFLEET_SERVE_TOKEN ?? null, wsPingIntervalMs: e.ENVFLEET_SERVE_WS_PING_MS },
    modelsFile: e.ENVFLEET_MODELS_FILE ?? null,
    explicit,
  };
  return deepFreeze(config);
}

/**
 * WebAssembly memory one environment's sandbox module is charged at least (its initial pages; measured
 * 1.6 MiB for the QuickJS build, docs/benchmarks.md § Sandbox runtime).
 */
export const SANDBOX_MODULE_MIB = 1.6;

/**
 * Every task of a pool thread may hold an environment (an episode's or a served session's): their modules
 * must fit the thread's memory bound, or episodes past it end with SANDBOX_MEMORY_FULL instead of waiting.
 */
function checkSandboxRoom(e: EnvSchema): void {
  const needMb = Math.ceil(e.ENVFLEET_POOL_TASKS_PER_THREAD * SANDBOX_MODULE_MIB);
  if (needMb > e.ENVFLEET_SANDBOX_HEAP_MB) {
    const fit = Math.floor(e.ENVFLEET_SANDBOX_HEAP_MB / SANDBOX_MODULE_MIB);
    throw new ConfigError(
      `ENVFLEET_POOL_TASKS_PER_THREAD=${e.ENVFLEET_POOL_TASKS_PER_THREAD} environments per sandbox thread need about ${needMb} MiB ` +
        `(${SANDBOX_MODULE_MIB} MiB of WebAssembly memory each, at least), more than ENVFLEET_SANDBOX_HEAP_MB=${e.ENVFLEET_SANDBOX_HEAP_MB}: ` +
        `episodes past about ${fit} per thread would end with SANDBOX_MEMORY_FULL. Raise ENVFLEET_SANDBOX_HEAP_MB to at least ${needMb}, ` +
        `or lower ENVFLEET_POOL_TASKS_PER_THREAD to at most ${fit} (or add threads with ENVFLEET_POOL_THREADS).`,
    );
  }
}

/** The packages, each checked now (a missing path, a non-package, an extension module inside, a shadowing name): ConfigError saying what to fix. */
function checkPythonPackages(value: string | undefined): PythonPackageSpec[] {
  if (value === undefined) return [];
  try {
    return parsePythonPackages(value);
  } catch (err) {
    if (err instanceof PythonPackageError) throw new ConfigError(err.message);
    throw err;
  }
}

/** The snapshot folder must be a folder when it exists (it is created on first use otherwise). */
function checkSnapshotDir(dir: string): string {
  const abs = resolve(dir);
  if (/^\/(proc|sys)(\/|$)/.test(abs)) {
    throw new ConfigError(`ENVFLEET_PYTHON_SNAPSHOT_DIR=${dir}: /proc and /sys are kernel interfaces, not storage. Point it at a folder envfleet may write to (it is created if missing), or unset it.`);
  }
  let stats;
  try {
    stats = statSync(dir);
  } catch {
    return dir;
  }
  if (!stats.isDirectory()) {
    throw new ConfigError(`ENVFLEET_PYTHON_SNAPSHOT_DIR=${dir}: this is a file, not a folder. Point it at a folder envfleet may write to (it is created if missing), or unset it.`);
  }
  return dir;
}

/** What a Redis Cluster cannot take: braces in the prefix (they would pin every key to one slot), a db other than 0. */
function checkClusterSettings(e: EnvSchema): void {
  if (/[{}]/.test(e.ENVFLEET_REDIS_PREFIX)) {
    throw new ConfigError(
      `ENVFLEET_REDIS_PREFIX=${e.ENVFLEET_REDIS_PREFIX}: with ENVFLEET_REDIS_CLUSTER_NODES the prefix must not contain { or }. ` +
        'envfleet gives each queue and each run its own hash tag after the prefix; braces in the prefix would put every key in one slot, on one node. ' +
        `Use ENVFLEET_REDIS_PREFIX=${e.ENVFLEET_REDIS_PREFIX.replace(/[{}]/g, '') || 'envfleet'}.`,
    );
  }
  const db = new URL(e.REDIS_URL).pathname.replace(/^\//, '');
  if (db !== '' && db !== '0') {
    throw new ConfigError(
      `REDIS_URL names database ${db}, but a Redis Cluster has only database 0. With ENVFLEET_REDIS_CLUSTER_NODES, REDIS_URL gives only the user, password and TLS of the nodes: drop the /${db}.`,
    );
  }
}

/**
 * Where each option a run freezes at its creation comes from (queues/submit.ts runOptionsFrom): the flag or the
 * variable to change back, named in the message that refuses a request whose options differ.
 */
export const RUN_OPTION_SOURCES: Readonly<Record<string, string>> = {
  minUsefulness: 'ENVFLEET_MIN_USEFULNESS',
  minModelability: 'ENVFLEET_MIN_MODELABILITY',
  dedupThreshold: 'ENVFLEET_DEDUP_THRESHOLD',
  probeSteps: '--probe-steps or ENVFLEET_PROBE_STEPS',
  notFailThreshold: 'ENVFLEET_NOT_FAIL_THRESHOLD',
  assembleRounds: 'ENVFLEET_ASSEMBLE_ROUNDS',
  verdictRepairRounds: 'ENVFLEET_REPAIR_ROUNDS',
  maxEnvs: '--max-envs',
  language: '--language',
  'limits.callDeadlineMs': 'ENVFLEET_SANDBOX_DEADLINE_MS',
  'limits.createDeadlineMs': 'ENVFLEET_SANDBOX_CREATE_DEADLINE_MS',
  'limits.checkDeadlineMs': 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS',
  'limits.sessionCpuMs': 'ENVFLEET_SANDBOX_SESSION_CPU_MS',
  'limits.envMemoryMb': 'ENVFLEET_SANDBOX_ENV_MEMORY_MB',
  'limits.heapMb': 'ENVFLEET_SANDBOX_HEAP_MB',
  'limits.maxResultBytes': 'ENVFLEET_SANDBOX_MAX_RESULT_KB (× 1024)',
  'limits.maxStateBytes': 'ENVFLEET_SANDBOX_MAX_STATE_KB (× 1024)',
  models: 'ENVFLEET_MODEL or the models file (ENVFLEET_MODELS_FILE)',
};

/** The configuration with every secret replaced, safe to log or store with a run. */
export function redactConfig(config: AppConfig): unknown {
  return JSON.parse(
    JSON.stringify(config, (key, value: unknown) => {
      if (key === 'apiKey' || (key === 'token' && typeof value === 'string')) return '[redacted]';
      if ((key === 'url' || key === 'baseURL') && typeof value === 'string') return redactUrl(value);
      return value;
    }),
  ) as unknown;
}

function readModelsFile(path: string, readFile: ((path: string) => string) | undefined) {
  let text: string;
  try {
    // A byte order mark (Windows editors) is not part of the text: JSON.parse refuses it.
    text = (readFile ?? (p => readFileSync(resolve(p), 'utf8')))(path).replace(/^\uFEFF/, '');
  } catch (err) {
    throw new ConfigError(
      `ENVFLEET_MODELS_FILE=${path}: cannot read the file (${(err as Error).message}). Point it at an existing JSON or YAML file, or unset it.`,
    );
  }
  const isJson = extname(path).toLowerCase() === '.json';
  let data: unknown;
  try {
    data = isJson ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`ENVFLEET_MODELS_FILE=${path}: not valid ${isJson ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const result = ModelsFile.safeParse(data ?? {});
  if (!result.success) {
    const lines = flattenIssues(result.error.issues).map(({ path: at, message }) => `  - at ${at || '(top level)'}: ${message}`);
    throw new ConfigError(`ENVFLEET_MODELS_FILE=${path} is invalid:\n${lines.join('\n')}\nSee docs/configuration.md for the format.`);
  }
  return result.data;
}

/** zod reports a bad record key as one issue with the real reasons nested inside; bring them out. */
function flattenIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): { path: string; message: string }[] {
  return issues.flatMap(issue => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'invalid_key' && issue.issues.length > 0) {
      return flattenIssues(issue.issues, path);
    }
    return [{ path: path.map(String).join('.'), message: issue.message }];
  });
}

/** Query parameters whose values are credentials (Azure's `api-key`, `token`, `sig`, `access_token`, …). */
const SECRET_PARAM = /key|token|secret|pass|sig|auth|credential/i;
/** The same parameters' values in a URL the URL parser refuses. */
const SECRET_PARAM_VALUE = new RegExp(`([?&][^=&#]*(?:${SECRET_PARAM.source})[^=&#]*=)[^&#]*`, 'gi');

/** Header names that carry a credential (`api-key`, `Authorization`, `X-Auth-Token`, `Ocp-Apim-Subscription-Key`, `Cookie`). */
const SECRET_HEADER = /key|token|auth|secret|pass|sig|cookie|credential/i;

/** The values of OPENAI_CUSTOM_HEADERS (one `Name: value` per line, as the openai client reads it) that are credentials. */
export function headerSecretsOf(text: string | undefined): string[] {
  const out: string[] = [];
  for (const line of (text ?? '').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const value = line.slice(colon + 1).trim();
    // An "Authorization: Bearer X" header: X alone is the secret too (an endpoint may echo it without the scheme).
    if (value && SECRET_HEADER.test(line.slice(0, colon))) out.push(value, ...(/^(bearer|basic|token)\s+\S/i.test(value) ? [value.replace(/^\S+\s+/, '')] : []));
  }
  return out;
}

/** What to do about a refused key: the variable the key of this endpoint is read from (a file endpoint never reads OPENAI_API_KEY). */
export function apiKeyFix(endpoint: Pick<EndpointConfig, 'name' | 'apiKeyFrom'>): string {
  const from = endpoint.apiKeyFrom === undefined ? (endpoint.name === 'default' ? 'OPENAI_API_KEY' : null) : endpoint.apiKeyFrom;
  if (from) return `Set ${from} to a valid key${endpoint.name === 'default' ? '' : ` (it is endpoints.${endpoint.name}.apiKeyEnv in ENVFLEET_MODELS_FILE)`}.`;
  return `It has no apiKeyEnv in ENVFLEET_MODELS_FILE, so it was sent the placeholder key envfleet-local: add apiKeyEnv: VAR under endpoints.${endpoint.name} and export VAR=<its key>.`;
}

/**
 * The secret values a configuration holds (the endpoints' API keys, credential headers of OPENAI_CUSTOM_HEADERS, the dashboard's and serve's tokens, the password
 * of the Redis URL), for masking wherever text that may echo them leaves the process (src/util/secrets.ts). The
 * placeholder key `envfleet-local` is no secret.
 */
export function secretsOf(config: Partial<Pick<AppConfig, 'endpoints' | 'headerSecrets' | 'dashboard' | 'serve' | 'redis'>>): string[] {
  const out: string[] = [...(config.headerSecrets ?? [])];
  for (const e of Object.values(config.endpoints ?? {})) if (e.apiKey && e.apiKey !== 'envfleet-local') out.push(e.apiKey);
  if (config.dashboard?.token) out.push(config.dashboard.token);
  if (config.serve?.token) out.push(config.serve.token);
  try {
    const password = config.redis?.url ? decodeURIComponent(new URL(config.redis.url).password) : '';
    if (password) out.push(password);
  } catch {
    // Not a URL: nothing to take from it.
  }
  return out;
}

/**
 * A URL for messages, logs and stored records: its password hidden (or a user name that stands alone, as a
 * token often does), and the values of query parameters that carry credentials. A model endpoint's base URL
 * may hold a key in either place.
 */
export function redactUrl(url: unknown): string {
  const text = String(url);
  try {
    const parsed = new URL(text);
    // An @ after the host (redis://user:12/ab@host: a password with a / in it, read as host "user" and port 12): all up
    // to the last @ may be the password.
    if (/@/.test(parsed.pathname + parsed.search + parsed.hash)) throw new Error('userinfo past the authority');
    let changed = false;
    if (parsed.password) {
      parsed.password = '***';
      changed = true;
    } else if (parsed.username) {
      parsed.username = '***';
      changed = true;
    }
    for (const name of [...parsed.searchParams.keys()]) {
      if (SECRET_PARAM.test(name)) {
        parsed.searchParams.set(name, '***');
        changed = true;
      }
    }
    return changed ? parsed.toString() : text;
  } catch {
    // Not a URL (a password with a / or # in it, not percent-encoded): everything up to the last @ may be the password.
    return text.replace(/\/\/.*@/s, '//***@').replace(SECRET_PARAM_VALUE, '$1***');
  }
}

/** A value to show in a message: the variable's default, or (none, or one computed per machine) a sample to copy. */
function exampleOf(name: EnvVarName): string {
  const spec: EnvVarSpec = ENV_VARS[name];
  return spec.example || spec.sample || '';
}

function describeEnvIssues(error: z.ZodError, raw: Record<string, string | undefined>): string {
  const lines = error.issues.map(issue => {
    const name = String(issue.path[0]) as EnvVarName;
    const spec = ENV_VARS[name];
    const value = raw[name];
    const shown =
      'secret' in spec && spec.secret
        ? '(value hidden)'
        : (name === 'REDIS_URL' || name === 'OPENAI_BASE_URL') && value !== undefined
          ? JSON.stringify(redactUrl(value))
          : JSON.stringify(value);
    return `  - ${name}=${shown}: ${issue.message}. ${spec.description} Example: ${name}=${exampleOf(name)}`;
  });
  return `Invalid configuration:\n${lines.join('\n')}\nFix the variables above (see .env.example) and start again.`;
}

function parseQueueList(value: string): readonly string[] | 'all' {
  const names = [...new Set(value.split(',').map(q => q.trim()).filter(Boolean))];
  if (names.length === 1 && names[0] === 'all') return 'all';
  if (names.length === 0 || names.includes('all')) {
    throw new ConfigError(
      `ENVFLEET_WORKER_QUEUES=${JSON.stringify(value)}: give "all", or a comma-separated list of queue names (without "all"). ` +
        'See `envfleet worker --help` for the queue names.',
    );
  }
  return names;
}

function blankToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function stripTrailingSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
