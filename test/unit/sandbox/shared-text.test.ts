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
