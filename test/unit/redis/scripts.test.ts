import { expect } from 'chai';
import { Redis } from 'ioredis';
import { RedisServerProcess } from '../../../cli/private-redis.js';
import { createRedisConnection } from '../../../src/redis/connection.js';
import { redisScript } from '../../../src/redis/scripts.js';

/** A script whose text is long enough to tell EVAL (the text) from EVALSHA (40 hex digits) on the wire. */
const INCR_BY = redisScript(
  'test_incr_by',
  `-- ${'a comment that makes the script text long enough to be seen on the wire. '.repeat(4)}
return redis.call('INCRBY', KEYS[1], ARGV[1])`,
  1,
);

/** A script whose argument is large: an auto-pipelined connection sends it on its own. */
const PUT_BIG = redisScript('test_put_big', "return redis.call('SET', KEYS[1], ARGV[1])", 1, { largeValues: true });

/** Everything the client writes to its socket from now on, as text. */
function wire(redis: Redis): { text: () => string; stop: () => void } {
  const stream = (redis as unknown as { stream: { write: (chunk: unknown, ...rest: unknown[]) => boolean } }).stream;
  const write = stream.write;
  let text = '';
  stream.write = function (chunk: unknown, ...rest: unknown[]) {
    text += Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
    return write.call(this, chunk, ...rest);
  };
  return { text: () => text, stop: () => void (stream.write = write) };
}

describe('Lua scripts by SHA (src/redis/scripts.ts), on a Redis of its own', () => {
  let server: RedisServerProcess;
  const clients: Redis[] = [];
  const client = (options: { enableAutoPipelining?: boolean; lazyConnect?: boolean } = {}) => {
    const redis = new Redis(server.url, { maxRetriesPerRequest: null, ...options });
    redis.on('error', () => undefined);
    clients.push(redis);
    return redis;
  };

  before(async () => {
    server = await RedisServerProcess.start({ args: ['--appendonly', 'no'] });
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server.remove();
  });

  it('sends the text once per connection, then only the SHA', async () => {
    const redis = client();
    await redis.ping();
    const seen = wire(redis);
    expect(await INCR_BY(redis, ['n:once'], [2])).to.equal(2);
    const first = seen.text();
    expect(first).to.include('a comment that makes');
    expect(await INCR_BY(redis, ['n:once'], [3])).to.equal(5);
    expect(await Promise.all([1, 2, 3].map(n => INCR_BY(redis, ['n:once'], [n])))).to.deep.equal([6, 8, 11]);
    const after = seen.text().slice(first.length);
    seen.stop();
    expect(after).to.not.include('a comment that makes');
    expect(after.match(new RegExp(INCR_BY.sha, 'g'))).to.have.length(4);
    expect(after.toLowerCase()).to.include('evalsha');
  });

  it('still runs after SCRIPT FLUSH (Redis answers NOSCRIPT; the text goes again, then the SHA)', async () => {
    const redis = client();
    const auto = client({ enableAutoPipelining: true });
    expect(await INCR_BY(redis, ['n:flush'], [1])).to.equal(1);
    expect(await INCR_BY(auto, ['n:flush'], [1])).to.equal(2);
    const admin = client();
    await admin.script('FLUSH');
    expect(await admin.script('EXISTS', INCR_BY.sha)).to.deep.equal([0]);
    const seen = wire(redis);
    expect(await INCR_BY(redis, ['n:flush'], [10])).to.equal(12);
    expect(seen.text()).to.include('a comment that makes');
    expect(await admin.script('EXISTS', INCR_BY.sha)).to.deep.equal([1]);
    // Auto-pipelined (the worker's connection): a batch after another flush.
    await admin.script('FLUSH');
    expect(await Promise.all([1, 1, 1].map(n => INCR_BY(auto, ['n:flush'], [n])))).to.deep.equal([13, 14, 15]);
    const before = seen.text().length;
    expect(await INCR_BY(redis, ['n:flush'], [5])).to.equal(20);
    seen.stop();
    expect(seen.text().slice(before)).to.not.include('a comment that makes');
  });

  it('still runs after Redis restarts without persistence (a new socket, an empty script cache)', async () => {
    const redis = client();
    expect(await INCR_BY(redis, ['n:restart'], [7])).to.equal(7);
    await server.killAndRestart(100);
    // No persistence: the key is gone, and so are the scripts.
    expect(await INCR_BY(redis, ['n:restart'], [7])).to.equal(7);
    expect(await INCR_BY(redis, ['n:restart'], [1])).to.equal(8);
  });

  it('defines every script on the connections createRedisConnection makes: auto-pipelined with other commands', async () => {
    const redis = createRedisConnection(server.url, 'worker', { enableAutoPipelining: true });
    clients.push(redis as Redis);
    expect(Object.hasOwn(redis, INCR_BY.command)).to.equal(true);
    const [set, a, b, got] = await Promise.all([redis.set('n:auto', '1'), INCR_BY(redis, ['n:auto'], [2]), INCR_BY(redis, ['n:auto'], [3]), redis.get('n:auto')]);
    expect([set, a, b, got]).to.deep.equal(['OK', 3, 6, '6']);
  });

  it('defines a script made after the connection at its first call, even in the middle of an auto-pipelined batch', async () => {
    const redis = createRedisConnection(server.url, 'worker', { enableAutoPipelining: true });
    clients.push(redis as Redis);
    await redis.ping();
    const late = redisScript('test_late', "return redis.call('INCRBY', KEYS[1], ARGV[1])", 1);
    expect(Object.hasOwn(redis, late.command)).to.equal(false);
    // The SET begins a batch that was made before the script was defined: the script's calls join it, in order.
    const results = await Promise.all([redis.set('n:late', '10'), late(redis, ['n:late'], [1]), late(redis, ['n:late'], [1]), redis.get('n:late')]);
    expect(results).to.deep.equal(['OK', 11, 12, '12']);
    expect(await Promise.all([late(redis, ['n:late'], [1]), redis.get('n:late')])).to.deep.equal([13, '13']);
  });

  it('sends a script that carries large values on its own on an auto-pipelined connection; the small commands of its tick share one write', async () => {
    const redis = createRedisConnection(server.url, 'worker', { enableAutoPipelining: true });
    clients.push(redis as Redis);
    await redis.ping();
    const doc = JSON.stringify({ note: 'Zoë 客房 🏨', pad: 'x'.repeat(100_000) });
    const writes: string[] = [];
    const stream = (redis as unknown as { stream: { write: (chunk: unknown, ...rest: unknown[]) => boolean } }).stream;
    const write = stream.write;
    stream.write = function (chunk: unknown, ...rest: unknown[]) {
      writes.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      return write.call(this, chunk, ...rest);
    };
    const results = await Promise.all([redis.set('n:small:1', '1'), PUT_BIG(redis, ['n:big'], [doc]), redis.set('n:small:2', '2'), INCR_BY(redis, ['n:small:3'], [4])]);
    stream.write = write;
    expect(results).to.deep.equal(['OK', 'OK', 'OK', 4]);
    expect(await redis.get('n:big')).to.equal(doc);
    const big = writes.filter(w => w.includes('x'.repeat(1000)));
    expect(big, 'the large value in a write of its own').to.have.length(1);
    expect(big[0]).to.not.include('n:small');
    expect(writes.filter(w => w.includes('n:small:1') && w.includes('n:small:2') && w.includes('n:small:3')), 'the small commands in one write').to.have.length(1);
    // The same script with only small arguments joins the batch of its tick.
    writes.length = 0;
    stream.write = function (chunk: unknown, ...rest: unknown[]) {
      writes.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      return write.call(this, chunk, ...rest);
    };
    expect(await Promise.all([redis.set('n:small:4', '4'), PUT_BIG(redis, ['n:little'], ['Zoë 🏨']), redis.set('n:small:5', '5')])).to.deep.equal(['OK', 'OK', 'OK']);
    stream.write = write;
    expect(await redis.get('n:little')).to.equal('Zoë 🏨');
    expect(writes.filter(w => w.includes('n:small:4') && w.includes('n:little') && w.includes('n:small:5')), 'a small call of a largeValues script in the batch').to.have.length(1);
  });

  it('refuses a call with the wrong number of keys', () => {
    expect(() => INCR_BY(client({ lazyConnect: true }), ['a', 'b'], [1])).to.throw(/2 keys given, it takes 1/);
  });
});
