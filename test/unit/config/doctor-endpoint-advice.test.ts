import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { runDoctor } from '../../../cli/doctor.js';
import { loadConfig } from '../../../config/index.js';
import { parseModelScript, startModelServer, type ModelServer } from '../../../src/model-server/index.js';

/**
 * `envfleet doctor` on an endpoint declared in the models file: the key of such an endpoint is read from its
 * apiKeyEnv variable (or is the placeholder envfleet-local without one), never from OPENAI_API_KEY, and its URL
 * is in the file, not in OPENAI_BASE_URL. The advice names what the user has to change.
 */
describe('envfleet doctor: what to fix for an endpoint of the models file', () => {
  let server: ModelServer;
  before(async () => {
    server = await startModelServer({ script: parseModelScript({ models: ['gpt-4o-mini', 'text-embedding-3-small'], rules: [{ stage: 'doctor', respond: { json: { ok: true } } }] }), apiKey: 'right-key' });
  });
  after(() => server.close());

  const doctor = (models: string, env: Record<string, string> = {}) =>
    runDoctor(() =>
      loadConfig(env, {
        overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'right-key', ENVFLEET_MODELS_FILE: 'models.yaml', REDIS_URL: 'redis://127.0.0.1:6379' },
        readFile: () => models,
      }),
    );
  const endpointCheck = async (models: string, env: Record<string, string> = {}) => (await doctor(models, env)).find(c => c.name === 'endpoint scripted')!;

  it('a refused key read from apiKeyEnv: names that variable, not OPENAI_API_KEY (which this endpoint does not read)', async () => {
    const models = `endpoints:\n  scripted: { baseURL: "${server.url}", apiKeyEnv: SCRIPTED_KEY }\nprofiles:\n  rollout.policy: { endpoint: scripted }\n`;
    const check = await endpointCheck(models, { SCRIPTED_KEY: 'wrong-key' });
    expect(check.status).to.equal('fail');
    expect(check.detail).to.match(/rejected the API key/).and.to.match(/Set SCRIPTED_KEY to a valid key/);
    expect(check.detail).not.to.match(/OPENAI_API_KEY/);
    expect(check.detail).not.to.contain('wrong-key');
  });

  it('an endpoint without apiKeyEnv was sent the placeholder key: says to add apiKeyEnv', async () => {
    const models = `endpoints:\n  scripted: { baseURL: "${server.url}" }\nprofiles:\n  rollout.policy: { endpoint: scripted }\n`;
    const check = await endpointCheck(models);
    expect(check.status).to.equal('fail');
    expect(check.detail).to.match(/no apiKeyEnv/).and.to.match(/envfleet-local/).and.to.match(/apiKeyEnv: VAR under endpoints\.scripted/);
    expect(check.detail).not.to.match(/OPENAI_API_KEY/);
  });

  it('an endpoint that cannot be reached or has no /v1: points at its baseURL in the models file, not OPENAI_BASE_URL', async () => {
    const down = `endpoints:\n  scripted: { baseURL: "http://127.0.0.1:1/v1" }\nprofiles:\n  rollout.policy: { endpoint: scripted }\n`;
    const unreachable = await endpointCheck(down);
    expect(unreachable.status).to.equal('fail');
    expect(unreachable.detail).to.match(/cannot reach/).and.to.match(/endpoints\.scripted\.baseURL in ENVFLEET_MODELS_FILE/);
    expect(unreachable.detail).not.to.match(/OPENAI_BASE_URL/);
    const noV1 = `endpoints:\n  scripted: { baseURL: "${server.url.replace(/\/v1$/, '')}", apiKeyEnv: SCRIPTED_KEY }\nprofiles:\n  rollout.policy: { endpoint: scripted }\n`;
    const notFound = await endpointCheck(noV1, { SCRIPTED_KEY: 'right-key' });
    expect(notFound.status).to.equal('fail');
    expect(notFound.detail).to.match(/\/v1/).and.to.match(/endpoints\.scripted\.baseURL in ENVFLEET_MODELS_FILE/);
  });

  it('a base URL with a user name and password (a proxy), which the workers reach, is reached by the doctor too', async () => {
    const url = server.url.replace('http://', 'http://bob:proxy-pass@');
    const checks = await runDoctor(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: url, OPENAI_API_KEY: 'right-key', REDIS_URL: 'redis://127.0.0.1:6379' } }));
    const check = checks.find(c => c.name === 'endpoint default')!;
    expect(check.status, check.detail).to.equal('ok');
    expect(check.detail).to.match(/bob:\*\*\*@/).and.not.to.contain('proxy-pass');
    const shape = checks.find(c => c.name.startsWith('request shape default'))!;
    expect(shape.status, shape.detail).to.equal('ok');
  });

  it('the default endpoint still names OPENAI_API_KEY', async () => {
    const checks = await runDoctor(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'wrong-key', REDIS_URL: 'redis://127.0.0.1:6379' } }));
    const check = checks.find(c => c.name === 'endpoint default')!;
    expect(check.status).to.equal('fail');
    expect(check.detail).to.match(/Set OPENAI_API_KEY to a valid key\.$/);
  });

  it('checks the embedding model too: an endpoint whose /embeddings refuses it fails, naming the stage and the setting (it passed, and synth failed at mine.dedup)', async () => {
    const ok = (await runDoctor(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'right-key', REDIS_URL: 'redis://127.0.0.1:6379' } })))
      .find(c => c.name === 'embeddings default text-embedding-3-small')!;
    expect(ok.status, ok.detail).to.equal('ok');
    const noEmbeddings = await startModelServer({
      script: parseModelScript({ models: ['gpt-4o-mini', 'text-embedding-3-small'], rules: [{ endpoint: 'embeddings', fault: { type: 'server_error', status: 404, message: 'no embeddings here — pas ici' } }, { stage: 'doctor', respond: { json: { ok: true } } }] }),
    });
    try {
      const checks = await runDoctor(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: noEmbeddings.url, OPENAI_API_KEY: 'k', REDIS_URL: 'redis://127.0.0.1:6379' } }));
      const check = checks.find(c => c.name === 'embeddings default text-embedding-3-small')!;
      expect(check.status).to.equal('fail');
      expect(check.detail).to.include('404').and.include('mine.dedup needs it').and.include('ENVFLEET_EMBEDDING_MODEL');
    } finally {
      await noEmbeddings.close();
    }
  });

  it('an endpoint whose /models lists no model is not said to serve the configured ones', async () => {
    // A gateway that answers /models with an empty list (and refuses everything else).
    const empty = createServer((req, res) => {
      res.writeHead(req.url?.endsWith('/models') ? 200 : 404, { 'content-type': 'application/json' });
      res.end(req.url?.endsWith('/models') ? '{"object":"list","data":[]}' : '{"error":{"message":"no"}}');
    });
    await new Promise<void>(resolve => empty.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(empty.address() as AddressInfo).port}/v1`;
      const checks = await runDoctor(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: url, OPENAI_API_KEY: 'k', REDIS_URL: 'redis://127.0.0.1:6379' } }));
      const check = checks.find(c => c.name === 'endpoint default')!;
      expect(check.status, check.detail).to.equal('warn');
      expect(check.detail).to.include('lists no model').and.not.include('accepts the key; serves');
    } finally {
      await new Promise(resolve => empty.close(resolve));
    }
  });
});
