import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { SharedTextCache, SharedTexts } from '../../../src/sandbox/shared-text.js';

describe('shared texts: one copy of an initial state for every session task', () => {
  const text = JSON.stringify({ guest: 'Zoë 客房 🏨', notes: 'é'.repeat(1_000), emoji: '😀'.repeat(500) });

  it('writes a text once, keeps it by content, and gives it back byte for byte in another thread', async () => {
    const texts = new SharedTexts(2);
    const a = texts.of(text);
    expect(texts.of(`${text}`)).to.equal(a); // equal content, not only the same string
    expect(a.length).to.equal(Buffer.byteLength(text));
    const other = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       parentPort.postMessage(Buffer.from(workerData.bytes, 0, workerData.length).toString('utf8'));`,
      { eval: true, workerData: a },
    );
    const seen = await new Promise<string>((resolve, reject) => other.once('message', resolve).once('error', reject));
    await other.terminate();
    expect(seen).to.equal(text);
    // Least recently used out: a third text drops the one not asked for since.
    const b = texts.of('{"b":1}');
    texts.of(text);
    texts.of('{"c":1}');
    expect(texts.of(text)).to.equal(a);
    expect(texts.of('{"b":1}')).to.not.equal(b);
  });

  it('keeps no more bytes than its bound, the newest text always', () => {
    const texts = new SharedTexts(32, 10_000);
    const big = (n: number) => JSON.stringify({ n, pad: '客'.repeat(1_500) }); // ≈ 4.5 KB of UTF-8
    const first = texts.of(big(1));
    texts.of(big(2));
    expect(texts.of(big(1))).to.equal(first);
    texts.of(big(3)); // over 10,000 bytes with three: the least recently used (2) goes
    expect(texts.of(big(1))).to.equal(first);
    const huge = texts.of(JSON.stringify({ pad: 'x'.repeat(50_000) })); // larger than the bound alone: kept, the rest dropped
    expect(texts.of(JSON.stringify({ pad: 'x'.repeat(50_000) }))).to.equal(huge);
    expect(texts.of(big(1))).to.not.equal(first);
    const cache = new SharedTextCache(32, 10_000);
    const a = new SharedTexts().of(big(1));
    const b = new SharedTexts().of(big(2));
    const c = new SharedTexts().of(big(3));
    for (const shared of [a, b, c, a]) expect(cache.text(shared)).to.equal(JSON.parse(JSON.stringify(Buffer.from(shared.bytes).toString('utf8'))));
  });

  it('decodes a shared text once per thread and keeps the string by its key', () => {
    const cache = new SharedTextCache(1);
    const a = new SharedTexts().of(text);
    const first = cache.text(a);
    expect(first).to.equal(text);
    expect(cache.text(a)).to.equal(first);
    // Another text pushes it out of a one-entry cache; decoding it again still gives the same text.
    const b = new SharedTexts().of('{"客":"房"}');
    expect(cache.text(b)).to.equal('{"客":"房"}');
    expect(cache.text(a)).to.equal(text);
  });
});
