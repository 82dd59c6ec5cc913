import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIUserAbortError, AuthenticationError } from 'openai';
import { createNodeFetch } from '../../../src/llm/node-fetch.js';
import { rejection } from '../../helpers/assert.js';

const completion = { id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'héllo 😀' } }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } };

describe('node fetch (the openai client over node:http keep-alive)', function () {
  this.timeout(10_000);
  let server: http.Server;
  let base: string;
  const seen: { headers: http.IncomingHttpHeaders; body: string; socket: number }[] = [];
  let sockets = 0;
  let handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

  beforeEach(async () => {
    seen.length = 0;
    sockets = 0;
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ headers: req.headers, body, socket: (req.socket as unknown as { n: number }).n });
        handler(req, res, body);
      });
    });
    server.on('connection', s => ((s as unknown as { n: number }).n = ++sockets));
    await new Promise<void>(r => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>(r => server.close(() => r()));
  });

  const client = (timeout = 5_000) => new OpenAI({ baseURL: base, apiKey: 'k', maxRetries: 0, timeout, fetch: createNodeFetch() });
  const ask = (c: OpenAI, options: OpenAI.RequestOptions = {}) => c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'ünïcode ✓' }] }, { headers: { 'X-Envfleet-Stage': 'rollout.policy' }, ...options });

  it('sends the SDK\'s request (body, auth, extra headers, accept-encoding) and reads a gzip answer, over one kept-alive connection', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'x-request-id': 'r1' });
      res.end(gzipSync(JSON.stringify(completion)));
    };
    const c = client();
    const first = await ask(c);
    const second = await ask(c).withResponse();
    expect(first.choices[0]?.message.content).to.equal('héllo 😀');
    expect(second.response.headers.get('x-request-id')).to.equal('r1');
    expect(seen).to.have.length(2);
    expect(JSON.parse(seen[0]!.body)).to.deep.equal({ model: 'm', messages: [{ role: 'user', content: 'ünïcode ✓' }] });
    expect(seen[0]!.headers).to.include({ authorization: 'Bearer k', 'x-envfleet-stage': 'rollout.policy', 'accept-encoding': 'gzip, deflate, br', 'content-length': String(Buffer.byteLength(seen[0]!.body)) });
    expect(seen.map(s => s.socket)).to.deep.equal([1, 1]);
  });

  it('gives the SDK its error statuses with their bodies and headers', async () => {
    handler = (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'bad key', type: 'invalid_request_error' } }));
    };
    const err = await rejection(ask(client()));
    expect(err).to.be.instanceOf(AuthenticationError);
    expect(String(err)).to.match(/bad key/);
  });

  it('aborts: the SDK\'s timeout becomes its timeout error, the caller\'s signal its abort error', async () => {
    handler = () => undefined; // never answers
    expect(await rejection(ask(client(150)))).to.be.instanceOf(APIConnectionTimeoutError);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    expect(await rejection(ask(client(), { signal: controller.signal }))).to.be.instanceOf(APIUserAbortError);
  });

  it('sends a request once more when a reused keep-alive connection is reset before any answer, and never on a new one', async () => {
    let n = 0;
    handler = (req, res) => {
      n += 1;
      if (n === 2) {
        req.socket.destroy(); // the server dropped the idle connection as the second request came
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(completion));
    };
    const c = client();
    await ask(c);
    const again = await ask(c);
    expect(again.choices[0]?.message.content).to.equal('héllo 😀');
    expect(seen.map(s => s.socket)).to.deep.equal([1, 1, 2]);
    handler = req => req.socket.destroy();
    const err = await rejection(ask(client()));
    expect(err).to.be.instanceOf(APIConnectionError);
  });

  it('sends a request that met stale connections once more on a new connection: the server closed every idle one while the client was busy', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(completion));
    };
    const c = client();
    // Three connections kept alive, idle.
    await Promise.all([ask(c), ask(c), ask(c)]);
    expect(sockets).to.equal(3);
    seen.length = 0;
    // The server closes them all, and in the same turn of the client's event loop (it has not seen them close:
    // a worker's main thread busy with a thousand episodes) the next request goes out on one of them.
    server.closeIdleConnections();
    const answer = await ask(c);
    expect(answer.choices[0]?.message.content).to.equal('héllo 😀');
    // Read by the server once, on a fourth connection: not on another of the closed ones.
    expect(seen.map(s => s.socket)).to.deep.equal([4]);
  });

  it('never sends a request again when the connection was lost long after it went out: the server may have read it and worked on it', async () => {
    handler = (req, res) => {
      if (seen.length === 1) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(completion));
        return;
      }
      setTimeout(() => req.socket.destroy(), 200); // worked on it for a while, then went away (a restart, a proxy)
    };
    // A window of 50 ms instead of RESENT_WITHIN_MS, so that the test waits 200 ms and not seconds.
    const c = new OpenAI({ baseURL: base, apiKey: 'k', maxRetries: 0, timeout: 5_000, fetch: createNodeFetch({ resendWithinMs: 50 }) });
    await ask(c);
    expect(await rejection(ask(c))).to.be.instanceOf(APIConnectionError);
    expect(seen.map(s => s.socket)).to.deep.equal([1, 1]);
  });

  it('closes an idle connection itself, before the server\'s keep-alive hint runs out', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'keep-alive': 'timeout=2' });
      res.end(JSON.stringify(completion));
    };
    server.keepAliveTimeout = 60_000; // the server itself would keep it for a minute
    const closed = new Promise<void>(resolve => server.once('connection', s => s.once('close', () => resolve())));
    // Its own idle limit a minute too: only the hint can close it within the test's time.
    await ask(new OpenAI({ baseURL: base, apiKey: 'k', maxRetries: 0, timeout: 5_000, fetch: createNodeFetch({ idleMs: 60_000 }) }));
    // Node closes it one second before the hint's 2 s; the server saw the client close it.
    await closed;
    expect(sockets).to.equal(1);
  });
});
