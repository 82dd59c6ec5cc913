import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIUserAbortError, type APIError } from 'openai';
import { createHttpSender } from '../../../src/llm/node-fetch.js';
import { createOpenAIPost } from '../../../src/llm/openai-http.js';
import { rejection } from '../../helpers/assert.js';

const completion = { id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'héllo 😀' } }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } };
const request = { model: 'm', messages: [{ role: 'user' as const, content: 'ünïcode ✓' }], tools: [{ type: 'function' as const, function: { name: 'f', parameters: { type: 'object', properties: {} } } }], temperature: 0.5, max_tokens: 10 };

describe('openai-http (the gateway\'s POST) against the openai client', function () {
  this.timeout(10_000);
  let server: http.Server;
  let base: string;
  const seen: { url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  let handler: (res: http.ServerResponse) => void;

  beforeEach(async () => {
    seen.length = 0;
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        handler(res);
      });
    });
    await new Promise<void>(r => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>(r => server.close(() => r()));
  });

  const sdk = (timeout = 5_000) => new OpenAI({ baseURL: base, apiKey: 'k', maxRetries: 0, timeout });
  const sender = createHttpSender();
  const opts = (timeout = 5_000, signal?: AbortSignal) => ({ headers: { 'X-Envfleet-Stage': 'rollout.policy' }, timeout, signal });
  const viaSdk = (timeout = 5_000, signal?: AbortSignal) => sdk(timeout).chat.completions.create(request, { headers: { 'X-Envfleet-Stage': 'rollout.policy' }, ...(signal ? { signal } : {}) });
  const viaDirect = (timeout = 5_000, signal?: AbortSignal) => createOpenAIPost(sender, { baseURL: base, apiKey: 'k' })('/chat/completions', request, opts(timeout, signal));

  it('sends the same path, body bytes, key and stage header, and reads the same answer', async () => {
    handler = res => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(completion));
    };
    const a = await viaSdk();
    const b = await viaDirect();
    expect(JSON.parse(JSON.stringify(b))).to.deep.equal(JSON.parse(JSON.stringify(a)));
    expect(seen[1]!.url).to.equal(seen[0]!.url).and.equal('/v1/chat/completions');
    expect(seen[1]!.body).to.equal(seen[0]!.body);
    for (const h of ['authorization', 'content-type', 'accept', 'x-envfleet-stage']) expect(seen[1]!.headers[h], h).to.equal(seen[0]!.headers[h]);
  });

  it('throws the client\'s errors: a status with its error body and headers, a body that is not JSON', async () => {
    handler = res => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after-ms': '1500' });
      res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit', code: 'rl' } }));
    };
    const [a, b] = [await rejection(viaSdk()), await rejection(viaDirect())] as [APIError, APIError];
    expect(b.constructor).to.equal(a.constructor);
    expect([b.status, b.message, b.code, b.type, b.headers?.get('retry-after-ms')]).to.deep.equal([a.status, a.message, a.code, a.type, a.headers?.get('retry-after-ms')]);
    handler = res => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>bad gateway</html>');
    };
    const [c, d] = [await rejection(viaSdk()), await rejection(viaDirect())] as [APIError, APIError];
    expect(d.constructor).to.equal(c.constructor);
    expect([d.status, d.message]).to.deep.equal([c.status, c.message]);
    handler = res => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('not json');
    };
    expect(await viaDirect()).to.equal(await viaSdk());
  });

  it('times out, aborts and fails to connect with the client\'s error classes', async () => {
    handler = () => undefined; // never answers
    expect(await rejection(viaDirect(150))).to.be.instanceOf(APIConnectionTimeoutError);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    expect(await rejection(viaDirect(5_000, controller.signal))).to.be.instanceOf(APIUserAbortError);
    const closed = createOpenAIPost(createHttpSender(), { baseURL: 'http://127.0.0.1:9/v1', apiKey: 'k' });
    const err = await rejection(closed('/chat/completions', request, opts()));
    expect(err).to.be.instanceOf(APIConnectionError).and.not.instanceOf(APIConnectionTimeoutError);
  });
});
