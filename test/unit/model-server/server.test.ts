import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cosineSimilarity,
  embeddingFromBase64,
  hashEmbedding,
  ModelScriptError,
  startModelServer,
  type ModelScript,
  type ModelServer,
  type ReceivedRequest,
} from '../../../src/model-server/index.js';
import { apiError, chat, completion, content, get, post, record, waitUntil, type JsonReply } from './helpers.js';

describe('model-server: HTTP server', () => {
  let server: ModelServer | undefined;

  async function start(script: ModelScript, options: { apiKey?: string; logFile?: string; onLog?: (entry: ReceivedRequest) => void } = {}): Promise<ModelServer> {
    server = await startModelServer({ script, ...options });
    return server;
  }

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  describe('basics', () => {
    it('listens on a free port of 127.0.0.1 and exposes a /v1 url', async () => {
      const s = await start({ rules: [] });
      expect(s.port).to.be.greaterThan(0);
      expect(s.host).to.equal('127.0.0.1');
      expect(s.url).to.equal(`http://127.0.0.1:${s.port}/v1`);
    });

    it('answers the health endpoint', async () => {
      const s = await start({ rules: [] });
      const reply = await get(s, '/_envfleet/health');
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ ok: true });
    });

    it('returns 404 in OpenAI error format for unknown paths and methods', async () => {
      const s = await start({ rules: [] });
      for (const reply of [await get(s, '/v1/nope'), await get(s, '/elsewhere'), await get(s, '/v1/chat/completions')]) {
        expect(reply.status).to.equal(404);
        expect(apiError(reply).type).to.equal('invalid_request_error');
        expect(apiError(reply).message).to.match(/Unknown request URL/);
      }
    });

    it('returns 400 in OpenAI error format for an invalid JSON body', async () => {
      const s = await start({ rules: [{ respond: { content: 'x' } }] });
      const reply = await post(s, '/v1/chat/completions', '{"model": "scripted", ');
      expect(reply.status).to.equal(400);
      expect(apiError(reply).type).to.equal('invalid_request_error');
      expect(apiError(reply).message).to.match(/could not parse the JSON body/);
      expect(s.log()[0]).to.include({ status: 400, body: null });
    });

    it('returns 400 naming the param for a structurally invalid request', async () => {
      const s = await start({ rules: [{ respond: { content: 'x' } }] });
      const reply = await post(s, '/v1/chat/completions', { model: 'scripted', messages: 'hi' });
      expect(reply.status).to.equal(400);
      expect(apiError(reply).param).to.equal('messages');
      const notObject = await post(s, '/v1/chat/completions', '[1, 2]');
      expect(notObject.status).to.equal(400);
      expect(apiError(notObject).message).to.match(/must be a JSON object/);
    });

    it('refuses streaming requests with an explicit message', async () => {
      const s = await start({ rules: [{ respond: { content: 'x' } }] });
      const reply = await chat(s, 'hi', { extra: { stream: true } });
      expect(reply.status).to.equal(400);
      expect(apiError(reply).type).to.equal('invalid_request_error');
      expect(apiError(reply).message).to.match(/streaming is not supported by the scripted server/i);
    });

    it('validates scripts given programmatically', async () => {
      const bad = { rules: [{ respond: {} }] } as unknown as ModelScript;
      let caught: unknown;
      try {
        await startModelServer({ script: bad });
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(ModelScriptError);
      expect((caught as Error).message).to.match(/rules\[0\]\.respond: a response needs at least one of content, json or toolCalls/);
    });

    it('fails to start when the port is taken', async () => {
      const s = await start({ rules: [] });
      let caught: unknown;
      try {
        const second = await startModelServer({ script: { rules: [] }, port: s.port });
        await second.close();
      } catch (err) {
        caught = err;
      }
      expect((caught as NodeJS.ErrnoException | undefined)?.code).to.equal('EADDRINUSE');
    });
  });

  describe('chat completions', () => {
    it('answers in the OpenAI chat.completion shape, echoing the model', async () => {
      const s = await start({ rules: [{ respond: { content: 'hello', reasoning: 'thinking...' } }] });
      const reply = await chat(s, 'hi', { model: 'gpt-4o-mini' });
      expect(reply.status).to.equal(200);
      expect(reply.headers.get('content-type')).to.equal('application/json');
      const body = completion(reply);
      expect(body.object).to.equal('chat.completion');
      expect(body.id).to.match(/^chatcmpl-/);
      expect(body.model).to.equal('gpt-4o-mini');
      expect(record(body)['created']).to.be.a('number');
      expect(body.choices).to.have.length(1);
      expect(body.choices[0]).to.deep.include({ index: 0, finish_reason: 'stop' });
      expect(body.choices[0]?.message).to.deep.include({ role: 'assistant', content: 'hello', reasoning_content: 'thinking...' });
      expect(body.choices[0]?.message).not.to.have.property('tool_calls');
    });

    it('serializes json responses and tool calls (object arguments serialized, strings verbatim)', async () => {
      const s = await start({
        rules: [
          { match: 'json', respond: { json: { verdict: 'yes', score: 3 } } },
          {
            match: 'tools',
            respond: { toolCalls: [{ name: 'get_book', arguments: { id: 1 } }, { name: 'broken', arguments: '{"id": ' }, { name: 'noargs' }] },
          },
        ],
      });
      expect(JSON.parse(content(await chat(s, 'give me json')) ?? '')).to.deep.equal({ verdict: 'yes', score: 3 });
      const body = completion(await chat(s, 'use tools'));
      const choice = body.choices[0]!;
      expect(choice.finish_reason).to.equal('tool_calls');
      expect(choice.message.content).to.equal(null);
      const calls = choice.message.tool_calls!;
      expect(calls.map((call) => call.type)).to.deep.equal(['function', 'function', 'function']);
      expect(calls.map((call) => call.function)).to.deep.equal([
        { name: 'get_book', arguments: '{"id":1}' },
        { name: 'broken', arguments: '{"id": ' },
        { name: 'noargs', arguments: '{}' },
      ]);
      for (const call of calls) expect(call.id).to.match(/^call_/);
      expect(new Set(calls.map((call) => call.id)).size).to.equal(3);
    });

    it('honours a finishReason override', async () => {
      const s = await start({ rules: [{ respond: { content: 'cut', finishReason: 'length' } }] });
      expect(completion(await chat(s, 'hi')).choices[0]?.finish_reason).to.equal('length');
    });

    it('estimates usage as ceil(chars/4) by default', async () => {
      const s = await start({ rules: [{ respond: { content: 'abcdefghi' } }] });
      const tools = [{ type: 'function', function: { name: 'f', parameters: {} } }];
      const messages = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello' }];
      const reply = await post(s, '/v1/chat/completions', { model: 'scripted', messages, tools });
      const expectedPrompt = Math.ceil((JSON.stringify(messages) + JSON.stringify(tools)).length / 4);
      expect(completion(reply).usage).to.deep.equal({ prompt_tokens: expectedPrompt, completion_tokens: 3, total_tokens: expectedPrompt + 3 });
    });

    it('uses fixed default usage and per-response usage overrides', async () => {
      const s = await start({
        defaults: { usage: { prompt_tokens: 100, completion_tokens: 7 } },
        rules: [
          { match: 'override', respond: { content: 'x', usage: { prompt_tokens: 10, completion_tokens: 5 } } },
          { respond: { content: 'y' } },
        ],
      });
      expect(completion(await chat(s, 'override')).usage).to.deep.equal({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
      expect(completion(await chat(s, 'plain')).usage).to.deep.equal({ prompt_tokens: 100, completion_tokens: 7, total_tokens: 107 });
    });

    it('returns n choices, each from the next response in sequence', async () => {
      const s = await start({
        rules: [{ responses: [{ content: 'one' }, { content: 'two' }, { content: 'three' }], times: 5 }, { respond: { content: 'fallback' } }],
      });
      const first = completion(await chat(s, 'hi', { extra: { n: 2 } }));
      expect(first.choices.map((choice) => [choice.index, choice.message.content])).to.deep.equal([[0, 'one'], [1, 'two']]);
      // Uses 3, 4 and 5 of the rule (the last response repeats), then the rule is exhausted.
      const second = completion(await chat(s, 'hi', { extra: { n: 4 } }));
      expect(second.choices.map((choice) => choice.message.content)).to.deep.equal(['three', 'three', 'three', 'fallback']);
      expect(second.usage.completion_tokens).to.equal(2 + 2 + 2 + 2);
    });

    it('rejects a request when no rule matches, naming stage and last user message', async () => {
      const s = await start({ rules: [{ stage: 'mine.judge', respond: { content: 'x' } }] });
      const long = `please ${'x'.repeat(200)}`;
      const reply = await chat(s, long, { stage: 'rollout.agent' });
      expect(reply.status).to.equal(400);
      const err = apiError(reply);
      expect(err.type).to.equal('invalid_request_error');
      expect(err.code).to.equal('no_rule_matched');
      expect(err.message).to.equal(`no scripted rule matches stage "rollout.agent" and last user message "${long.slice(0, 120)}"`);
    });
  });

  describe('rule matching', () => {
    it('matches the regex case-insensitively against the last user message only', async () => {
      const s = await start({ rules: [{ name: 'books', match: 'library|book', respond: { content: 'books' } }, { respond: { content: 'other' } }] });
      expect(content(await chat(s, 'Find a BOOK please'))).to.equal('books');
      expect(content(await chat(s, 'nothing here'))).to.equal('other');
      const messages = [
        { role: 'user', content: 'library' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'text', text: 'what about' }, { type: 'text', text: 'the weather' }] },
      ];
      const reply = await post(s, '/v1/chat/completions', { model: 'scripted', messages });
      expect(content(reply)).to.equal('other');
      expect(s.log().at(-1)?.lastUserMessage).to.equal('what about\nthe weather');
    });

    it('matchAny tests the whole serialized request body', async () => {
      const s = await start({ rules: [{ matchAny: '"name":"get_weather"', respond: { content: 'has weather tool' } }, { respond: { content: 'no tool' } }] });
      const tools = [{ type: 'function', function: { name: 'get_weather', parameters: {} } }];
      expect(content(await chat(s, 'hi', { extra: { tools } }))).to.equal('has weather tool');
      expect(content(await chat(s, 'hi'))).to.equal('no tool');
    });

    it('matches stages exactly or by glob, and requires the header when a stage is set', async () => {
      const s = await start({
        rules: [
          { stage: 'mine.judge', respond: { content: 'judge' } },
          { stage: 'mine.*', respond: { content: 'mine-any' } },
          { stage: '*.agent', respond: { content: 'agent' } },
          { respond: { content: 'no-stage' } },
        ],
      });
      expect(content(await chat(s, 'hi', { stage: 'mine.judge' }))).to.equal('judge');
      expect(content(await chat(s, 'hi', { stage: 'mine.propose' }))).to.equal('mine-any');
      expect(content(await chat(s, 'hi', { stage: 'rollout.agent' }))).to.equal('agent');
      expect(content(await chat(s, 'hi', { stage: 'mine' }))).to.equal('no-stage');
      expect(content(await chat(s, 'hi', { stage: 'mine.judge.extra' }))).to.equal('mine-any');
      expect(content(await chat(s, 'hi', { stage: 'MINE.judge' }))).to.equal('no-stage');
      expect(content(await chat(s, 'hi'))).to.equal('no-stage');
    });

    it('treats regex metacharacters in stage globs literally', async () => {
      const s = await start({ rules: [{ stage: 'a.b', respond: { content: 'exact' } }, { respond: { content: 'other' } }] });
      expect(content(await chat(s, 'hi', { stage: 'aXb' }))).to.equal('other');
      expect(content(await chat(s, 'hi', { stage: 'a.b' }))).to.equal('exact');
    });

    it('matches the model exactly', async () => {
      const s = await start({ rules: [{ model: 'gpt-4o-mini', respond: { content: 'mini' } }, { respond: { content: 'default' } }] });
      expect(content(await chat(s, 'hi', { model: 'gpt-4o-mini' }))).to.equal('mini');
      expect(content(await chat(s, 'hi', { model: 'gpt-4o' }))).to.equal('default');
    });

    it('steps through responses and repeats the last one', async () => {
      const s = await start({ rules: [{ responses: [{ content: 'first' }, { content: 'second' }] }] });
      const got: (string | null)[] = [];
      for (let i = 0; i < 4; i++) got.push(content(await chat(s, 'hi')));
      expect(got).to.deep.equal(['first', 'second', 'second', 'second']);
    });

    it('skips a rule once its times are used up', async () => {
      const s = await start({ rules: [{ name: 'twice', times: 2, respond: { content: 'limited' } }, { name: 'rest', respond: { content: 'rest' } }] });
      const got: (string | null)[] = [];
      for (let i = 0; i < 3; i++) got.push(content(await chat(s, 'hi')));
      expect(got).to.deep.equal(['limited', 'limited', 'rest']);
      expect(s.log().map((entry) => entry.rule)).to.deep.equal(['twice', 'twice', 'rest']);
    });

    it('reset() and POST /_envfleet/reset restart counters and clear the log', async () => {
      const s = await start({ rules: [{ times: 1, respond: { content: 'once' } }, { respond: { content: 'after' } }] });
      expect(content(await chat(s, 'hi'))).to.equal('once');
      expect(content(await chat(s, 'hi'))).to.equal('after');
      s.reset();
      expect(s.log()).to.deep.equal([]);
      expect(content(await chat(s, 'hi'))).to.equal('once');
      expect((await post(s, '/_envfleet/reset', {})).body).to.deep.equal({ ok: true });
      expect(s.log()).to.deep.equal([]);
      expect(content(await chat(s, 'hi'))).to.equal('once');
      expect(s.log()[0]?.seq).to.equal(1);
    });

    it('setScript() swaps the rules and restarts counters', async () => {
      const s = await start({ rules: [{ respond: { content: 'old' } }] });
      expect(content(await chat(s, 'hi'))).to.equal('old');
      s.setScript({ models: ['new-model'], rules: [{ respond: { content: 'new' } }] });
      expect(content(await chat(s, 'hi'))).to.equal('new');
      expect(() => s.setScript({ rules: [{ match: '(', respond: { content: 'x' } }] })).to.throw(ModelScriptError, /rules\[0\]\.match: not a valid regular expression/);
      expect(content(await chat(s, 'hi'))).to.equal('new');
    });

    it('inject() puts rules ahead of the script and keeps every counter', async () => {
      const s = await start({ rules: [{ name: 'seq', responses: [{ content: 'one' }, { content: 'two' }, { content: 'three' }] }] });
      expect(content(await chat(s, 'hi'))).to.equal('one');
      s.inject([{ times: 2, fault: { type: 'server_error', status: 503 } }]);
      expect((await chat(s, 'hi')).status).to.equal(503);
      expect((await chat(s, 'hi')).status).to.equal(503);
      expect(content(await chat(s, 'hi'))).to.equal('two');
      expect(s.log().map(entry => entry.rule)).to.deep.equal(['seq', 'injected#0', 'injected#0', 'seq']);
      expect(() => s.inject([{ match: '(', respond: { content: 'x' } }])).to.throw(ModelScriptError, /rules\[0\]\.match/);
    });

    it('with replay, an identical request gets the same answer without advancing a sequence, and faults still hit', async () => {
      server = await startModelServer({ script: { rules: [{ name: 'seq', responses: [{ content: 'one' }, { content: 'two' }] }] }, replay: true });
      const s = server;
      const first = completion(await chat(s, 'hi'));
      const again = completion(await chat(s, 'hi'));
      expect(again).to.deep.equal(first);
      expect(content(await chat(s, 'other'))).to.equal('two');
      s.inject([{ times: 1, fault: { type: 'rate_limit' } }]);
      expect((await chat(s, 'hi')).status).to.equal(429);
      expect(completion(await chat(s, 'hi')).id).to.equal(first.id);
      expect(s.log().map(entry => [entry.rule, entry.replayed])).to.deep.equal([['seq', false], ['seq', true], ['seq', false], ['injected#0', false], ['seq', true]]);
    });
  });

  describe('embeddings', () => {
    interface EmbeddingsShape {
      object: string;
      model: string;
      data: { object: string; index: number; embedding: number[] | string }[];
      usage: { prompt_tokens: number; total_tokens: number };
    }
    const embeddings = (reply: JsonReply): EmbeddingsShape => reply.body as EmbeddingsShape;
    const vectors = (reply: JsonReply): number[][] => embeddings(reply).data.map((item) => item.embedding as number[]);

    it('returns unit-length hashed vectors of the default 64 dimensions without any rule', async () => {
      const s = await start({ rules: [] });
      const reply = await post(s, '/v1/embeddings', { model: 'embed', input: ['The library has many books', 'the library has many old books', 'Quantum chromodynamics of gluons', 'The library has many books'] });
      expect(reply.status).to.equal(200);
      const body = embeddings(reply);
      expect(body).to.deep.include({ object: 'list', model: 'embed' });
      expect(body.data.map((item) => [item.object, item.index])).to.deep.equal([['embedding', 0], ['embedding', 1], ['embedding', 2], ['embedding', 3]]);
      const [a, b, c, same] = vectors(reply) as [number[], number[], number[], number[]];
      for (const vector of [a, b, c]) {
        expect(vector).to.have.length(64);
        expect(Math.hypot(...vector)).to.be.closeTo(1, 1e-9);
      }
      expect(cosineSimilarity(a, same)).to.be.closeTo(1, 1e-12);
      expect(cosineSimilarity(a, b)).to.be.greaterThan(0.7);
      expect(cosineSimilarity(a, c)).to.be.lessThan(0.3);
      expect(a).to.deep.equal(hashEmbedding('The library has many books'));
      expect(body.usage).to.deep.equal({ prompt_tokens: 7 + 8 + 8 + 7, total_tokens: 30 });
    });

    it('accepts a single string input and honours dimensions', async () => {
      const s = await start({ rules: [] });
      const reply = await post(s, '/v1/embeddings', { model: 'embed', input: 'hello world', dimensions: 256 });
      expect(vectors(reply)).to.have.length(1);
      expect(vectors(reply)[0]).to.have.length(256);
    });

    it('encodes base64 as little-endian float32', async () => {
      const s = await start({ rules: [] });
      const reply = await post(s, '/v1/embeddings', { model: 'embed', input: 'hello world', encoding_format: 'base64' });
      const encoded = embeddings(reply).data[0]?.embedding;
      expect(encoded).to.be.a('string');
      const buffer = Buffer.from(encoded as string, 'base64');
      expect(buffer.length).to.equal(64 * 4);
      const expected = hashEmbedding('hello world');
      expect(buffer.readFloatLE(4 * 5)).to.be.closeTo(expected[5]!, 1e-6);
      embeddingFromBase64(encoded as string).forEach((value, i) => expect(value).to.be.closeTo(expected[i]!, 1e-6));
    });

    it('uses explicit embeddings of matching rules per input', async () => {
      const s = await start({
        rules: [
          { endpoint: 'embeddings', name: 'cats', match: 'cat', embedding: [1, 0, 0] },
          { match: 'cat', respond: { content: 'chat rule, not for embeddings' } },
        ],
      });
      const reply = await post(s, '/v1/embeddings', { model: 'embed', input: ['a cat', 'a dog'] });
      const [cat, dog] = vectors(reply);
      expect(cat).to.deep.equal([1, 0, 0]);
      expect(dog).to.deep.equal(hashEmbedding('a dog'));
      expect(s.log()[0]?.rule).to.equal('cats');
      expect(s.log()[0]?.usage).to.deep.equal({ prompt_tokens: 2 + 2, completion_tokens: 0, total_tokens: 4 });
    });

    it('rejects token-array inputs and bad dimensions', async () => {
      const s = await start({ rules: [] });
      const tokens = await post(s, '/v1/embeddings', { model: 'embed', input: [[1, 2, 3]] });
      expect(tokens.status).to.equal(400);
      expect(apiError(tokens).message).to.match(/token arrays are not supported/);
      const dims = await post(s, '/v1/embeddings', { model: 'embed', input: 'x', dimensions: 0 });
      expect(dims.status).to.equal(400);
      expect(apiError(dims).param).to.equal('dimensions');
    });

    it('applies faults of embeddings rules', async () => {
      const s = await start({ rules: [{ endpoint: 'embeddings', times: 1, fault: { type: 'server_error', status: 503 } }] });
      expect((await post(s, '/v1/embeddings', { model: 'embed', input: ['a', 'b'] })).status).to.equal(503);
      expect((await post(s, '/v1/embeddings', { model: 'embed', input: ['a', 'b'] })).status).to.equal(200);
    });
  });

  describe('models', () => {
    it('lists scripted, the script models and models named by rules', async () => {
      const s = await start({ models: ['gpt-4o-mini', 'scripted'], rules: [{ model: 'judge-model', respond: { content: 'x' } }] });
      const reply = await get(s, '/v1/models');
      expect(reply.status).to.equal(200);
      const body = record(reply.body);
      expect(body['object']).to.equal('list');
      const data = body['data'] as { id: string; object: string; owned_by: string; created: number }[];
      expect(data.map((model) => model.id)).to.deep.equal(['scripted', 'gpt-4o-mini', 'judge-model']);
      for (const model of data) expect(model).to.deep.include({ object: 'model', owned_by: 'envfleet-scripted' });
      expect((await get(s, '/v1/models/gpt-4o-mini')).body).to.deep.include({ id: 'gpt-4o-mini' });
      expect((await get(s, '/v1/models/unknown')).status).to.equal(404);
    });
  });

  describe('authorization', () => {
    it('answers 401 in OpenAI format without the right bearer key, and never logs the key', async () => {
      const s = await start({ rules: [{ respond: { content: 'ok' } }] }, { apiKey: 'sekret' });
      const missing = await chat(s, 'hi');
      expect(missing.status).to.equal(401);
      expect(apiError(missing)).to.deep.include({ type: 'invalid_request_error', code: 'invalid_api_key' });
      expect((await get(s, '/v1/models', { authorization: 'Bearer wrong' })).status).to.equal(401);
      expect((await get(s, '/_envfleet/log')).status).to.equal(401);
      expect((await get(s, '/_envfleet/health')).status).to.equal(200);
      const ok = await post(s, '/v1/chat/completions', { model: 'scripted', messages: [{ role: 'user', content: 'hi' }] }, { authorization: 'Bearer sekret' });
      expect(ok.status).to.equal(200);
      const log = s.log();
      expect(log.map((entry) => [entry.status, entry.authorization])).to.deep.equal([[401, false], [401, true], [200, true]]);
      expect(JSON.stringify(log)).not.to.include('sekret');
    });
  });

  describe('request log', () => {
    it('records one entry per /v1 request with the documented fields', async () => {
      const s = await start({ rules: [{ name: 'judge-yes', stage: 'mine.judge', respond: { content: 'yes' } }, { respond: { content: 'other' } }] });
      const before = Date.now();
      await chat(s, `is this a library? ${'z'.repeat(600)}`, { stage: 'mine.judge', model: 'gpt-4o-mini' });
      await chat(s, 'second');
      await get(s, '/v1/models');
      await get(s, '/_envfleet/health');
      const log = s.log();
      expect(log).to.have.length(3);
      const [first, second, models] = log as [ReceivedRequest, ReceivedRequest, ReceivedRequest];
      expect(first).to.deep.include({
        seq: 1,
        method: 'POST',
        path: '/v1/chat/completions',
        stage: 'mine.judge',
        model: 'gpt-4o-mini',
        rule: 'judge-yes',
        fault: null,
        status: 200,
        authorization: false,
      });
      expect(Date.parse(first.at)).to.be.at.least(before - 1000);
      expect(first.lastUserMessage).to.have.length(500);
      expect(first.usage).to.have.keys(['prompt_tokens', 'completion_tokens', 'total_tokens']);
      expect(record(first.body)['messages']).to.deep.equal([{ role: 'user', content: `is this a library? ${'z'.repeat(600)}` }]);
      expect(second).to.deep.include({ seq: 2, stage: null, rule: '#1' });
      expect(models).to.deep.include({ seq: 3, method: 'GET', path: '/v1/models', body: null, model: null, usage: null, status: 200 });
    });

    it('serves the log over GET /_envfleet/log', async () => {
      const s = await start({ rules: [{ respond: { content: 'x' } }] });
      await chat(s, 'hi');
      const reply = await get(s, '/_envfleet/log');
      expect(reply.body).to.deep.equal(JSON.parse(JSON.stringify(s.log())));
    });

    it('appends finished entries to logFile as JSON lines and reports them to onLog', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'envfleet-model-server-'));
      try {
        const logFile = join(dir, 'requests.jsonl');
        const seen: ReceivedRequest[] = [];
        const s = await start({ rules: [{ respond: { content: 'x' } }] }, { logFile, onLog: (entry) => seen.push(entry) });
        await chat(s, 'one');
        await chat(s, 'two');
        await waitUntil(() => seen.length === 2);
        await s.close();
        const lines = (await readFile(logFile, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as ReceivedRequest);
        expect(lines.map((entry) => [entry.seq, entry.lastUserMessage, entry.status])).to.deep.equal([[1, 'one', 200], [2, 'two', 200]]);
        expect(seen.map((entry) => entry.seq)).to.deep.equal([1, 2]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('faults', () => {
    it('rate_limit answers 429 with retry-after headers and a rate_limit_error body', async () => {
      const s = await start({ rules: [{ name: 'rl', times: 1, fault: { type: 'rate_limit', retryAfterS: 1.5 } }, { respond: { content: 'ok' } }] });
      const reply = await chat(s, 'hi');
      expect(reply.status).to.equal(429);
      expect(reply.headers.get('retry-after')).to.equal('2');
      expect(reply.headers.get('retry-after-ms')).to.equal('1500');
      expect(apiError(reply).type).to.equal('rate_limit_error');
      expect(s.log()[0]).to.deep.include({ fault: 'rate_limit', rule: 'rl', status: 429, usage: null });
      expect(content(await chat(s, 'hi'))).to.equal('ok');
    });

    it('server_error answers 500 or the scripted status', async () => {
      const s = await start({
        rules: [
          { match: 'custom', fault: { type: 'server_error', status: 503, message: 'overloaded' } },
          { fault: { type: 'server_error' } },
        ],
      });
      const plain = await chat(s, 'hi');
      expect(plain.status).to.equal(500);
      expect(apiError(plain).type).to.equal('server_error');
      const custom = await chat(s, 'custom');
      expect(custom.status).to.equal(503);
      expect(apiError(custom).message).to.equal('overloaded');
    });

    it('delay waits, then answers from the rule', async () => {
      const s = await start({ rules: [{ fault: { type: 'delay', ms: 150 }, respond: { content: 'late' } }] });
      const started = Date.now();
      const reply = await chat(s, 'hi');
      expect(Date.now() - started).to.be.at.least(140);
      expect(content(reply)).to.equal('late');
      expect(s.log()[0]).to.deep.include({ fault: 'delay', status: 200 });
      expect(s.log()[0]?.usage).not.to.equal(null);
    });

    it('malformed answers 200 with an application/json body that is not JSON', async () => {
      const s = await start({ rules: [{ fault: { type: 'malformed' } }] });
      const res = await fetch(`${s.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }) });
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.equal('application/json');
      const text = await res.text();
      expect(() => JSON.parse(text) as unknown).to.throw(SyntaxError);
      expect(s.log()[0]).to.deep.include({ fault: 'malformed', status: 200 });
    });

    it('truncated declares the full Content-Length, sends half the body and drops the connection', async () => {
      const s = await start({ rules: [{ fault: { type: 'truncated' }, respond: { content: 'a complete answer that will never arrive in full' } }] });
      const { declared, received, failure } = await new Promise<{ declared: number; received: number; failure: string }>((resolve, reject) => {
        const req = httpRequest(`${s.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          let bytes = 0;
          res.on('data', (chunk: Buffer) => (bytes += chunk.length));
          res.on('error', (err) => resolve({ declared: Number(res.headers['content-length']), received: bytes, failure: err.message }));
          res.on('end', () => reject(new Error('body unexpectedly complete')));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }));
      });
      expect(failure).to.equal('aborted');
      expect(received).to.equal(Math.floor(declared / 2));
      expect(s.log()[0]).to.deep.include({ fault: 'truncated', status: 200, usage: null });
    });

    it('hang never answers; the entry is finished when the client aborts', async () => {
      const finished: ReceivedRequest[] = [];
      const s = await start({ rules: [{ name: 'stuck', fault: { type: 'hang' } }] }, { onLog: (entry) => finished.push(entry) });
      const controller = new AbortController();
      const pending = fetch(`${s.url}/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
        signal: controller.signal,
      });
      await waitUntil(() => s.log()[0]?.rule === 'stuck');
      expect(finished).to.have.length(0);
      controller.abort();
      let caught: unknown;
      try {
        await pending;
      } catch (err) {
        caught = err;
      }
      expect((caught as Error | undefined)?.name).to.equal('AbortError');
      await waitUntil(() => finished.length === 1);
      expect(finished[0]).to.deep.include({ fault: 'hang', status: null });
    });

    it('a client aborting mid-delay gets no late answer', async () => {
      const finished: ReceivedRequest[] = [];
      const s = await start({ rules: [{ fault: { type: 'delay', ms: 300 }, respond: { content: 'late' } }] }, { onLog: (entry) => finished.push(entry) });
      const controller = new AbortController();
      const pending = fetch(`${s.url}/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
        signal: controller.signal,
      }).catch((err: unknown) => err);
      await waitUntil(() => s.log()[0]?.fault === 'delay');
      controller.abort();
      await pending;
      await waitUntil(() => finished.length === 1, 200);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(s.log()[0]).to.deep.include({ fault: 'delay', status: null, usage: null });
    });

    it('close() resolves promptly with hanging and idle keep-alive connections open', async () => {
      const s = await start({ rules: [{ match: 'hang', fault: { type: 'hang' } }, { respond: { content: 'ok' } }] });
      await chat(s, 'leave a keep-alive connection open');
      const pending = [1, 2, 3].map(() => chat(s, 'hang').catch((err: unknown) => err));
      await waitUntil(() => s.log().filter((entry) => entry.fault === 'hang').length === 3);
      const started = Date.now();
      await s.close();
      expect(Date.now() - started).to.be.lessThan(500);
      for (const outcome of await Promise.all(pending)) expect(outcome).to.be.instanceOf(Error);
      await s.close(); // idempotent
    });
  });

  describe('concurrency', () => {
    it('serves concurrent requests in parallel and hands out each sequence step once', async () => {
      const s = await start({
        rules: [{ fault: { type: 'delay', ms: 200 }, responses: [{ content: 'r0' }, { content: 'r1' }, { content: 'r2' }, { content: 'r3' }, { content: 'r4' }], times: 5 }],
      });
      const started = Date.now();
      const replies = await Promise.all([0, 1, 2, 3, 4].map((i) => chat(s, `request ${i}`)));
      expect(Date.now() - started).to.be.lessThan(1000);
      expect(replies.map(content).sort()).to.deep.equal(['r0', 'r1', 'r2', 'r3', 'r4']);
      expect(s.log().map((entry) => entry.seq).sort()).to.deep.equal([1, 2, 3, 4, 5]);
      expect((await chat(s, 'sixth')).status).to.equal(400);
    });
  });
});
