/**
 * Protocol compatibility: the official `openai` client (v6) against the scripted server.
 */
import { expect } from 'chai';
import OpenAI from 'openai';
import { cosineSimilarity, hashEmbedding, startModelServer, type ModelServer } from '../../../src/model-server/index.js';
import { rejection } from '../../helpers/assert.js';


describe('model-server: openai client compatibility', () => {
  let server: ModelServer;
  let client: OpenAI;

  before(async () => {
    server = await startModelServer({
      apiKey: 'x',
      script: {
        models: ['gpt-4o-mini'],
        rules: [
          { match: 'rate limit', fault: { type: 'rate_limit', retryAfterS: 2 } },
          { match: 'truncate', fault: { type: 'truncated' }, respond: { content: 'this body is cut in half on the wire' } },
          { match: 'malformed', fault: { type: 'malformed' } },
          { match: 'hang', fault: { type: 'hang' } },
          { stage: 'rollout.agent', match: 'book', respond: { toolCalls: [{ name: 'get_book', arguments: { id: 1 } }], reasoning: 'need the book' } },
        ],
      },
    });
    client = new OpenAI({ baseURL: server.url, apiKey: 'x', maxRetries: 0, defaultHeaders: { 'X-Envfleet-Stage': 'rollout.agent' } });
  });

  after(async () => {
    await server.close();
  });

  beforeEach(() => server.reset());

  it('creates a chat completion with a tool call', async () => {
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_book', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } },
    ];
    const completion = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Find the book with id 1' }],
      tools,
    });
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).to.equal('tool_calls');
    const call = choice.message.tool_calls?.[0];
    expect(call?.type).to.equal('function');
    if (call?.type !== 'function') throw new Error('expected a function tool call');
    expect(call.function.name).to.equal('get_book');
    expect(JSON.parse(call.function.arguments)).to.deep.equal({ id: 1 });
    expect((choice.message as unknown as { reasoning_content?: string }).reasoning_content).to.equal('need the book');
    expect(completion.model).to.equal('gpt-4o-mini');
    expect(completion.usage?.total_tokens).to.be.greaterThan(0);
    expect(completion._request_id).to.equal('req_scripted_1');

    const [entry] = server.log();
    expect(entry).to.deep.include({ stage: 'rollout.agent', authorization: true, status: 200 });
    expect((entry?.body as { tools: unknown }).tools).to.deep.equal(tools);
  });

  it('creates embeddings, decoding the base64 the client asks for by default', async () => {
    // Without encoding_format, openai v6 sends encoding_format: 'base64' and decodes float32 itself.
    const texts = ['the library has many books', 'the library has many old books', 'the library has many books'];
    const response = await client.embeddings.create({ model: 'text-embedding-3-small', input: texts });
    expect(server.log()[0]?.body).to.deep.include({ encoding_format: 'base64' });
    const vectors = response.data.map((item) => item.embedding);
    expect(vectors.every((vector) => Array.isArray(vector) && vector.length === 64)).to.equal(true);
    const [a, b, same] = vectors as [number[], number[], number[]];
    hashEmbedding(texts[0]!).forEach((value, i) => expect(a[i]).to.be.closeTo(value, 1e-6));
    expect(cosineSimilarity(a, same)).to.be.closeTo(1, 1e-6);
    expect(cosineSimilarity(a, b)).to.be.greaterThan(0.7);

    const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello', encoding_format: 'float', dimensions: 8 });
    expect(floats.data[0]?.embedding).to.deep.equal(hashEmbedding('hello', 8));
  });

  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data.map((model) => model.id)).to.deep.equal(['scripted', 'gpt-4o-mini']);
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).to.deep.equal(['scripted', 'gpt-4o-mini']);
  });

  it('surfaces a 429 fault as RateLimitError with readable retry-after headers', async () => {
    const err = await rejection(client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'rate limit me' }] }));
    expect(err).to.be.instanceOf(OpenAI.RateLimitError);
    const rateLimit = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(rateLimit.status).to.equal(429);
    expect(rateLimit.type).to.equal('rate_limit_error');
    expect(rateLimit.headers.get('retry-after')).to.equal('2');
    expect(rateLimit.headers.get('retry-after-ms')).to.equal('2000');
  });

  it('surfaces a truncated body as an error', async () => {
    const err = await rejection(client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'truncate' }] }));
    // openai v6 does not wrap body-read failures: undici's fetch rejects response.json() with a plain
    // `TypeError: terminated` (cause: SocketError 'other side closed', code UND_ERR_SOCKET) and the
    // client lets it through as is — it is NOT an OpenAI.APIConnectionError, and it is not retried.
    expect(err).to.be.instanceOf(TypeError);
    expect(err).not.to.be.instanceOf(OpenAI.APIError);
    expect((err as Error).message).to.equal('terminated');
  });

  it('surfaces a malformed body as an error', async () => {
    const err = await rejection(client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'malformed' }] }));
    // Likewise unwrapped: the JSON.parse failure of response.json() arrives as a plain SyntaxError.
    expect(err).to.be.instanceOf(SyntaxError);
  });

  it('surfaces a hang as APIConnectionTimeoutError when the client times out', async () => {
    const err = await rejection(
      client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'hang' }] }, { timeout: 200 }),
    );
    expect(err).to.be.instanceOf(OpenAI.APIConnectionTimeoutError);
  });

  it('surfaces a missing rule as BadRequestError with code no_rule_matched', async () => {
    const err = await rejection(client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'unscripted' }] }));
    expect(err).to.be.instanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).to.equal('no_rule_matched');
  });

  it('surfaces a wrong key as AuthenticationError', async () => {
    const wrong = new OpenAI({ baseURL: server.url, apiKey: 'wrong', maxRetries: 0 });
    expect(await rejection(wrong.models.list())).to.be.instanceOf(OpenAI.AuthenticationError);
  });
});
