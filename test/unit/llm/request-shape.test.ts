import { expect } from 'chai';
import { pino } from 'pino';
import { z } from 'zod';
import { ConfigError, loadConfig, type AppConfig } from '../../../config/index.js';
import { runDoctor } from '../../../cli/doctor.js';
import { createModelGateway, type ModelGateway } from '../../../src/llm/gateway.js';
import { parseModelScript, startModelServer, type ModelServer, type ScriptRule } from '../../../src/model-server/index.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../../helpers/memory-ports.js';
import { rejection } from '../../helpers/assert.js';

/** A configuration whose models file is `models` (YAML), pointing at `url`. */
function configWith(models: string, url = 'http://127.0.0.1:1/v1'): AppConfig {
  return loadConfig({}, { overrides: { OPENAI_BASE_URL: url, ENVFLEET_MODELS_FILE: 'models.yaml', REDIS_URL: 'redis://127.0.0.1:6379' }, readFile: () => models });
}

/** Rules that make the scripted server behave like an endpoint that refuses some parameters, as OpenAI words it. */
const refuses = (param: string, message: string): ScriptRule => ({ name: `refuses-${param}`, matchAny: `"${param}"`, fault: { type: 'server_error', status: 400, message } });
const REFUSES_MAX_TOKENS = refuses('max_tokens', "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.");
const REFUSES_TEMPERATURE = refuses('temperature', "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.");

describe('request shapes: presets and fields per profile', () => {
  it('has these defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.profiles['rollout.policy'].request).to.deep.equal({ preset: null, tokenParam: 'max_tokens', sampling: true, reasoningEffort: null, extraBody: {}, structuredOutput: 'prompt', toolCallFormat: 'native', textToolChoice: 'none', logprobs: false, returnTokenIds: false, seed: false, sendReasoning: false, reasoningField: 'reasoning_content' });
  });

  it('layers the default profile, its preset, then the stage preset and fields', () => {
    const config = configWith(
      [
        'profiles:',
        '  default: { preset: vllm, extraBody: { chat_template_kwargs: { enable_thinking: false }, top_k: 20 }, toolCallFormat: hermes }',
        '  rollout.policy: { preset: openai-reasoning, reasoningEffort: low, extraBody: { top_k: 40 } }',
        '',
      ].join('\n'),
    );
    expect(config.profiles['mine.judge'].request).to.deep.equal({
      preset: 'vllm',
      tokenParam: 'max_tokens',
      sampling: true,
      reasoningEffort: null,
      extraBody: { chat_template_kwargs: { enable_thinking: false }, top_k: 20 },
      structuredOutput: 'json_schema',
      toolCallFormat: 'hermes',
      textToolChoice: 'none',
      logprobs: false,
      returnTokenIds: false,
      seed: false,
      sendReasoning: false,
      reasoningField: 'reasoning',
    });
    expect(config.profiles['rollout.policy'].request).to.deep.equal({
      preset: 'openai-reasoning',
      tokenParam: 'max_completion_tokens',
      sampling: false,
      reasoningEffort: 'low',
      extraBody: { chat_template_kwargs: { enable_thinking: false }, top_k: 40 },
      structuredOutput: 'json_schema',
      toolCallFormat: 'hermes',
      textToolChoice: 'none',
      logprobs: false,
      returnTokenIds: false,
      seed: false,
      sendReasoning: false,
      reasoningField: 'reasoning',
    });
  });

  it('refuses an unknown preset and extra body fields that envfleet sets itself, saying what to use', () => {
    const thrown = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (e) {
        return e;
      }
      return null;
    };
    let err = thrown(() => configWith('profiles:\n  default: { preset: openai-o1 }\n'));
    expect(err).to.be.instanceOf(ConfigError);
    expect(String(err)).to.match(/preset/).and.to.match(/openai-reasoning/);
    err = thrown(() => configWith('profiles:\n  rollout.policy: { extraBody: { max_tokens: 10, top_k: 5 } }\n'));
    expect(err).to.be.instanceOf(ConfigError);
    expect(String(err)).to.match(/extraBody may not set max_tokens/).and.to.match(/tokenParam/);
  });
});

describe('request shapes against endpoints that behave like each preset (scripted HTTP server)', function () {
  this.timeout(20_000);
  let server: ModelServer;
  afterEach(() => server?.close());

  async function gateway(rules: ScriptRule[], models: string): Promise<ModelGateway> {
    server = await startModelServer({ script: parseModelScript({ rules }) });
    const config = configWith(models, server.url);
    return createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
  }
  const ask = (g: ModelGateway) => g.chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'Bonjour — 你好 👋' }] });

  it('an endpoint that refuses max_tokens and temperature (OpenAI reasoning models): fails without the preset, answers with it', async () => {
    const rules = [REFUSES_MAX_TOKENS, REFUSES_TEMPERATURE, { name: 'ok', respond: { content: 'Salut 👋' } }];
    const err = await rejection(ask(await gateway(rules, 'profiles: {}\n')));
    expect(err).to.have.property('code', 'MODEL_BAD_REQUEST');
    expect(String(err)).to.match(/max_tokens/);
    await server.close();
    const g = await gateway(rules, 'profiles:\n  rollout.policy: { preset: openai-reasoning, reasoningEffort: high }\n');
    expect((await ask(g)).message.content).to.equal('Salut 👋');
    const body = server.log().at(-1)!.body as Record<string, unknown>;
    expect(body).to.include({ max_completion_tokens: 4096, reasoning_effort: 'high' });
    expect(body).not.to.have.any.keys('max_tokens', 'temperature');
  });

  it('sends an earlier turn\'s reasoning_content back only when the profile sets sendReasoning (DeepSeek\'s reasoner refuses it), and never changes the transcript', async () => {
    const messages = [
      { role: 'user' as const, content: 'Rends L1 — 归还 📚' },
      { role: 'assistant' as const, content: 'Fait ✅', reasoning_content: 'Il faut rendre L1 d’abord 🤔' },
      { role: 'user' as const, content: 'Merci' },
    ];
    const transcript = JSON.stringify(messages);
    const withoutIt = await gateway([{ name: 'refuses-reasoning', matchAny: '"reasoning_content"', fault: { type: 'server_error', status: 400, message: 'The reasoning_content is an intermediate result for display purposes only and will not be included in the context for inference' } }, { name: 'ok', respond: { content: 'ok' } }], 'profiles: {}\n');
    expect((await withoutIt.chat({ runId: 'r', stage: 'rollout.policy' }, { messages })).message.content).to.equal('ok');
    const sent = (server.log().at(-1)!.body as { messages: Record<string, unknown>[] }).messages;
    expect(sent[1]).to.deep.equal({ role: 'assistant', content: 'Fait ✅' });
    expect(JSON.stringify(messages), 'the caller\'s messages are untouched').to.equal(transcript);
    await server.close();
    const withIt = await gateway([{ name: 'ok', respond: { content: 'ok' } }], 'profiles:\n  rollout.policy: { sendReasoning: true }\n');
    await withIt.chat({ runId: 'r', stage: 'rollout.policy' }, { messages });
    expect((server.log().at(-1)!.body as { messages: Record<string, unknown>[] }).messages[1]).to.deep.include({ reasoning_content: 'Il faut rendre L1 d’abord 🤔' });
    await server.close();
    // vLLM ≥ 0.16 reads only `reasoning` on the messages it is sent (and drops reasoning_content): the vllm preset's field
    for (const models of ['profiles:\n  rollout.policy: { preset: vllm, sendReasoning: true }\n', 'profiles:\n  rollout.policy: { sendReasoning: true, reasoningField: reasoning }\n']) {
      const vllm = await gateway([{ name: 'ok', respond: { content: 'ok' } }], models);
      await vllm.chat({ runId: 'r', stage: 'rollout.policy' }, { messages });
      expect((server.log().at(-1)!.body as { messages: Record<string, unknown>[] }).messages[1], models).to.deep.equal({ role: 'assistant', content: 'Fait ✅', reasoning: 'Il faut rendre L1 d’abord 🤔' });
      await server.close();
    }
    expect(JSON.stringify(messages), 'the caller\'s messages are untouched').to.equal(transcript);
  });

  it('sends tool_choice "none" with the tools of a model whose calls come as text, and none at all to SGLang (which would hide the tools under "none")', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_book', description: 'Un livre — 书', parameters: { type: 'object', properties: {} } } }];
    const sent = async (models: string): Promise<Record<string, unknown>> => {
      const g = await gateway([{ name: 'ok', respond: { content: 'ok' } }], models);
      await g.chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'Livre 📚 ?' }], tools });
      const body = server.log().at(-1)!.body as Record<string, unknown>;
      await server.close();
      expect(body['tools'], models).to.deep.equal(tools);
      return body;
    };
    expect(await sent('profiles:\n  rollout.policy: { preset: vllm, toolCallFormat: hermes }\n')).to.include({ tool_choice: 'none' });
    expect(await sent('profiles:\n  rollout.policy: { toolCallFormat: auto }\n')).to.include({ tool_choice: 'none' });
    expect(await sent('profiles:\n  rollout.policy: { preset: sglang, toolCallFormat: hermes }\n')).not.to.have.any.keys('tool_choice');
    expect(await sent('profiles:\n  rollout.policy: { toolCallFormat: llama3, textToolChoice: omit }\n')).not.to.have.any.keys('tool_choice');
    expect(await sent('profiles:\n  rollout.policy: { preset: sglang, toolCallFormat: hermes, textToolChoice: none }\n')).to.include({ tool_choice: 'none' });
    // native calls: the endpoint's own default ("auto")
    expect(await sent('profiles:\n  rollout.policy: { preset: sglang }\n')).not.to.have.any.keys('tool_choice');
  });

  it('sends extra body fields (vLLM chat_template_kwargs, top_k) as they are written', async () => {
    const g = await gateway([{ name: 'ok', respond: { content: 'ok' } }], 'profiles:\n  default: { preset: vllm, extraBody: { chat_template_kwargs: { enable_thinking: false }, top_k: 20 } }\n');
    await ask(g);
    expect(server.log().at(-1)!.body).to.deep.include({ chat_template_kwargs: { enable_thinking: false }, top_k: 20, max_tokens: 4096, temperature: 1 });
  });

  it('an endpoint that enforces a JSON Schema gets the stage schema as response_format, and answers on-schema', async () => {
    const Answer = z.strictObject({ city: z.string(), population: z.number().int() });
    const rules: ScriptRule[] = [
      { name: 'guided', matchAny: '"response_format":\\{"type":"json_schema"', respond: { json: { city: 'São Paulo', population: 12_325_232 } } },
      { name: 'free', respond: { content: 'São Paulo, about 12 million people.' } },
    ];
    const g = await gateway(rules, 'profiles:\n  default: { preset: vllm }\n');
    const result = await g.structured({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'largest city of Brazil?' }], schema: Answer });
    expect(result).to.deep.include({ value: { city: 'São Paulo', population: 12_325_232 }, calls: 1 });
    const format = (server.log()[0]!.body as { response_format: { type: string; json_schema: { name: string; schema: { properties: Record<string, unknown>; required: string[] }; strict: boolean } } }).response_format;
    expect(format.type).to.equal('json_schema');
    expect(format.json_schema.name).to.equal('mine_topic');
    expect(format.json_schema.schema.properties).to.have.keys('city', 'population');
    expect(format.json_schema.schema.required).to.have.members(['city', 'population']);
    // Without the preset the schema is only in the prompt: prose costs a repair round.
    await server.close();
    const plain = await gateway(rules, 'profiles: {}\n');
    const err = await rejection(plain.structured({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'largest city of Brazil?' }], schema: Answer }));
    expect(err).to.have.property('code', 'MODEL_OUTPUT_INVALID');
    expect(server.log()[0]!.body).not.to.have.property('response_format');
  });

  it('drops keys the schema does not know instead of asking again, and tries every JSON block in the reply', async () => {
    const Answer = z.strictObject({ verdict: z.enum(['yes', 'no']), reason: z.string() });
    const g = await gateway(
      [
        { name: 'extra-keys', match: 'first', respond: { json: { verdict: 'yes', reason: 'état modifié — 状态', confidence: 0.9, explanation: 'because' } } },
        { name: 'two-blocks', match: 'second', respond: { content: 'A draft:\n```json\n{"draft": true}\n```\nFinal answer: {"verdict": "no", "reason": "rien à changer 🙂"}' } },
      ],
      'profiles: {}\n',
    );
    const first = await g.structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'first' }], schema: Answer });
    expect(first).to.deep.include({ value: { verdict: 'yes', reason: 'état modifié — 状态' }, calls: 1 });
    const second = await g.structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'second' }], schema: Answer });
    expect(second).to.deep.include({ value: { verdict: 'no', reason: 'rien à changer 🙂' }, calls: 1 });
    expect(server.log()).to.have.length(2);
  });

  it('envfleet doctor names the parameter an endpoint refused and the setting that fixes it', async () => {
    server = await startModelServer({ script: parseModelScript({ models: ['gpt-4o-mini', 'o4-mini', 'text-embedding-3-small'], rules: [REFUSES_MAX_TOKENS, { name: 'doctor', stage: 'doctor', respond: { json: { ok: true } } }] }) });
    const models = 'profiles:\n  rollout.policy: { model: o4-mini, preset: openai-reasoning }\n';
    const checks = await runDoctor(() => configWith(models, server.url));
    const shapes = checks.filter(c => c.name.startsWith('request shape'));
    const refused = shapes.find(c => c.status === 'fail')!;
    expect(refused.name).to.equal('request shape default gpt-4o-mini');
    expect(refused.detail).to.match(/refused "max_tokens"/).and.to.match(/tokenParam: max_completion_tokens/).and.to.match(/models\.yaml/);
    const reasoning = shapes.find(c => c.name.includes('o4-mini'))!;
    // (the agent's stage alone: probed with a tool, as its requests carry tools)
    expect(reasoning).to.deep.include({ status: 'ok', name: 'request shape default o4-mini (preset openai-reasoning) with tools' });
    expect(reasoning.detail).to.match(/max_completion_tokens/).and.to.match(/tools/).and.to.match(/rollout\.policy/);
  });

  it('envfleet doctor probes the agent\'s stage with a tool, as the workers send it: a model served without tool calls fails there with what to set', async () => {
    // vLLM without --enable-auto-tool-choice (its own words), Ollama with a model that takes no tools
    const vllm = { name: 'vllm-no-parser', matchAny: '^(?![\\s\\S]*"tool_choice":"none")[\\s\\S]*"tools"', fault: { type: 'server_error' as const, status: 400, message: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set' } };
    const ollama = { name: 'ollama-no-tools', matchAny: '"tools"', fault: { type: 'server_error' as const, status: 400, message: 'registry.ollama.ai/library/gemma:2b does not support tools' } };
    const ok = { name: 'ok', respond: { content: 'ok — 好' } };
    const run = async (rules: ScriptRule[], models: string) => {
      server = await startModelServer({ script: parseModelScript({ models: ['gpt-4o-mini', 'text-embedding-3-small'], rules: [...rules, ok] }) });
      const checks = await runDoctor(() => configWith(models, server.url));
      await server.close();
      return checks.filter(c => c.name.startsWith('request shape'));
    };
    const native = await run([vllm], 'profiles: {}\n');
    const policy = native.find(c => c.name.endsWith('with tools'))!;
    expect(policy.status).to.equal('fail');
    expect(policy.detail).to.include('refused "tools"').and.to.include('--enable-auto-tool-choice').and.to.include('set "toolCallFormat"').and.to.include('profiles rollout.policy');
    expect(native.filter(c => c !== policy).map(c => c.status), 'the other stages send no tools').to.deep.equal(['ok']);
    // served as text: tool_choice "none" gets through
    expect((await run([vllm], 'profiles:\n  rollout.policy: { toolCallFormat: hermes }\n')).map(c => c.status)).to.deep.equal(['ok', 'ok']);
    const refusing = (await run([ollama], 'profiles:\n  rollout.policy: { toolCallFormat: hermes }\n')).find(c => c.name.endsWith('with tools'))!;
    expect(refusing.status).to.equal('fail');
    expect(refusing.detail).to.include('refused "tools"').and.to.include('the model takes no tools at all').and.not.to.include('toolCallFormat');
    // an endpoint that refuses tool_choice "none" itself: leave it out
    const noNone = { name: 'refuses-none', matchAny: '"tool_choice":"none"', fault: { type: 'server_error' as const, status: 400, message: "Invalid value for 'tool_choice': 'none' is not supported by this server" } };
    const none = (await run([noNone], 'profiles:\n  rollout.policy: { toolCallFormat: hermes }\n')).find(c => c.name.endsWith('with tools'))!;
    expect(none.status).to.equal('fail');
    expect(none.detail).to.include('refused "tool_choice"').and.to.include('textToolChoice: omit');
  });
});
