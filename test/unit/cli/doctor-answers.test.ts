import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { loadConfig } from '../../../config/index.js';
import { runDoctor } from '../../../cli/doctor.js';

/**
 * `envfleet doctor` against endpoints that answer oddly (a raw HTTP server; a stranger's probe): a gateway answering
 * 200 with an error object was said to "accept" the request, and a 503's HTML page was printed whole.
 */
describe('envfleet doctor: endpoints that answer with errors in odd shapes (a raw HTTP endpoint, real Redis)', function () {
  this.timeout(30_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });

  async function endpointAnswering(answer: (path: string) => [number, string, string]): Promise<string> {
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const [status, type, body] = answer(req.url ?? '');
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`;
  }
  const configAt = (url: string) => () => loadConfig({}, { overrides: { OPENAI_BASE_URL: url } });

  it('fails a request shape answered 200 with an error object, saying what the endpoint said', async () => {
    const url = await endpointAnswering(path =>
      path.endsWith('/models')
        ? [200, 'application/json', JSON.stringify({ object: 'list', data: [] })]
        : [200, 'application/json', JSON.stringify({ error: { message: 'upstream overloaded — 上游过载', type: 'server_error' } })],
    );
    const checks = await runDoctor(configAt(url));
    const shapes = checks.filter(c => c.name.startsWith('request shape'));
    expect(shapes.length).to.be.greaterThan(0);
    for (const c of shapes) {
      expect(c.status, c.detail).to.equal('fail');
      expect(c.detail).to.match(/was answered 200 without a reply \(profiles .*\); the endpoint said: upstream overloaded — 上游过载$/);
    }
  });

  it('reads an answer streamed unasked (text/event-stream) as the workers do: the request shapes pass', async () => {
    const chunk = (delta: object, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const url = await endpointAnswering(path =>
      path.endsWith('/models')
        ? [200, 'application/json', JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model' }, { id: 'text-embedding-3-small', object: 'model' }] })]
        : [200, 'text/event-stream', `${chunk({ role: 'assistant', content: '{"ok": ' }, null)}${chunk({ content: 'true} — 好' }, null)}${chunk({}, 'stop')}data: [DONE]\n\n`],
    );
    const checks = await runDoctor(configAt(url));
    const shapes = checks.filter(c => c.name.startsWith('request shape'));
    expect(shapes.map(c => c.name)).to.deep.equal(['request shape default gpt-4o-mini', 'request shape default gpt-4o-mini with tools']);
    for (const c of shapes) expect(c.status, c.detail).to.equal('ok');
  });

  it("shows a 503's HTML page by its title and length, not whole", async () => {
    const page = `<!DOCTYPE html><html><head><title>503 Service Unavailable</title><style>${'body{margin:0}'.repeat(500)}</style></head><body><h1>Service Unavailable</h1><p>${'The server is temporarily unable to service your request. '.repeat(200)}</p></body></html>`;
    const url = await endpointAnswering(() => [503, 'text/html', page]);
    const checks = await runDoctor(configAt(url));
    const endpointCheck = checks.find(c => c.name === 'endpoint default')!;
    expect(endpointCheck.status).to.equal('fail');
    expect(endpointCheck.detail).to.include('503 Service Unavailable').and.to.include(`(an HTML page of ${page.length} characters)`);
    expect(endpointCheck.detail.length).to.be.below(500);
  });
});
