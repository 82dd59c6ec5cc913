import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { z } from 'zod';
import { ConfigError, apiKeyFix, loadConfig, redactUrl, secretsOf, type AppConfig, type EndpointConfig, type ModelProfile, type RequestShape } from '../config/index.js';
import { modelCodeOfStatus } from '../src/errors.js';
import { createRedisConnection, describeRedis, waitForRedis } from '../src/redis/connection.js';
import { inspectRedis, judgeRedis } from '../src/redis/guard.js';
import { errorBodyText, errorSaid, STAGE_HEADER } from '../src/llm/gateway.js';
import { createHttpSender, createNodeFetch, type HttpSender } from '../src/llm/node-fetch.js';
import { chatRequestBase, postChatCompletion, type ChatRequestBase } from '../src/llm/chat-post.js';
import { createSecretMask } from '../src/util/secrets.js';
import { defaultToolChoice, jsonSchemaResponseFormat, shapeChatRequest } from '../src/llm/request-shape.js';

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
  for (const [name, wanted] of models) {
    const check = await checkEndpoint(config.endpoints[name]!, [...wanted]);
    checks.push(check);
    if (check.status !== 'fail') checks.push(...(await checkRequestShapes(config, name)));
  }
  // An endpoint that echoes the request's key or a credential header in its error body says it here: masked, as in the logs.
  const mask = createSecretMask(secretsOf(config));
  return checks.map(c => ({ ...c, detail: mask(c.detail) }));
}

/** The chat profiles that send the same request shape to one endpoint and model, grouped (one probe each). */
function shapeGroups(config: AppConfig, endpointName: string): { profile: ModelProfile; stages: string[] }[] {
  const groups = new Map<string, { profile: ModelProfile; stages: string[] }>();
  for (const profile of Object.values(config.profiles)) {
    if (profile.kind !== 'chat' || !profile.endpoints.some(e => e.name === endpointName)) continue;
    const key = JSON.stringify([profile.model, profile.request]);
    const group = groups.get(key) ?? { profile, stages: [] };
    group.stages.push(profile.stage);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** What to change in the models file when the endpoint refused a parameter, by the parameter it named. */
function fixFor(param: string, shape: RequestShape, message = ''): string {
  switch (param) {
    case 'max_tokens':
      return 'set "tokenParam: max_completion_tokens" (or "preset: openai-reasoning" / "openai-chat")';
    case 'max_completion_tokens':
      return 'set "tokenParam: max_tokens" (or a preset such as "vllm")';
    case 'temperature':
      return 'set "sampling: false" (or "preset: openai-reasoning")';
    case 'reasoning_effort':
      return 'remove "reasoningEffort"';
    case 'response_format':
    case 'json_schema':
      return 'set "structuredOutput: prompt"';
    case 'tools':
    case 'tool_choice':
      if (/does not support tools|doesn't support tools|not support(?:ed)? (?:for )?tool/i.test(message)) {
        return 'the model takes no tools at all (the text formats send them too): serve a model that does (Ollama: one with the "tools" capability), or set another model on the profile';
      }
      return shape.toolCallFormat === 'native'
        ? 'the model is served without tool calls: set "toolCallFormat" to the format its text uses ("hermes" for Qwen, "llama3", "mistral", "json", or "auto"), or serve it with its tool-call parser (vLLM: --enable-auto-tool-choice --tool-call-parser …; SGLang: --tool-call-parser …)'
        : `the endpoint refuses tools even with tool_choice ${shape.textToolChoice === 'none' ? '"none"' : 'left out'}: try "textToolChoice: ${shape.textToolChoice === 'none' ? 'omit' : 'none'}", or a model that takes tools`;
    default:
      return Object.hasOwn(shape.extraBody, param) ? `remove "${param}" from "extraBody"` : 'check the profile\'s request shape';
  }
}

/** The stage whose requests carry tools (the agent's turns): the doctor's probe for it carries one too. */
const TOOLS_STAGE = 'rollout.policy';
const DOCTOR_TOOL = { type: 'function' as const, function: { name: 'doctor_ping', description: 'Answers ok.', parameters: { type: 'object', properties: {} } } };

/**
 * One tiny request per request shape (profile model and settings) on the endpoint: the parameters
 * the gateway will send, so an endpoint that refuses one (OpenAI's reasoning models and max_tokens
 * or temperature, a server without json_schema, a model served without tool calls) is named before
 * a run fails on it, with the setting that fixes it. The agent's stage (rollout.policy) is probed
 * with a tool, as its requests carry tools, and the other stages without; each probe is posted the
 * way the workers post (postChatCompletion: an answer streamed unasked is read as they read it).
 */
async function checkRequestShapes(config: AppConfig, endpointName: string): Promise<Check[]> {
  const endpoint = config.endpoints[endpointName]!;
  // The endpoint's own timeout (ENVFLEET_MODEL_TIMEOUT_MS, or its timeoutMs): a model slower than a fixed 30 s failed
  // the doctor although the workers wait for it, and one slower than the setting passed although every request times out.
  const client = new OpenAI({ baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, maxRetries: 0, timeout: endpoint.timeoutMs, fetch: gatewayFetch() });
  const base = await chatRequestBase(client, endpoint.timeoutMs);
  const checks: Check[] = [];
  for (const { profile, stages } of shapeGroups(config, endpointName)) {
    const others = stages.filter(s => s !== TOOLS_STAGE);
    if (others.length) checks.push(await probeShape(config, endpointName, base, profile, others, false));
    if (stages.includes(TOOLS_STAGE)) checks.push(await probeShape(config, endpointName, base, profile, [TOOLS_STAGE], true));
  }
  // The embedding profiles (mine.dedup): a stranger's probe found an endpoint without /embeddings passed the doctor and
  // failed the first synth --tasks at mine.dedup.
  const embeddings = new Map<string, string[]>();
  for (const profile of Object.values(config.profiles)) {
    if (profile.kind === 'embedding' && profile.endpoints.some(e => e.name === endpointName)) embeddings.set(profile.model, [...(embeddings.get(profile.model) ?? []), profile.stage]);
  }
  for (const [model, stages] of embeddings) checks.push(await probeEmbeddings(config, client, endpointName, model, stages));
  return checks;
}

/** One embeddings request of `model` to the endpoint, as `stages` send it. */
async function probeEmbeddings(config: AppConfig, client: OpenAI, endpointName: string, model: string, stages: readonly string[]): Promise<Check> {
  const name = `embeddings ${endpointName} ${model}`;
  const fix = `${stages.join(', ')} need${stages.length === 1 ? 's' : ''} it: serve that embedding model there, or set ${config.modelsFile ? `the ${stages.join(', ')} profile in ${config.modelsFile}` : 'ENVFLEET_EMBEDDING_MODEL (or a mine.dedup profile in ENVFLEET_MODELS_FILE)'} to one the endpoint serves`;
  try {
    const body = await client.embeddings.create({ model, input: ['doctor'] }, { headers: { [STAGE_HEADER]: 'doctor' } });
    const vector = (body as { data?: { embedding?: unknown }[] } | null)?.data?.[0]?.embedding;
    if (!Array.isArray(vector) || vector.length === 0) return { name, status: 'fail', detail: `an embeddings request was answered without a vector: ${cutBody(body)}. ${fix}` };
    return { name, status: 'ok', detail: `answers embeddings of ${model} (${vector.length} dimensions; ${stages.join(', ')})` };
  } catch (err) {
    const status = err instanceof APIError ? (err.status as number | undefined) : undefined;
    return { name, status: 'fail', detail: `an embeddings request of ${model} failed (${status === undefined ? '' : `${status}: `}${errorBodyText((err as Error).message).slice(0, 200)}). ${fix}` };
  }
}

/** One probe of checkRequestShapes: `profile`'s request shape for `stages`, with a tool (the agent's) or not. */
async function probeShape(config: AppConfig, endpointName: string, base: ChatRequestBase, profile: ModelProfile, stages: readonly string[], tools: boolean): Promise<Check> {
  const shape = profile.request;
  const name = `request shape ${endpointName} ${profile.model}${shape.preset ? ` (preset ${shape.preset})` : ''}${tools ? ' with tools' : ''}`;
  const where = `profiles ${stages.length > 3 ? `${stages.slice(0, 3).join(', ')} and ${stages.length - 3} more` : stages.join(', ')}`;
  const params = shapeChatRequest(profile, {
    model: profile.model,
    messages: [{ role: 'user', content: 'Reply with {"ok": true}.' }],
    temperature: profile.temperature,
    maxTokens: 32,
    ...(tools
      ? { tools: [DOCTOR_TOOL], toolChoice: defaultToolChoice(shape, true) }
      : { responseFormat: shape.structuredOutput === 'json_schema' ? (jsonSchemaResponseFormat('doctor', DoctorAnswer) ?? undefined) : undefined }),
  });
  const sent = Object.keys(params).filter(k => k !== 'model' && k !== 'messages');
  try {
    const body: unknown = await postChatCompletion(doctorSender(), base, params, { headers: { [STAGE_HEADER]: 'doctor' }, signal: null, timeoutMs: config.endpoints[endpointName]!.timeoutMs });
    const choices = (body as { choices?: unknown } | null)?.choices;
    if (!Array.isArray(choices) || !(choices[0] as { message?: unknown } | undefined)?.message) {
      // A gateway that answers 200 with an error object (an overloaded upstream, a model it cannot reach) did not accept the request.
      const said = errorSaid(body);
      return { name, status: 'fail', detail: `a request with ${sent.join(', ')} was answered 200 without a reply (${where})${said === null ? `: ${cutBody(body)}` : `; the endpoint said: ${said}`}` };
    }
    return { name, status: 'ok', detail: `accepts ${sent.join(', ')} (${where})` };
  } catch (err) {
    const status = err instanceof APIError ? (err.status as number | undefined) : undefined;
    const message = errorBodyText((err as Error).message);
    // The parameter refused: of those sent, the one the message names first ("'max_tokens' is not supported … use 'max_completion_tokens'").
    const candidates = [...sent, ...(sent.includes('response_format') ? ['json_schema'] : [])];
    const named =
      candidates
        .map(p => ({ p, at: message.search(new RegExp(`\\b${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`)) }))
        .filter(c => c.at >= 0)
        .sort((a, b) => a.at - b.at)[0]?.p ??
      // vLLM without a parser: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
      (tools && /\btool/i.test(message) ? 'tools' : undefined);
    if ((status === 400 || status === 422) && named) {
      return { name, status: 'fail', detail: `the endpoint refused "${named}" (${status}: ${message.slice(0, 200)}). In ${config.modelsFile ?? 'ENVFLEET_MODELS_FILE'}, ${where}: ${fixFor(named, shape, message)}.` };
    }
    if (err instanceof SyntaxError) return { name, status: 'fail', detail: `a request with ${sent.join(', ')} got an answer that cannot be read (${where}): ${message.slice(0, 300)}` };
    return { name, status: 'fail', detail: `a request with ${sent.join(', ')} failed (${where}): ${message.slice(0, 300)}` };
  }
}

const DoctorAnswer = z.strictObject({ ok: z.boolean() });

/** A body that is no reply, as a check's detail shows it: its JSON, cut. */
function cutBody(body: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(body) ?? String(body);
  } catch {
    text = String(body);
  }
  return errorBodyText(text);
}

/**
 * The fetch the gateway's clients use (node:http, src/llm/node-fetch.ts), so that the doctor's requests reach an
 * endpoint as the workers' do: Node's global fetch refuses a base URL with a user name or password in it
 * (`http://user:pass@proxy/v1`), which the workers send, and would report such an endpoint unreachable.
 */
function gatewayFetch(): typeof fetch {
  return (doctorFetch ??= createNodeFetch({ sender: doctorSender() }));
}
let doctorFetch: typeof fetch | undefined;
/** The gateway's sender (src/llm/node-fetch.ts), for the posts of chat requests as the workers make them. */
function doctorSender(): HttpSender {
  return (sender ??= createHttpSender());
}
let sender: HttpSender | undefined;

async function checkRedis(config: AppConfig): Promise<Check[]> {
  const where = describeRedis(config.redis);
  const redis = createRedisConnection(config.redis, 'producer');
  try {
    await waitForRedis(redis, config.redis, 3_000);
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
  const client = new OpenAI({ baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, maxRetries: 0, timeout: 10_000, fetch: gatewayFetch() });
  try {
    const list = await client.models.list({ headers: { [STAGE_HEADER]: 'doctor' } });
    const served = new Set(list.data.map(m => m.id));
    const missing = wanted.filter(m => !served.has(m));
    if (served.size === 0) {
      // An HTML page, or a gateway that lists nothing: what it serves cannot be told from it.
      return { name, status: 'warn', detail: `${redactUrl(endpoint.baseURL)}/models answers, but lists no model, so whether it serves ${wanted.join(', ')} cannot be told (an HTML page, a proxy, or a server that lists none); the request checks below try them` };
    }
    if (missing.length > 0) {
      return {
        name,
        status: 'warn',
        detail: `${redactUrl(endpoint.baseURL)} answers, but does not list model(s) ${missing.join(', ')} (it lists ${[...served].slice(0, 10).join(', ')}). Check ENVFLEET_MODEL or the models file.`,
      };
    }
    return { name, status: 'ok', detail: `${redactUrl(endpoint.baseURL)} answers and accepts the key; serves ${wanted.join(', ')}` };
  } catch (err) {
    if (err instanceof APIConnectionTimeoutError) {
      return { name, status: 'fail', detail: `${redactUrl(endpoint.baseURL)}/models did not answer within 10 s: the server is reached but slow or stuck (loading a model?); try again once it answers, or check ${baseUrlSetting(endpoint)}.` };
    }
    if (err instanceof APIConnectionError) {
      return { name, status: 'fail', detail: `cannot reach ${redactUrl(endpoint.baseURL)} (${err.message}). Start the server, or fix ${baseUrlSetting(endpoint)}.` };
    }
    const code = err instanceof APIError ? modelCodeOfStatus((err.status as number | undefined) ?? 0) : null;
    if (code === 'MODEL_AUTH') {
      return { name, status: 'fail', detail: `${redactUrl(endpoint.baseURL)} rejected the API key (${String(err instanceof APIError ? err.status : '')}). ${apiKeyFix(endpoint)}` };
    }
    if (code === 'MODEL_NOT_FOUND') {
      return { name, status: 'fail', detail: `${redactUrl(endpoint.baseURL)}/models does not exist (404): the base URL is probably missing its /v1 suffix or is not an OpenAI-compatible server. Fix ${baseUrlSetting(endpoint)}.` };
    }
    return { name, status: 'fail', detail: `${redactUrl(endpoint.baseURL)}: ${errorBodyText((err as Error).message)}` };
  }
}

/** The setting that holds an endpoint's base URL. */
function baseUrlSetting(endpoint: EndpointConfig): string {
  return endpoint.name === 'default' ? 'OPENAI_BASE_URL' : `endpoints.${endpoint.name}.baseURL in ENVFLEET_MODELS_FILE`;
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
