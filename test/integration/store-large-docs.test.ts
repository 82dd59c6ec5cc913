import { expect } from 'chai';
import type { StoredTrajectory } from '../../src/rollouts/types.js';
import { RawJson, stringifyJson } from '../../src/util/raw-json.js';
import type { RunDocuments } from '../../src/runs/store.js';
import { runKeys } from '../../src/runs/keys.js';
import { useRunStore } from '../helpers/integration.js';

describe('run store: a large document goes to Redis as bytes, and comes back as it was written', function () {
  this.timeout(20_000);
  const fixture = useRunStore('large-docs');

  it('stores a 100 KB trajectory with multi-byte text exactly, counts its UTF-8 bytes once, and a second write of the same value changes nothing', async () => {
    const { redis, store } = fixture;
    const finalState = `{"price":1.0,"guests":${JSON.stringify(Array.from({ length: 800 }, (_, i) => ({ id: `G${i}`, name: i % 2 ? 'Zoë 客房' : '🏨 suite', note: 'é'.repeat(40) })))}}`;
    const doc = { id: 'trj-1', messages: [{ role: 'assistant', content: '予約しました 😀' }], finalState: new RawJson(finalState) } as unknown as StoredTrajectory;
    const text = stringifyJson(doc)!;
    expect(text.length).to.be.greaterThan(50_000);
    const counts = [{ stage: 'rollout.run', outcome: 'agent-finished', n: 1 }];
    // Together with small commands of the same tick, on the worker's auto-pipelined connection; what goes on the socket is recorded.
    const stream = (redis as unknown as { stream: { write: (chunk: unknown, ...rest: unknown[]) => boolean } }).stream;
    const write = stream.write;
    const chunks: unknown[] = [];
    stream.write = function (chunk: unknown, ...rest: unknown[]) {
      chunks.push(chunk);
      return write.call(this, chunk, ...rest);
    };
    await Promise.all([store.putDoc('r', 'trajectory', 'trj-1', doc, counts), store.count('r', 'test', 'tick'), store.putDoc('r', 'trajectory', 'trj-small', { id: 'trj-small', note: 'ü' } as unknown as StoredTrajectory)]);
    stream.write = write;
    // The large document as bytes in a write of its own (no string of the whole batch built around it).
    const large = chunks.filter(c => (Buffer.isBuffer(c) ? c : Buffer.from(String(c))).includes(Buffer.from('🏨 suite')));
    expect(large).to.have.length(1);
    expect(Buffer.isBuffer(large[0])).to.equal(true);
    expect((large[0] as Buffer).includes(Buffer.from('trj-small'))).to.equal(false);
    // The small document joins the batch of its tick (one socket write with the counter's command).
    const small = chunks.filter(c => (Buffer.isBuffer(c) ? c : Buffer.from(String(c))).includes(Buffer.from('trj-small')));
    expect(small).to.have.length(1);
    expect((Buffer.isBuffer(small[0]) ? small[0] : Buffer.from(String(small[0]))).includes(Buffer.from('tick'))).to.equal(true);
    expect(await store.getDocText('r', 'trajectory', 'trj-1')).to.equal(text);
    expect((await store.getDocBuffer('r', 'trajectory', 'trj-1'))!.equals(Buffer.from(text, 'utf8'))).to.equal(true);
    expect(await store.getDocText('r', 'trajectory', 'trj-small')).to.equal('{"id":"trj-small","note":"ü"}');
    const bytes = Buffer.byteLength(text) + Buffer.byteLength('{"id":"trj-small","note":"ü"}');
    expect((await store.bytes('r'))['doc:trajectory']).to.equal(bytes);
    await store.putDoc('r', 'trajectory', 'trj-1', doc, counts);
    expect((await store.bytes('r'))['doc:trajectory']).to.equal(bytes);
    expect((await store.counters('r'))['rollout.run']).to.deep.equal({ 'agent-finished': 1 });
  });

  it("stores a document given as its UTF-8 bytes (a worker's trajectory) as the same text, large or small", async () => {
    const { store } = fixture;
    const big = `{"id":"trj-b","finalState":${JSON.stringify({ rooms: Array.from({ length: 600 }, (_, i) => ({ n: i, label: `Chambre ${i} — 海景 🌊` })) })}}`;
    const tiny = '{"id":"trj-t","note":"naïve 😀"}';
    await Promise.all([store.putDocText('r2', 'trajectory', 'trj-b', Buffer.from(big, 'utf8')), store.putDocText('r2', 'trajectory', 'trj-t', Buffer.from(tiny, 'utf8'))]);
    expect(await store.getDocText('r2', 'trajectory', 'trj-b')).to.equal(big);
    expect(await store.getDocText('r2', 'trajectory', 'trj-t')).to.equal(tiny);
    expect((await store.bytes('r2'))['doc:trajectory']).to.equal(Buffer.byteLength(big) + Buffer.byteLength(tiny));
  });
});

describe('run store: ids by status', function () {
  this.timeout(20_000);
  const fixture = useRunStore('ids-by-status');

  it('reads the statuses kept beside the documents, not the documents (a scenario carries its initial state), in the order first stored; a document without that entry is read', async () => {
    const { redis, store, prefix } = fixture;
    const big = { rooms: Array.from({ length: 2_000 }, (_, i) => ({ n: i, label: `Chambre ${i} — 海景 🌊` })) };
    const scenario = (id: string, status: string) => ({ id, status, environmentId: 'env-1', initialState: big }) as unknown as RunDocuments['scenario'];
    const order = ['scn-é-3', 'scn-2', 'scn-😀-1', 'scn-4'];
    const statuses = ['ready', 'dropped', 'ready', 'building'];
    for (const [i, id] of order.entries()) await store.putDoc('r', 'scenario', id, scenario(id, statuses[i]!));
    // Its status moves: the entry moves with it.
    await store.putDoc('r', 'scenario', 'scn-4', scenario('scn-4', 'ready'));
    const reads: string[] = [];
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((command: { name: string }) => {
      reads.push(command.name);
      return send(command as never);
    }) as typeof redis.sendCommand;
    try {
      expect(await store.idsWithStatus('r', 'scenario', ['ready'])).to.deep.equal(['scn-é-3', 'scn-😀-1', 'scn-4']);
      expect(reads.filter(name => name === 'get')).to.deep.equal([]);
      expect(await store.idsWithStatus('r', 'scenario', ['dropped', 'building'])).to.deep.equal(['scn-2']);
      expect(await store.idsWithStatus('r', 'env', ['kept'])).to.deep.equal([]);
      // A document stored before the entry was kept (or whose entry is gone) is read for its status.
      await redis.hdel(runKeys(prefix, 'r', false).statusOf('scenario'), 'scn-😀-1');
      reads.length = 0;
      expect(await store.idsWithStatus('r', 'scenario', ['ready'])).to.deep.equal(['scn-é-3', 'scn-😀-1', 'scn-4']);
      expect(reads.filter(name => name === 'get')).to.have.length(1);
    } finally {
      redis.sendCommand = send;
    }
  });
});
