import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { RawJson, jsonPieces, stringifyJson, stringifyJsonBytes } from '../../../src/util/raw-json.js';

describe('RawJson and stringifyJson', () => {
  const state = { rooms: { R1: { n: 1.5, tags: ['a', 'é\u2028"q"'], none: null } }, list: [1, -0, 1e21, 5e-7] };
  const text = JSON.stringify(state);

  it('writes a value holding raw JSON text exactly as JSON.stringify writes the parsed value', () => {
    const doc = { id: 't1', finalState: new RawJson(text), nested: [{ also: new RawJson('[1,2]') }], s: 'a "quoted" \u0000 string' };
    expect(stringifyJson(doc)).to.equal(JSON.stringify({ id: 't1', finalState: state, nested: [{ also: [1, 2] }], s: 'a "quoted" \u0000 string' }));
  });

  it('gives the parsed value to a plain JSON.stringify and to value()', () => {
    const raw = new RawJson(text);
    expect(JSON.stringify({ x: raw })).to.equal(JSON.stringify({ x: state }));
    expect(raw.value()).to.deep.equal(JSON.parse(text));
  });

  it('gives the same text as bytes written piece by piece, and pieces whose hash is the whole text\'s, with multi-byte text at every seam', () => {
    const emoji = new RawJson(JSON.stringify({ name: 'Zoë 😀', city: '東京', note: 'naïve — café' }));
    const docs: unknown[] = [
      { id: 'tr-😀', finalState: new RawJson(text), messages: [{ content: '中文 and émoji 🎉' }], tail: new RawJson('"ü"') },
      [new RawJson('1'), new RawJson('{}'), emoji, '👍'],
      { only: emoji },
      new RawJson('"😀"'),
      { none: 'no raw JSON here: ß' },
    ];
    for (const doc of docs) {
      const whole = stringifyJson(doc)!;
      expect(stringifyJsonBytes(doc)!.equals(Buffer.from(whole, 'utf8'))).to.equal(true);
      const pieces = jsonPieces(doc)!;
      expect(pieces.join('')).to.equal(whole);
      const hash = createHash('sha256');
      for (const p of pieces) hash.update(p, 'utf8');
      expect(hash.digest('hex')).to.equal(createHash('sha256').update(whole).digest('hex'));
    }
    expect(stringifyJsonBytes(undefined)).to.equal(undefined);
    expect(jsonPieces(() => 1)).to.equal(undefined);
  });

  it('leaves alone strings that look like a placeholder and values without raw JSON', () => {
    const doc = { a: '\u0000envfleet-raw-json:0', b: [1, { c: 'x' }] };
    expect(stringifyJson(doc)).to.equal(JSON.stringify(doc));
    expect(stringifyJson(undefined)).to.equal(undefined);
  });
});
