/**
 * MCP agent recipe: play one envfleet scenario over MCP (Streamable HTTP) and get its reward.
 *
 *   npx tsx examples/mcp-agent.ts --url http://127.0.0.1:8090 --scenario SCN                 # list the tools, verify
 *   npx tsx examples/mcp-agent.ts --url URL --scenario SCN --plan '[["get_member", {"member_id": "M7"}]]'
 *   OPENAI_BASE_URL=… OPENAI_API_KEY=… npx tsx examples/mcp-agent.ts --url URL --scenario SCN --model NAME
 *
 * It opens a session (POST /sessions), connects the official MCP SDK `Client` with a
 * `StreamableHTTPClientTransport` to the session's endpoint (/sessions/{id}/mcp; the server is stateless per
 * request, so any MCP client that reconnects per call works too), reads the task (the server's
 * `instructions`) and the tools (tools/list), calls tools — a fixed plan, or an OpenAI-compatible chat model
 * choosing them — and ends with POST /sessions/{id}/verify: the scenario's checks on the final state. It prints
 * `{session_id, reward, solved, checks, calls, transcript}` as JSON. Token: `--token` or ENVFLEET_SERVE_TOKEN.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';

export interface AgentOptions {
  /** The server's base URL (`envfleet serve`). */
  readonly url: string;
  readonly scenario: string;
  readonly token?: string | null;
  /** Calls to make in order, instead of a model. */
  readonly plan?: readonly (readonly [string, Record<string, unknown>])[];
  /** An OpenAI-compatible chat model that picks the calls (base URL and key: `baseURL`/`apiKey`, else OPENAI_BASE_URL/OPENAI_API_KEY; without a key, envfleet's own default `envfleet-local`, which a local server without keys takes). */
  readonly model?: string;
  readonly baseURL?: string;
  readonly apiKey?: string;
  readonly maxTurns?: number;
}

export interface AgentStep {
  readonly tool: string;
  readonly arguments: Record<string, unknown>;
  readonly text: string;
  readonly isError: boolean;
}

export interface AgentResult {
  readonly session_id: string;
  readonly task: string | null;
  readonly tools: string[];
  readonly transcript: AgentStep[];
  readonly reward: number;
  readonly solved: boolean;
  readonly checks: { item: string; passed: boolean }[];
  readonly calls: number;
}

interface Opened {
  session_id: string;
  mcp_url: string;
  task: string | null;
}

interface Verified {
  reward: number;
  envfleet: { solved: boolean; checks: { item: string; passed: boolean }[]; calls: number };
}

async function post<T>(url: string, token: string | null, body?: unknown): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as T & { error?: { code: string; message: string } };
  if (!res.ok) throw new Error(`${url}: ${res.status} ${json.error?.code ?? ''} ${json.error?.message ?? ''}`);
  return json;
}

const textOf = (r: CallToolResult) => r.content.map(c => (c.type === 'text' ? c.text : '')).join('');

/** MCP tools as OpenAI function tools (the server's inputSchema is the environment's JSON Schema). */
const asFunctionTools = (tools: readonly Tool[]): ChatCompletionTool[] =>
  tools.map(t => ({ type: 'function', function: { name: t.name, description: t.description ?? '', parameters: t.inputSchema } }));

/** Plays one scenario: opens the session, calls tools (plan or model), verifies. */
export async function runAgent(opts: AgentOptions): Promise<AgentResult> {
  const base = opts.url.replace(/\/+$/, '');
  const token = opts.token ?? null;
  const opened = await post<Opened>(`${base}/sessions`, token, { scenario_id: opts.scenario });
  const client = new Client({ name: 'envfleet-mcp-agent', version: '0.1.0' });
  const transport = new StreamableHTTPClientTransport(new URL(opened.mcp_url), token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {});
  const transcript: AgentStep[] = [];
  let tools: Tool[];
  try {
    await client.connect(transport);
    const task = client.getInstructions() ?? opened.task;
    tools = (await client.listTools()).tools;
    const call = async (tool: string, args: Record<string, unknown>) => {
      const r = (await client.callTool({ name: tool, arguments: args })) as CallToolResult;
      const step = { tool, arguments: args, text: textOf(r), isError: r.isError === true };
      transcript.push(step);
      return step;
    };
    if (opts.plan) {
      for (const [tool, args] of opts.plan) await call(tool, args);
    } else if (opts.model) {
      const openai = new OpenAI({ ...(opts.baseURL ? { baseURL: opts.baseURL } : {}), apiKey: opts.apiKey || process.env['OPENAI_API_KEY'] || 'envfleet-local' });
      const messages: ChatCompletionMessageParam[] = [
        { role: 'system', content: 'Complete the given task step by step with the tools. When it is done, answer without a tool call.' },
        { role: 'user', content: task ?? '' },
      ];
      for (let turn = 0; turn < (opts.maxTurns ?? 20); turn++) {
        const reply = (await openai.chat.completions.create({ model: opts.model, messages, tools: asFunctionTools(tools) })).choices[0]?.message;
        if (!reply) break;
        messages.push(reply);
        const calls = (reply.tool_calls ?? []).filter(c => c.type === 'function');
        if (!calls.length) break;
        for (const c of calls) {
          let args: Record<string, unknown>;
          try {
            args = JSON.parse(c.function.arguments || '{}') as Record<string, unknown>;
          } catch {
            messages.push({ role: 'tool', tool_call_id: c.id, content: `The arguments are not JSON: ${c.function.arguments}` });
            continue;
          }
          messages.push({ role: 'tool', tool_call_id: c.id, content: (await call(c.function.name, args)).text });
        }
      }
    }
  } finally {
    await client.close();
  }
  const v = await post<Verified>(`${base}/sessions/${opened.session_id}/verify`, token);
  return { session_id: opened.session_id, task: opened.task, tools: tools.map(t => t.name), transcript, reward: v.reward, solved: v.envfleet.solved, checks: v.envfleet.checks.map(c => ({ item: c.item, passed: c.passed })), calls: v.envfleet.calls };
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { url: { type: 'string' }, scenario: { type: 'string' }, token: { type: 'string' }, plan: { type: 'string' }, model: { type: 'string' }, 'max-turns': { type: 'string' } },
  });
  if (!values.url || !values.scenario) throw new Error('usage: mcp-agent.ts --url URL --scenario ID [--plan JSON] [--model NAME] [--token T]');
  const result = await runAgent({
    url: values.url,
    scenario: values.scenario,
    token: values.token ?? env['ENVFLEET_SERVE_TOKEN'] ?? null,
    ...(values.plan ? { plan: JSON.parse(values.plan) as [string, Record<string, unknown>][] } : {}),
    ...(values.model ? { model: values.model } : {}),
    ...(values['max-turns'] ? { maxTurns: Number(values['max-turns']) } : {}),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2), process.env).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
