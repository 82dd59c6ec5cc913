import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { ApiBaseUrl } from './base-url.js';

/**
 * Every environment variable envfleet reads, with its schema, default and a sentence that tells a
 * user what to put there. `.env.example` lists exactly these names (a unit test keeps them in step)
 * and the README's configuration table is written from the same descriptions.
 */
export interface EnvVarSpec {
  readonly schema: z.ZodType;
  /** Shown in `.env.example` and the README; `undefined` means "no default". */
  readonly example: string;
  /** For an error message when `example` is empty (no default, or one computed on each machine): a value to copy. */
  readonly sample?: string;
  readonly description: string;
  /** Never echo the value in an error message or a log line. */
  readonly secret?: boolean;
}

/** Plain decimal numbers only: "0x10", "1e3" or " 5" are almost always a mistake in a config value. */
const decimal = (pattern: RegExp, what: string) => z.string().trim().regex(pattern, `expected ${what}`).pipe(z.coerce.number());
/** What a whole number between `min` and `max` is, in words: "-3" or "1.5" is refused with the rule, not only "a whole number". */
const wholeNumberRule = (min: number, max: number): string =>
  max === 2_147_483_647
    ? `a whole number of milliseconds from ${min} to 2147483647 (about 24.8 days, the longest wait a timer holds)`
    : max === Number.MAX_SAFE_INTEGER ? (min === 0 ? 'a non-negative whole number (0, 1, 2, …)' : `a whole number ≥ ${min}`) : `a whole number from ${min} to ${max}`;
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  decimal(/^\d+$/, wholeNumberRule(min, max)).pipe(z.number().int().min(min, `expected ${wholeNumberRule(min, max)}`).max(max, `expected ${wholeNumberRule(min, max)}`));
/** The longest wait a Node.js timer holds (2^31 − 1 ms, about 24.8 days): a longer one fires at once (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2_147_483_647;
/** Milliseconds a timer waits: from `min` up to MAX_TIMER_MS. */
const ms = (min: number) => int(min, MAX_TIMER_MS);
const nonNegativeInt = int(0);
const nonNegativeNumber = decimal(/^\d+(\.\d+)?$/, 'a decimal number such as 12.5').pipe(z.number().nonnegative());
/**
 * A token clients send in an HTTP header (`Authorization: Bearer TOKEN`): printable ASCII only. A header carries
 * bytes that servers read as Latin-1, so a token with an accent or an emoji never equals itself there: every
 * client would be refused with "a valid token is required".
 */
export const HEADER_SAFE_TOKEN = /^[\x20-\x7e]+$/;
export const HEADER_SAFE_TOKEN_PROBLEM = 'use only ASCII letters, digits and punctuation (no accents, emoji or control characters): clients send it in an HTTP header, Authorization: Bearer TOKEN, where other characters do not arrive as written';
const REDIS_URL_SHAPE = 'redis://[user:password@]host:port[/db], or rediss:// for TLS';
const PERCENT_ENCODE = 'characters / ? # @ % in a user or password must be percent-encoded (%2F %3F %23 %40 %25)';
/**
 * What is wrong with a REDIS_URL, or null. Never the text itself: it may hold a password. redis://[user:password@]host[:port][/db]:
 * the path, when there is one, is a database number (ioredis would send `SELECT NaN` for /abc, and ignore what follows
 * the digits of /2x); a % that is not percent-encoding in the user or password made ioredis throw URIError at connect.
 */
function redisUrlProblem(text: string): string | null {
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) return `it has no scheme: give ${REDIS_URL_SHAPE} (for example redis://127.0.0.1:6379)`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `it is not a URL: give ${REDIS_URL_SHAPE}; ${PERCENT_ENCODE}`;
  }
  // An @ past the host: a password cut at a / ? or # (redis://user:12/ab@host reads as host "user", port 12).
  if (/@/.test(u.pathname + u.search + u.hash)) return `an @ comes after the host, so the user or password holds a / ? or # that is not percent-encoded; ${PERCENT_ENCODE}`;
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return `a redis:// or rediss:// URL is needed, not ${u.protocol}// (${REDIS_URL_SHAPE})`;
  if (!u.hostname) return `it names no host: give ${REDIS_URL_SHAPE}; ${PERCENT_ENCODE}`;
  // (A query string is ioredis's options, as ?family=6 for an IPv6-only host name.)
  if (u.hash) return `it has a fragment (#…), which Redis URLs do not take; ${PERCENT_ENCODE}`;
  try {
    decodeURIComponent(u.username);
    decodeURIComponent(u.password);
  } catch {
    return `its user or password has a % that is not percent-encoding: write a % as %25 (${PERCENT_ENCODE})`;
  }
  const path = u.pathname.replace(/^\//, '');
  if (path && !/^\d+$/.test(path)) return `the path after host:port must be a database number (0, 1, 2, …, as in redis://127.0.0.1:6379/1), not "${path.length <= 40 ? path : `${path.slice(0, 40)}…`}"; ${PERCENT_ENCODE}`;
  return null;
}
const redisUrl = z.string().superRefine((text, ctx) => {
  const problem = redisUrlProblem(text);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
/** `host:port,host:port`: some nodes of a Redis Cluster (the client learns the rest from them). */
const clusterNodes = z
  .string()
  .trim()
  .transform(s => s.split(',').map(n => n.trim()).filter(n => n !== ''))
  .pipe(
    z
      .array(
        z
          .string()
          .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port (for example 10.0.0.5:7000)')
          .refine(n => Number(n.slice(n.lastIndexOf(':') + 1)) >= 1 && Number(n.slice(n.lastIndexOf(':') + 1)) <= 65_535, 'the port must be 1–65535'),
      )
      .min(1, 'expected at least one host:port'),
  );

export const ENV_VARS = {
  REDIS_URL: {
    schema: redisUrl.default('redis://127.0.0.1:6379'),
    example: 'redis://127.0.0.1:6379',
    description: 'Redis that holds every queue, run, cache and ledger (redis:// or rediss://, optionally with user:password@ and a database number /DB that the server has, below its `databases` setting).',
  },
  ENVFLEET_REDIS_PREFIX: {
    schema: z.string().regex(/^[A-Za-z0-9_{}.-]+$/, 'letters, digits, _ . - { } only').default('envfleet'),
    example: 'envfleet',
    description: 'Prefix of every Redis key. Without a cluster, {braces} in it are allowed (they pin every key to one slot); with ENVFLEET_REDIS_CLUSTER_NODES they are refused, because envfleet puts its own hash tags after the prefix.',
  },
  ENVFLEET_REDIS_CLUSTER_NODES: {
    schema: clusterNodes.optional(),
    example: '',
    sample: '10.0.0.5:7000,10.0.0.6:7000',
    description: 'Use a Redis Cluster instead of the one Redis at REDIS_URL: some of its nodes as host:port,host:port (the rest are discovered). REDIS_URL then only gives the user, password and TLS (rediss://) of every node, and must name db 0. Each queue (or the queues of one flow) and each run get their own hash tag, so they spread over the masters (docs/scaling.md).',
  },
  ENVFLEET_REQUIRE_PERSISTENCE: {
    schema: z.stringbool().default(false),
    example: 'false',
    description: 'If true, a worker refuses to start against a Redis with neither AOF nor RDB persistence (otherwise it only warns).',
  },
  ENVFLEET_REDIS_STARTUP_WAIT_MS: {
    schema: ms(0).default(60_000),
    example: '60000',
    description: 'How long a long-running process (worker, sink) started while Redis is down or restarting waits for it before it gives up, and how long a command waiting for its run (synth, scenarios, rollouts) waits for a Redis that stopped answering; commands such as status or submit fail at once.',
  },
  OPENAI_BASE_URL: {
    schema: ApiBaseUrl.default('http://127.0.0.1:8787/v1'),
    example: 'http://127.0.0.1:8787/v1',
    description: 'OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, a gateway). The default is `envfleet model-server`.',
  },
  OPENAI_API_KEY: {
    schema: z.string().min(1, 'must not be empty').default('envfleet-local'),
    example: 'envfleet-local',
    description: 'API key sent as a Bearer token to OPENAI_BASE_URL. Never logged, never stored in job data.',
    secret: true,
  },
  OPENAI_CUSTOM_HEADERS: {
    schema: z.string().optional(),
    example: '',
    sample: 'api-key: your-gateway-key',
    description: 'Extra headers sent with every request to the model endpoints, one `Name: value` per line (read by the openai client; `api-key: …` for a gateway that wants it). The values of those whose names name a credential (key, token, auth, secret, password, signature, cookie) are masked wherever text leaves the process, as the API key is.',
    secret: true,
  },
  ENVFLEET_MODEL: {
    schema: z.string().min(1).default('gpt-4o-mini'),
    example: 'gpt-4o-mini',
    description: 'Model used by every stage that ENVFLEET_MODELS_FILE does not give a profile.',
  },
  ENVFLEET_EMBEDDING_MODEL: {
    schema: z.string().min(1).default('text-embedding-3-small'),
    example: 'text-embedding-3-small',
    description: 'Model used by embedding stages (mine.dedup) unless ENVFLEET_MODELS_FILE says otherwise.',
  },
  ENVFLEET_MODELS_FILE: {
    schema: z.string().min(1).optional(),
    example: '',
    sample: '/etc/envfleet/models.yaml',
    description: 'Optional JSON or YAML file with per-stage profiles, extra endpoints and prices (see docs/configuration.md).',
  },
  ENVFLEET_MODEL_TIMEOUT_MS: {
    schema: ms(1).default(120_000),
    example: '120000',
    description: 'Timeout of one model request; a timed-out request is retried by the job (BullMQ backoff).',
  },
  ENVFLEET_MODEL_MAX_CONCURRENCY: {
    schema: nonNegativeInt.default(32),
    example: '32',
    description: 'Requests in flight to the default endpoint across the whole fleet (shared through Redis); 0 = unlimited.',
  },
  ENVFLEET_MODEL_RPM: {
    schema: nonNegativeInt.default(0),
    example: '0',
    description: 'Requests per minute to the default endpoint across the whole fleet (shared through Redis); 0 = unlimited.',
  },
  ENVFLEET_REPAIR_ATTEMPTS: {
    schema: int(0, 10).default(2),
    example: '2',
    description: 'How many times invalid structured output is sent back to the model with the validation error before giving up.',
  },
  ENVFLEET_CACHE: {
    schema: z.stringbool().default(true),
    example: 'true',
    description: 'Serve repeated identical requests of cached stages from the Redis response cache (a resumed run does not pay twice).',
  },
  ENVFLEET_CACHE_TTL_DAYS: {
    schema: int(1, 36_500).default(30),
    example: '30',
    description: 'How long cached model responses are kept.',
  },
  ENVFLEET_RATE_LIMIT_FALLBACK_MS: {
    schema: ms(1).default(5_000),
    example: '5000',
    description: 'How long the fleet backs off after a 429 that carries no retry-after header, or after finding the endpoint unreachable (connection refused) or down (MODEL_UNAVAILABLE: a 5xx or no answer, GET /models too, asked at most once this often): then it tries again, no attempt used.',
  },
  ENVFLEET_MODEL_RETRIES: {
    schema: int(0, 10).default(2),
    example: '2',
    description:
      "How many times a model call is sent again at once, to the same endpoint, after a 500 (or another 5xx that is not a gateway's 502, 503, 504 or 52x, which ENVFLEET_RATE_LIMIT_FALLBACK_MS's outage rule judges) or a reset connection that is the request's own (the endpoint answers others), before its job uses an attempt (0.5 s, then doubling; the run's pause, cancel and budget are read again first). A job of many calls (an environment's probe makes about 60) would otherwise fail for good at a few percent of 5xx, each one costing it an attempt. Timeouts are not sent again here (the endpoint may go on generating, and billing).",
  },
  ENVFLEET_JOB_ATTEMPTS: {
    schema: int(1, 100).default(5),
    example: '5',
    description: "Attempts per job for retryable failures (a 5xx, a timeout or a reset connection while the endpoint answers other requests). 429s, and an endpoint that is down (refused connections; 5xx or no answer to everything, GET /models included), do not use attempts.",
  },
  ENVFLEET_JOB_BACKOFF_MS: {
    schema: ms(1).default(2_000),
    example: '2000',
    description: 'First retry delay; doubles on each attempt (exponential backoff with jitter).',
  },
  ENVFLEET_SANDBOX_FULL_WAITS: {
    schema: int(0, 100_000).default(120),
    example: '120',
    description: "Times a job may come back without using an attempt after meeting a sandbox thread whose memory bound (ENVFLEET_SANDBOX_HEAP_MB) is full of other work's environments (SANDBOX_MEMORY_FULL), or whose environment was lost with a Python interpreter another environment took down (ENV_DISPOSED, lost with the interpreter): each wait is ENVFLEET_JOB_BACKOFF_MS doubled per wait, at most 30 s (about an hour in all with the defaults; an episode's Python environment that does not fit also waits in its interpreter first, up to 5 min a time, so its waits may add up to about 11 hours); past them such a job uses its attempts as other failures do (an episode is then recorded as environment-error, saying so). 0 = use attempts at once.",
  },
  ENVFLEET_WORKER_CONCURRENCY: {
    schema: int(1, 10_000).default(8),
    example: '8',
    description: 'Jobs one worker process runs at once per queue (model calls are I/O, so this can exceed the core count).',
  },
  ENVFLEET_ROLLOUT_CONCURRENCY: {
    schema: int(1, 100_000).default(64),
    example: '64',
    description: 'Episodes one worker process runs at once (rollout.run); each holds an environment session in the sandbox pool, so keep ENVFLEET_POOL_THREADS × ENVFLEET_POOL_TASKS_PER_THREAD at least this.',
  },
  ENVFLEET_ROLLOUT_START_PACING: {
    schema: z.enum(['auto', 'on', 'off', 'true', 'false']).default('auto').transform(v => (v === 'true' ? 'on' : v === 'false' ? 'off' : v)),
    example: 'auto',
    description: 'auto (pace when ENVFLEET_ROLLOUT_CONCURRENCY, or the worker\'s --concurrency, is 256 or more), on or off. Spread the starts of a burst of episodes over half a model latency: a worker process starts at most ENVFLEET_ROLLOUT_CONCURRENCY episodes per half the (moving) mean latency of its uncached policy calls, or per a quarter of its mean episode when that is shorter (episodes replayed from the cache). A steady run starts fewer than that, so only bursts wait (a wave of episodes that ended together, a run\'s first wave on a process that has timed a call), and a start waits at most half a latency; the answers then do not come back to the process as one burst at every turn (docs/benchmarks.md, issue 14: 1,000 episodes against a 2 s endpoint, 88 % / 82 % of the bound against 83 % / 80 % with a spread of one latency; half a latency kept the gain at 0.6–0.9 ms less CPU per episode; with 100 episodes it gained nothing and cost 2 ms of CPU per episode, hence auto). A fresh process paces nothing until one of its calls has been timed. off = start each episode as its job arrives.',
  },
  ENVFLEET_WORKER_QUEUES: {
    schema: z.string().default('all'),
    example: 'all',
    description: 'Comma-separated queues this worker consumes, or "all".',
  },
  ENVFLEET_LOCK_DURATION_MS: {
    schema: ms(1_000).default(60_000),
    example: '60000',
    description: 'BullMQ job lock; must be the same on every worker of the fleet.',
  },
  ENVFLEET_STALLED_INTERVAL_MS: {
    schema: ms(500).default(15_000),
    example: '15000',
    description: 'How often workers look for jobs whose worker died; must be the same on every worker of the fleet.',
  },
  ENVFLEET_SHUTDOWN_TIMEOUT_MS: {
    schema: ms(1).default(30_000),
    example: '30000',
    description: 'On SIGTERM/SIGINT, how long in-flight jobs may run before they are left to the stalled-job path.',
  },
  ENVFLEET_PAUSED_RECHECK_MS: {
    schema: ms(1).default(3_600_000),
    example: '3600000',
    description: 'Jobs of a paused run are parked (no starts, no CPU) and brought back on resume; every this often each worker also brings back the parked jobs of runs no longer paused, in case a resume was missed.',
  },
  ENVFLEET_RATE_LIMIT_PAUSE_MS: {
    schema: ms(0).default(3_600_000),
    example: '3600000',
    description: 'A job rate limited (429s, or a cooling endpoint) or finding the endpoint unreachable (connection refused) or down (MODEL_UNAVAILABLE) without a break for this long pauses its run, to be resumed once the endpoint answers again; a 429, or a down endpoint\'s 503, whose Retry-After asks for this long and at least an hour pauses it at once, saying until when (an endpoint is cooled for at most a day per 429, and a queue waits at most an hour at a time); 0 = wait for the endpoint indefinitely. Neither uses attempts or a start budget.',
  },
  ENVFLEET_POOL_THREADS: {
    schema: int(1, 256).default(Math.max(1, availableParallelism())),
    example: '',
    sample: '4',
    description: 'Worker threads of the sandbox pool in each worker process (default: the number of cores). A thread runs one tool call at a time for all its sessions: more threads keep a slow call (careless generated code, up to ENVFLEET_SANDBOX_DEADLINE_MS) from holding up the others; fewer cost less CPU per episode with light environments (1 instead of 2 on a 2-core machine: 0.3–0.6 ms less per episode of the reference environment, docs/benchmarks.md).',
  },
  ENVFLEET_POOL_TASKS_PER_THREAD: {
    schema: int(1, 10_000).default(64),
    example: '64',
    description: 'Sandbox tasks one pool thread serves at once; an environment session held for an episode counts as one. Each may hold an environment of about 1.6 MiB of WebAssembly memory, so this × 1.6 must fit ENVFLEET_SANDBOX_HEAP_MB (checked at start-up).',
  },
  ENVFLEET_SANDBOX_DEADLINE_MS: {
    schema: int(1, 600_000).default(1_000),
    example: '1000',
    description: 'Deadline of one tool call in the sandbox; a call past it is interrupted and its environment thrown away.',
  },
  ENVFLEET_SANDBOX_CREATE_DEADLINE_MS: {
    schema: int(1, 600_000).default(5_000),
    example: '5000',
    description: 'Deadline of loading an environment source and running its constructor.',
  },
  ENVFLEET_SANDBOX_CHECK_DEADLINE_MS: {
    schema: int(1, 600_000).default(1_000),
    example: '1000',
    description: 'Deadline of one check function.',
  },
  ENVFLEET_SANDBOX_SESSION_CPU_MS: {
    schema: int(1, 86_400_000).default(10_000),
    example: '10000',
    description: 'Time one environment session (one episode, or one probe) may keep its sandbox thread busy, summed over its calls and snapshots; past it the session ends with CPU_BUDGET_EXCEEDED, so a slow environment cannot stall the other sessions of its thread.',
  },
  ENVFLEET_SANDBOX_ENV_MEMORY_MB: {
    schema: int(1, 4_096).default(64),
    example: '64',
    description: 'Memory allowance of one environment (and of one check function): its own WebAssembly heap may not grow past this; an environment that needs more ends with MEMORY_EXCEEDED.',
  },
  ENVFLEET_SANDBOX_HEAP_MB: {
    schema: int(16, 4_096).default(512),
    example: '512',
    description: 'Bound on the WebAssembly memory of each sandbox thread, summed over the heaps of its environments; read by the worker process itself (not frozen into a run).',
  },
  ENVFLEET_SANDBOX_MAX_RESULT_KB: {
    schema: int(1, 1_048_576).default(1_024),
    example: '1024',
    description: 'Largest tool result, serialized, in KiB; a larger one is an error result.',
  },
  ENVFLEET_SANDBOX_MAX_STATE_KB: {
    schema: int(1, 1_048_576).default(8_192),
    example: '8192',
    description: 'Largest environment state, serialized, in KiB.',
  },
  ENVFLEET_PYTHON_SNAPSHOT_DIR: {
    schema: z
      .string()
      .trim()
      .refine(p => isAbsolute(p), 'expected an absolute path')
      .optional(),
    example: '',
    sample: '/var/cache/envfleet/pyodide',
    description: 'Folder where the Python runtime keeps its Pyodide memory snapshot (about 30 MB, built on first use, named by Pyodide version and runtime code, never committed). Default: envfleet/pyodide under the OS temporary folder. Must be an absolute path; it is created if missing.',
  },
  ENVFLEET_PYTHON_INTERPRETERS: {
    schema: int(1, 64).default(1),
    example: '1',
    description: 'Pyodide interpreters (threads of the Python sandbox process) in each process that runs Python environments; sessions are spread over them. Each costs about 45–135 MB of memory.',
  },
  ENVFLEET_PYTHON_HEAP_MB: {
    schema: int(64, 4_096).default(512),
    example: '512',
    description: 'Cap on each Pyodide interpreter\'s WebAssembly heap, shared by the Python environments on it: an allocation past it is a MemoryError and the call ends with MEMORY_EXCEEDED.',
  },
  ENVFLEET_PYTHON_PACKAGES: {
    schema: z.string().trim().optional(),
    example: '',
    sample: '/opt/envfleet/packages/mylib',
    description: 'Pure-Python packages that Python environments and checks may import, beyond the standard modules the sandbox allows: paths separated by the OS path delimiter (`:` on Linux and macOS, as in PYTHONPATH), each the folder of a package (holding __init__.py) or a single .py module; relative paths are resolved against the working folder. The top-level name is the folder\'s or file\'s name; it may not shadow a standard module or the sandbox\'s own, and a compiled extension module (.so, .pyd) inside is refused. Read in the process that runs the Python sandbox (workers, serve, import), which must all have the same packages. Each session that imports a package gets a fresh copy of it (docs/sandbox.md, "User-supplied packages").',
  },
  ENVFLEET_MIN_USEFULNESS: {
    schema: int(1, 10).default(7),
    example: '7',
    description: 'mine.topic keeps a description whose usefulness score (1–10) reaches this.',
  },
  ENVFLEET_MIN_MODELABILITY: {
    schema: int(1, 10).default(7),
    example: '7',
    description: 'mine.topic keeps a description whose modelability score (1–10) reaches this.',
  },
  ENVFLEET_DEDUP_THRESHOLD: {
    schema: decimal(/^\d+(\.\d+)?$/, 'a number between 0 and 1').pipe(z.number().min(0).max(1)).default(0.9),
    example: '0.9',
    description: 'mine.dedup drops a description whose embedding cosine similarity to a kept one reaches this.',
  },
  ENVFLEET_PROBE_STEPS: {
    schema: int(1, 1_000).default(30),
    example: '30',
    description: 'Dual-agent probe steps per environment and round (check.probe).',
  },
  ENVFLEET_NOT_FAIL_THRESHOLD: {
    schema: decimal(/^\d+(\.\d+)?$/, 'a number between 0 and 1').pipe(z.number().min(0).max(1)).default(0.85),
    example: '0.85',
    description: 'check.verdict keeps an environment whose (pass + warning) / judged probe steps reaches this.',
  },
  ENVFLEET_ASSEMBLE_ROUNDS: {
    schema: int(0, 10).default(2),
    example: '2',
    description: 'Rounds in which skeleton.assemble sends missing or broken methods back to the model.',
  },
  ENVFLEET_REPAIR_ROUNDS: {
    schema: int(0, 5).default(1),
    example: '1',
    description: 'Repair rounds for an environment the checker rejected: failing methods regenerated, then re-probed.',
  },
  ENVFLEET_BUDGET_USD: {
    schema: nonNegativeNumber.default(0),
    example: '0',
    description: 'Hard spending limit per run in US dollars, for runs without a budget of their own (stored as the run\'s by the first process that submits work or calls a model for it); model calls stop when it is reached. 0 = no limit.',
  },
  ENVFLEET_BUDGET_TOKENS: {
    schema: nonNegativeInt.default(0),
    example: '0',
    description: 'Hard limit on prompt + completion tokens per run, for runs without a budget of their own (stored as the run\'s as ENVFLEET_BUDGET_USD is). 0 = no limit.',
  },
  ENVFLEET_DASHBOARD_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    example: '127.0.0.1',
    description: 'Address `envfleet dashboard` listens on; anything but loopback requires ENVFLEET_DASHBOARD_TOKEN.',
  },
  ENVFLEET_DASHBOARD_PORT: {
    schema: int(0, 65_535).default(3000),
    example: '3000',
    description: 'Port of `envfleet dashboard` (0 = any free port).',
  },
  ENVFLEET_DASHBOARD_TOKEN: {
    schema: z.string().min(16, 'use at least 16 characters').regex(HEADER_SAFE_TOKEN, HEADER_SAFE_TOKEN_PROBLEM).optional(),
    example: '',
    sample: 'a-random-string-of-16-or-more-characters',
    description: 'Token the dashboard requires (Authorization: Bearer TOKEN, or ?token=TOKEN once): at least 16 printable ASCII characters; required unless it binds to loopback only.',
    secret: true,
  },
  ENVFLEET_SERVE_TOKEN: {
    schema: z.string().trim().min(8, 'use at least 8 characters').regex(HEADER_SAFE_TOKEN, HEADER_SAFE_TOKEN_PROBLEM).optional(),
    example: '',
    sample: 'a-random-token',
    description: 'Token `envfleet serve` requires from clients (Authorization: Bearer TOKEN): at least 8 printable ASCII characters; required unless it binds to loopback. `--token` overrides it (but shows in the process list).',
    secret: true,
  },
  ENVFLEET_SERVE_WS_PING_MS: {
    schema: int(0, 3_600_000).default(20_000),
    example: '20000',
    description: 'How often `envfleet serve` pings each OpenEnv WebSocket (`/ws`) client, in milliseconds (0 = never). A client that has not answered the previous ping (pong) by the next one is taken for gone and its connection dropped, its episode then ending as on a disconnect (scored, `ended_by: closed`), so a dead peer frees its session without waiting for --idle-timeout; the pings also keep proxies, NATs and load balancers from dropping an idle connection (keep it below their idle timeout, often 60 s). 20000 is what OpenEnv\'s own server (uvicorn) uses; WebSocket clients answer pings by themselves while their event loop runs.',
  },
  LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    example: 'info',
    description: 'pino log level.',
  },
} as const satisfies Record<string, EnvVarSpec>;

export type EnvVarName = keyof typeof ENV_VARS;
export const ENV_VAR_NAMES = Object.keys(ENV_VARS) as EnvVarName[];

type EnvShape = { [K in EnvVarName]: (typeof ENV_VARS)[K]['schema'] };

function buildEnvSchema() {
  const shape = Object.fromEntries(ENV_VAR_NAMES.map(name => [name, ENV_VARS[name].schema])) as EnvShape;
  return z.object(shape);
}

/** Raw environment, by variable name, after coercion and defaults. */
export const EnvSchema = buildEnvSchema();
export type EnvSchema = z.infer<typeof EnvSchema>;
