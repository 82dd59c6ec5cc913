import { expect } from 'chai';
import { z } from 'zod';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { pino } from 'pino';
import { loadConfig } from '../../../config/index.js';
import { completionFromEventStream } from '../../../src/llm/chat-post.js';
import { createModelGateway, type ModelGateway } from '../../../src/llm/gateway.js';
import { createNodeFetch } from '../../../src/llm/node-fetch.js';
import type { EndpointLimiter } from '../../../src/llm/ports.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../../helpers/memory-ports.js';
import { rejection } from '../../helpers/assert.js';
import { dropPrefix, REDIS_URL, requireRedis } from '../../helpers/integration.js';
import { createRedisLedger } from '../../../src/llm/redis-ledger.js';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';

/**
 * The gateway posts chat completions itself (src/llm/chat-post.ts); with a client given (clientFor) it goes
 * through the openai client. Both must send the same request and end the same way on every answer a real
 * endpoint gives: success, each status with a JSON or a text body, a body that is not JSON, a compressed body,
 * a dropped connection, no answer, a refused connection, the caller's abort.
 */
describe('chat completions posted by the gateway against the openai client', function () {
  this.timeout(20_000);
  type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;
  let handler: Handler;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  let server: http.Server;
  let baseURL: string;

  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        handler(req, res, body);
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  beforeEach(() => (seen.length = 0));

  /** Leases taken and not given back, over every gateway of the test. */
  let held = 0;
  function countingLimiter(): EndpointLimiter {
    const inner = createMemoryLimiter();
    return {
      async acquire(endpoint, options) {
        await inner.acquire(endpoint, options);
        held += 1;
        let released = false;
        return {
          release: () => {
            if (!released) held -= 1;
            released = true;
            return Promise.resolve();
          },
        };
      },
      coolDown: (endpoint, ms) => inner.coolDown(endpoint, ms),
    };
  }
  beforeEach(() => (held = 0));
  afterEach(() => expect(held, 'leases still held').to.equal(0));

  function gateways(env: Record<string, string> = {}, url = baseURL): { own: ModelGateway; sdk: ModelGateway } {
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url, OPENAI_API_KEY: 'sk-test', ENVFLEET_MODEL_TIMEOUT_MS: '400', ...env } });
    const ports = () => ({ config, cache: createMemoryResponseCache(), limiter: countingLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const fetch = createNodeFetch();
    return {
      own: createModelGateway(ports()),
      sdk: createModelGateway({ ...ports(), clientFor: e => new OpenAI({ baseURL: e.baseURL, apiKey: e.apiKey, maxRetries: 0, timeout: e.timeoutMs, fetch }) }),
    };
  }

  const request = {
    messages: [
      { role: 'system' as const, content: 'Réponds en français 🙂' },
      { role: 'user' as const, content: '查一下 7 号书' },
    ],
    tools: [{ type: 'function' as const, function: { name: 'get_book', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } }],
  };
  const completion = {
    id: 'c1',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'Voilà 📚 第七本', refusal: null } }],
    usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
  };

  /** An answer with this status, headers and body. */
  const answer =
    (status: number, headers: http.OutgoingHttpHeaders, body?: string | Buffer): Handler =>
    (_req, res) => {
      res.writeHead(status, headers);
      res.end(body);
    };
  const json = { 'content-type': 'application/json' };

  it('sends the same request as the openai client and reads the same answer, with non-ASCII text both ways', async () => {
    handler = answer(200, json, JSON.stringify(completion));
    const { own, sdk } = gateways();
    const a = await own.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    const b = await sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    expect(a).to.deep.equal(b);
    expect(a.message.content).to.equal('Voilà 📚 第七本');
    const [first, second] = seen;
    expect(first!.method).to.equal('POST');
    expect(first!.url).to.equal(second!.url).and.to.equal('/v1/chat/completions');
    expect(first!.body).to.equal(second!.body);
    // Every header, the client's User-Agent and X-Stainless-* included.
    expect(first!.headers).to.deep.equal(second!.headers);
    expect(first!.headers['user-agent']).to.match(/^OpenAI\/JS /);
  });

  it('sends the same body as the openai client turn after turn of a growing conversation (remembered messages and tools written as they are)', async () => {
    handler = answer(200, json, JSON.stringify(completion));
    const { own, sdk } = gateways();
    const messages: ChatCompletionMessageParam[] = [...request.messages];
    for (let turn = 0; turn < 3; turn++) {
      seen.length = 0;
      await own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: `t${turn}` }, { ...request, messages: [...messages] });
      await sdk.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: `t${turn}` }, { ...request, messages: [...messages] });
      expect(seen).to.have.length(2);
      expect(seen[0]!.body).to.equal(seen[1]!.body);
      expect((JSON.parse(seen[0]!.body) as { messages: unknown[] }).messages).to.have.length(messages.length);
      messages.push(
        { role: 'assistant', content: null, tool_calls: [{ id: `c${turn}`, type: 'function', function: { name: 'get_book', arguments: `{"id":${turn},"note":"é\\u2028 🙂"}` } }] },
        { role: 'tool', tool_call_id: `c${turn}`, content: JSON.stringify({ title: `第${turn}本 — Ünïcödé`, empty: undefined }) },
      );
    }
    // What the gateway remembered cannot change under it.
    expect(() => { (messages[2] as { content: string | null }).content = 'changed'; }).to.throw(TypeError);
  });

  it("sends the headers the openai client takes from its environment (OPENAI_CUSTOM_HEADERS), as the client does", async () => {
    handler = answer(200, json, JSON.stringify(completion));
    process.env['OPENAI_CUSTOM_HEADERS'] = 'api-key: azure-style-key\nx-tenant: équipe-7';
    try {
      const { own, sdk } = gateways();
      await own.chat({ runId: 'r', stage: 'rollout.policy' }, request);
      await sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    } finally {
      delete process.env['OPENAI_CUSTOM_HEADERS'];
    }
    expect(seen[0]!.headers['api-key']).to.equal('azure-style-key');
    expect(seen[0]!.headers).to.deep.equal(seen[1]!.headers);
  });

  it('reads a body with a byte-order mark, and a JSON body not labelled as JSON (which the client would hand back as text)', async () => {
    handler = answer(200, json, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(completion))]));
    const { own, sdk } = gateways();
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy' }, request)).message.content).to.equal('Voilà 📚 第七本');
    expect((await sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request)).message.content).to.equal('Voilà 📚 第七本');
    handler = answer(200, { 'content-type': 'text/plain' }, JSON.stringify(completion));
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy' }, request)).message.content).to.equal('Voilà 📚 第七本');
    expect(await rejection(sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request))).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
  });

  it('reads a body in the charset its Content-Type names when its bytes are not UTF-8 (a proxy that re-encodes), and UTF-8 whatever the label when they are', async () => {
    const latin = { ...completion, choices: [{ ...completion.choices[0]!, message: { role: 'assistant', content: 'Café crème, naïve façade « ¿sí? » £5', refusal: null } }] };
    handler = answer(200, { 'content-type': 'application/json; charset=ISO-8859-1' }, Buffer.from(JSON.stringify(latin), 'latin1'));
    const { own } = gateways();
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'latin' }, request)).message.content).to.equal('Café crème, naïve façade « ¿sí? » £5');
    // A UTF-8 body labelled ISO-8859-1 (a label copied from a template) is still UTF-8.
    handler = answer(200, { 'content-type': 'application/json; charset=iso-8859-1' }, JSON.stringify(completion));
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'mislabelled' }, request)).message.content).to.equal('Voilà 📚 第七本');
    // Not UTF-8 and no charset, or one TextDecoder does not know: as before (U+FFFD for the bytes that are not UTF-8).
    handler = answer(200, { 'content-type': 'application/json; charset=x-unknown-charset' }, Buffer.from(JSON.stringify(latin), 'latin1'));
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'unknown' }, request)).message.content).to.equal('Caf\ufffd cr\ufffdme, na\ufffdve fa\ufffdade \ufffd \ufffds\ufffd? \ufffd \ufffd5');
  });

  it('does not cache a 2xx answer without a choice (null, an error object): every retry asks again', async () => {
    for (const body of ['null', JSON.stringify({ error: { message: 'upstream overloaded' } })]) {
      handler = answer(200, json, body);
      for (const gateway of Object.values(gateways())) {
        seen.length = 0;
        for (let attempt = 0; attempt < 2; attempt += 1) {
          const err = await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'sample-0:turn-1' }, request));
          expect(err, body).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
        }
        expect(seen, body).to.have.length(2);
      }
    }
  });

  it("keeps the message of an error body without an `error` member (vLLM's, SGLang's, a FastAPI server's), which the openai client reads as no body", async () => {
    const vllm = { object: 'error', message: "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens — 请缩短", type: 'BadRequestError', param: null, code: 400 };
    handler = answer(400, json, JSON.stringify(vllm));
    const { own } = gateways();
    const a = await rejection(own.chat({ runId: 'r', stage: 'rollout.policy' }, request));
    expect(a).to.have.property('code', 'MODEL_BAD_REQUEST');
    expect((a as Error).message).to.include("This model's maximum context length is 8192 tokens").and.to.include('请缩短').and.not.to.include('no body');
    // and what to change: the episode ends model-error on it, with nothing else to go by
    expect((a as Error).message).to.include("do not fit the model's context: lower the maxTokens of the rollout.policy profile (ENVFLEET_MODELS_FILE), cut an episode's length (envfleet rollouts --max-steps, --max-tokens)");
    // a synthesis stage has no episode to cut
    const synth = await rejection(own.structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ a: z.number() }) }));
    expect((synth as Error).message).to.include('lower the maxTokens of the mine.judge profile (ENVFLEET_MODELS_FILE), or serve the model with a longer context').and.not.to.include('--max-steps');
    handler = answer(422, json, JSON.stringify({ detail: [{ loc: ['body', 'messages'], msg: 'field required' }] }));
    const other = ((await rejection(own.chat({ runId: 'r', stage: 'rollout.policy' }, request))) as Error).message;
    expect(other).to.include('field required').and.not.to.include('context');
    handler = answer(422, json, JSON.stringify({ error: 'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 512 `max_new_tokens`', error_type: 'validation' }));
    expect(((await rejection(own.chat({ runId: 'r', stage: 'rollout.policy' }, request))) as Error).message).to.include("do not fit the model's context");
  });

  it('puts together an event stream answered though no stream was asked for (a proxy set to stream): text, reasoning, tool calls by index, finish reason and usage', async () => {
    const chunk = (delta: object, extra: object = {}) => `data: ${JSON.stringify({ id: 'c9', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;
    const stream =
      chunk({ role: 'assistant', reasoning_content: 'Je ' }) +
      chunk({ reasoning_content: 'cherche 📚' }) +
      chunk({ content: 'Voilà ' }) +
      chunk({ content: '第七本' }) +
      chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_book', arguments: '{"id"' } }] }) +
      chunk({ tool_calls: [{ index: 0, function: { arguments: ': 7}' } }] }) +
      `data: ${JSON.stringify({ id: 'c9', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] })}\n\n` +
      `data: ${JSON.stringify({ id: 'c9', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 } })}\n\n` +
      'data: [DONE]\n\n';
    handler = answer(200, { 'content-type': 'text/event-stream; charset=utf-8' }, stream);
    const { own } = gateways();
    const result = await own.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    expect(result.message.content).to.equal('Voilà 第七本');
    expect(result.message.reasoning_content).to.equal('Je cherche 📚');
    expect(result.message.tool_calls).to.deep.equal([{ id: 'call_1', type: 'function', function: { name: 'get_book', arguments: '{"id": 7}' } }]);
    expect(result.finishReason).to.equal('tool_calls');
    expect(result.usage).to.deep.include({ promptTokens: 12, completionTokens: 9 });
    // Logprobs and token ids of the chunks are kept, joined.
    const lp = (token: string) => ({ token, logprob: -0.5, bytes: null, top_logprobs: [] });
    const withLogprobs = [`data: ${JSON.stringify({ id: 'c8', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'Oui' }, logprobs: { content: [lp('Oui')] }, token_ids: [11], finish_reason: null }] })}`, `data: ${JSON.stringify({ id: 'c8', created: 1, model: 'm', choices: [{ index: 0, delta: { content: ' !' }, logprobs: { content: [lp(' !')] }, token_ids: [12], finish_reason: 'stop' }] })}`, 'data: [DONE]', ''].join('\n\n');
    handler = answer(200, { 'content-type': 'text/event-stream' }, withLogprobs);
    const joined = await own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'lp' }, request);
    expect(joined.message.content).to.equal('Oui !');
    const whole = completionFromEventStream(withLogprobs).choices[0]! as { logprobs: { content: unknown[] }; token_ids?: number[] };
    expect(whole.logprobs.content).to.deep.equal([lp('Oui'), lp(' !')]);
    expect(whole.token_ids).to.deep.equal([11, 12]);
    // TGI streams a delta's tool call as one object, not an array of them (it was "object is not iterable").
    const tgi =
      chunk({ role: 'assistant', tool_calls: { index: 0, id: '', type: 'function', function: { name: 'get_book', arguments: '{"titre": "' } } }) +
      chunk({ tool_calls: { index: 0, id: '', type: 'function', function: { name: null, arguments: 'Le Petit Prince 🌹"}' } } }) +
      `data: ${JSON.stringify({ id: 'c9', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] })}\n\n` +
      'data: [DONE]\n\n';
    expect(completionFromEventStream(tgi).choices[0]!.message.tool_calls).to.deep.equal([{ id: '', type: 'function', function: { name: 'get_book', arguments: '{"titre": "Le Petit Prince 🌹"}' } }]);
    // arguments sent whole, as an object, are their JSON text
    const objectArgs = chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'c2', type: 'function', function: { name: 'get_book', arguments: { titre: 'Vol de nuit ✈️' } } }] }) + `data: ${JSON.stringify({ id: 'c9', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] })}\n\n`;
    expect(completionFromEventStream(objectArgs).choices[0]!.message.tool_calls).to.deep.equal([{ id: 'c2', type: 'function', function: { name: 'get_book', arguments: '{"titre":"Vol de nuit ✈️"}' } }]);
    // A stream cut short (no finish reason, no [DONE]) is no answer: half of one would be taken for the whole.
    handler = answer(200, { 'content-type': 'text/event-stream' }, chunk({ role: 'assistant', content: 'Je commence à' }));
    const cut = await rejection(own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'cut' }, request));
    expect(cut).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
    expect((cut as Error).message).to.include('ended before its end');
    // An error event in the stream is said, as a body that cannot be read.
    handler = answer(200, { 'content-type': 'text/event-stream' }, `data: ${JSON.stringify({ error: { message: 'upstream gone' } })}\n\n`);
    const err = await rejection(own.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'other' }, request));
    expect(err).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
    expect((err as Error).message).to.include('upstream gone');
  });

  it('counts an answer that cannot be read (not JSON, a stream cut short) or comes too late in the ledger, as a request without token usage, each retry too', async () => {
    await requireRedis();
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: 'sk-test', ENVFLEET_MODEL_TIMEOUT_MS: '400' } });
    const redis = new Redis(REDIS_URL);
    const prefix = `envfleet-test-unreadable-${randomUUID().slice(0, 8)}`;
    try {
      const ledger = createRedisLedger(redis, prefix);
      const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: countingLimiter(), ledger, logger: pino({ level: 'silent' }) });
      handler = answer(200, json, '<html>proxy error</html>');
      for (let attempt = 0; attempt < 2; attempt += 1) expect(await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy' }, request))).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
      handler = answer(200, { 'content-type': 'text/event-stream' }, `data: ${JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content: 'à moi' }, finish_reason: null }] })}\n\n`);
      expect(await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy' }, request))).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
      expect(await ledger.totals('r')).to.deep.include({ requests: 3, cachedRequests: 0, unmeteredRequests: 3, promptTokens: 0, completionTokens: 0 });
      // No answer in time from an endpoint that serves (it lists its models): it goes on, and bills, after this side
      // stops waiting; the request was in no count.
      const models = answer(200, json, JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model' }] }));
      handler = (req, res, body) => (req.url?.endsWith('/models') ? models(req, res, body) : undefined);
      expect(await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'late' }, request))).to.have.property('code', 'MODEL_TIMEOUT');
      expect(await ledger.totals('r')).to.deep.include({ requests: 4, unmeteredRequests: 4 });
    } finally {
      await dropPrefix(prefix);
      redis.disconnect();
    }
  });

  it('hands on a tool call without a function as it came (a server that sent one), with no TypeError of its own', async () => {
    const odd = { ...completion, choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'c1', type: 'function', function: null }] } }] };
    handler = answer(200, json, JSON.stringify(odd));
    const { own } = gateways();
    const got = await own.chat({ runId: 'r', stage: 'rollout.policy' }, request).then(
      r => r.message.tool_calls,
      (err: unknown) => err,
    );
    expect(got).to.not.be.instanceOf(TypeError);
  });

  it('puts together the stream shapes servers send: ids and names repeated on every delta, deltas without an index, prompt token ids on the first chunk; a choice cut short or a null chunk is no answer', () => {
    const at = (chunks: object[], end = 'data: [DONE]') => [...chunks.map(c => `data: ${JSON.stringify(c)}`), end, ''].join('\r\n\r\n');
    const delta = (d: object, finish: string | null = null, extra: object = {}) => ({ id: 'x', created: 1, model: 'm', choices: [{ index: 0, delta: d, finish_reason: finish }], ...extra });
    const repeated = completionFromEventStream(at([
      delta({ role: 'assistant', tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'f', arguments: '' } }] }, null, { prompt_token_ids: [1, 2, 3] }),
      delta({ tool_calls: [{ index: 0, id: 'c1', function: { name: 'f', arguments: '{"a":' } }] }),
      delta({ tool_calls: [{ index: 0, id: 'c1', function: { name: 'f', arguments: '1}' } }] }, 'tool_calls'),
    ]));
    expect(repeated.choices[0]!.message.tool_calls).to.deep.equal([{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }]);
    expect((repeated as unknown as { prompt_token_ids: number[] }).prompt_token_ids).to.deep.equal([1, 2, 3]);
    const noIndex = completionFromEventStream(at([
      delta({ tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '' } }] }),
      delta({ tool_calls: [{ id: 'c1', function: { arguments: '{"a":' } }] }),
      delta({ tool_calls: [{ function: { arguments: '1}' } }] }),
      delta({ tool_calls: [{ id: 'c2', type: 'function', function: { name: 'g', arguments: '{}' } }] }, 'tool_calls'),
    ]));
    expect(noIndex.choices[0]!.message.tool_calls!.map(c => (c as { function: object }).function)).to.deep.equal([{ name: 'f', arguments: '{"a":1}' }, { name: 'g', arguments: '{}' }]);
    // Magistral streams its thinking as lists of parts in delta.content, then its answer (as parts or text): the
    // thinking is the reasoning, the text the content (both were dropped: content was read only as a string).
    const thought = (text: string) => ({ content: [{ type: 'thinking', thinking: [{ type: 'text', text }] }] });
    const magistral = completionFromEventStream(at([
      delta({ role: 'assistant', ...thought('Le client veut ') }),
      delta(thought('le livre 7 — vérifions 📚')),
      delta({ content: [{ type: 'text', text: 'Voici le ' }] }),
      delta({ content: 'livre 7.' }, 'stop'),
    ]));
    expect(magistral.choices[0]!.message).to.deep.include({ content: 'Voici le livre 7.', reasoning_content: 'Le client veut le livre 7 — vérifions 📚' });
    const two = (finish: string | null) => ({ id: 'x', choices: [{ index: 0, delta: { content: 'a' }, finish_reason: 'stop' }, { index: 1, delta: { content: 'b' }, finish_reason: finish }] });
    expect(() => completionFromEventStream(at([two(null)], ''))).to.throw(SyntaxError, /ended before its end/);
    expect(completionFromEventStream(at([two('stop')], '')).choices).to.have.length(2);
    expect(() => completionFromEventStream(at([delta({ content: 'a' }, 'stop')], 'data: null'))).to.throw(SyntaxError, /where a chunk was due/);
  });

  it('reads a gzip-compressed answer', async () => {
    handler = answer(200, { ...json, 'content-encoding': 'gzip' }, gzipSync(JSON.stringify(completion)));
    const { own } = gateways();
    expect((await own.chat({ runId: 'r', stage: 'rollout.policy' }, request)).message.content).to.equal('Voilà 📚 第七本');
  });

  // `outage`: the code when the endpoint has answered nothing since the request went out (MODEL_UNAVAILABLE: waited for).
  const failures: { name: string; handler: Handler; code: string; outage?: string }[] = [
    { name: '429 with retry-after and a JSON error', handler: answer(429, { ...json, 'retry-after': '3' }, JSON.stringify({ error: { message: 'Trop de requêtes — 慢一点', type: 'rate_limit' } })), code: 'MODEL_RATE_LIMITED' },
    { name: '401 with a JSON error', handler: answer(401, json, JSON.stringify({ error: { message: 'bad key', code: 'invalid_api_key' } })), code: 'MODEL_AUTH' },
    { name: '404 with a text body', handler: answer(404, { 'content-type': 'text/plain' }, 'no such model: ünknown'), code: 'MODEL_NOT_FOUND' },
    { name: '500 with an HTML body', handler: answer(500, { 'content-type': 'text/html' }, '<html><body>upstream error</body></html>'), code: 'MODEL_SERVER_ERROR', outage: 'MODEL_UNAVAILABLE' },
    { name: '503 with an empty body', handler: answer(503, {}), code: 'MODEL_SERVER_ERROR', outage: 'MODEL_UNAVAILABLE' },
    { name: '400 whose JSON body is not an error object', handler: answer(400, json, '"context too long"'), code: 'MODEL_BAD_REQUEST' },
    { name: '200 whose body is cut JSON', handler: answer(200, json, JSON.stringify(completion).slice(0, 40)), code: 'MODEL_RESPONSE_MALFORMED' },
    { name: 'a connection dropped before any answer', handler: req => req.socket.destroy(), code: 'MODEL_CONNECTION', outage: 'MODEL_UNAVAILABLE' },
    { name: 'no answer within the timeout', handler: () => undefined, code: 'MODEL_TIMEOUT', outage: 'MODEL_UNAVAILABLE' },
  ];

  const other = { messages: [{ role: 'user' as const, content: 'another request 🙂' }] };

  for (const f of failures) {
    it(`ends like the openai client on ${f.name}, with nothing else answered (an outage) and while other requests are answered (its own)`, async () => {
      // One request's answer each (not sent again at once: ENVFLEET_MODEL_RETRIES 0), as the openai client gives it.
      const { own, sdk } = gateways({ ENVFLEET_RATE_LIMIT_FALLBACK_MS: '1', ENVFLEET_MODEL_RETRIES: '0' });
      // With no answer from the endpoint since it was sent: an outage, if the failure can be one.
      handler = f.handler;
      const a = await rejection(own.chat({ runId: 'r', stage: 'rollout.policy' }, request));
      const b = await rejection(sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request));
      const code = f.outage ?? f.code;
      for (const e of [a, b]) expect(e, 'nothing else answered').to.have.property('code', code);
      expect((a as Error).message).to.equal((b as Error).message);
      expect((a as { retryAfterMs?: number }).retryAfterMs).to.equal((b as { retryAfterMs?: number }).retryAfterMs);
      if (code === 'MODEL_RATE_LIMITED') expect(a).to.have.property('retryAfterMs', 3000);
      if (code === 'MODEL_UNAVAILABLE') expect((a as Error).message).to.include('no answer from it yet in this worker process');

      // While the endpoint answers another request (sent after this one arrived, answered before this one fails): its own.
      // (Not after a 429, which cools the endpoint for its Retry-After whatever else answered.)
      if (code === 'MODEL_RATE_LIMITED') return;
      await new Promise(resolve => setTimeout(resolve, 5)); // past the 1 ms the outage cooled the endpoint for
      const own2: Error[] = [];
      for (const gateway of [own, sdk]) {
        let arrived!: () => void;
        const failingArrived = new Promise<void>(resolve => (arrived = resolve));
        let good!: () => void;
        const otherAnswered = new Promise<void>(resolve => (good = resolve));
        handler = (req, res, body) => {
          if (body.includes('another request')) {
            answer(200, json, JSON.stringify(completion))(req, res, body);
            res.on('finish', () => setTimeout(good, 5));
            return;
          }
          arrived();
          void otherAnswered.then(() => f.handler(req, res, body));
        };
        const failing = rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'own' }, request));
        await failingArrived;
        await gateway.chat({ runId: 'r', stage: 'rollout.policy' }, other);
        own2.push((await failing) as Error);
      }
      for (const e of own2) expect(e, 'other requests answered').to.have.property('code', f.code);
      expect(own2[0]!.message).to.equal(own2[1]!.message);
      // A timeout names the setting that sets it, and what to do.
      if (f.code === 'MODEL_TIMEOUT') expect(own2[0]!.message).to.match(/^no answer within \d+ ms \(ENVFLEET_MODEL_TIMEOUT_MS\) from .*: raise it for a model that takes longer/);
    });
  }

  it('ends like the openai client when the endpoint refuses connections', async () => {
    const closed = http.createServer();
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>(resolve => closed.close(() => resolve()));
    const { own, sdk } = gateways({}, `http://127.0.0.1:${port}/v1`);
    const a = await rejection(own.chat({ runId: 'r', stage: 'rollout.policy' }, request));
    const b = await rejection(sdk.chat({ runId: 'r', stage: 'rollout.policy' }, request));
    expect(a).to.have.property('code', 'MODEL_UNREACHABLE');
    expect((a as Error).message).to.equal((b as Error).message);
  });

  it("stops at the caller's abort, before and during the request", async () => {
    handler = () => undefined;
    const { own, sdk } = gateways({ ENVFLEET_MODEL_TIMEOUT_MS: '10000' });
    for (const gateway of [own, sdk]) {
      const early = new AbortController();
      early.abort();
      expect(await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy', signal: early.signal }, request))).to.have.property('code', 'JOB_ABORTED');
      const late = new AbortController();
      const pending = gateway.chat({ runId: 'r', stage: 'rollout.policy', signal: late.signal }, request);
      while (seen.length === 0) await new Promise(resolve => setTimeout(resolve, 5));
      late.abort();
      expect(await rejection(pending)).to.have.property('code', 'JOB_ABORTED');
      seen.length = 0;
    }
  });
});
