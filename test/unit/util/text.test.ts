import { expect } from 'chai';
import { truncateForLog } from '../../../src/logger.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner } from '../../../src/sandbox/runner.js';
import { clip, testerPrompt } from '../../../src/synthesis/prompts.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { cutText, cutUtf8, wellFormed as madeWellFormed } from '../../../src/util/text.js';

/** A lone half of a surrogate pair: no character, refused by servers that encode the text as UTF-8. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const wellFormed = (s: string) => !LONE_SURROGATE.test(s);

describe('cutting text never splits a character written as a surrogate pair', () => {
  it('cutText keeps whole pairs and at most max code units', () => {
    expect(cutText('a😀b', 2)).to.equal('a');
    expect(cutText('a😀b', 3)).to.equal('a😀');
    expect(cutText('😀', 1)).to.equal('');
    expect(cutText('héllo 漢字', 7)).to.equal('héllo 漢');
    expect(cutText('short', 10)).to.equal('short');
    for (let max = 0; max < 12; max += 1) {
      const cut = cutText('x😀𠀀ab😀', max);
      expect(cut.length).to.be.at.most(max);
      expect(wellFormed(cut), `max ${max}: ${JSON.stringify(cut)}`).to.equal(true);
    }
  });

  it('cutUtf8 keeps whole characters within a number of UTF-8 bytes (a WebSocket close reason: 123)', () => {
    expect(cutUtf8('short', 123)).to.equal('short');
    expect(cutUtf8('héllo', 2)).to.equal('h'); // é is two bytes: not cut in half
    expect(cutUtf8('héllo', 3)).to.equal('hé');
    expect(cutUtf8('漢字', 5)).to.equal('漢'); // three bytes each
    expect(cutUtf8('a😀b', 4)).to.equal('a'); // four bytes, a surrogate pair in UTF-16
    expect(cutUtf8('a😀b', 5)).to.equal('a😀');
    expect(cutUtf8('😀', 0)).to.equal('');
    const text = `${'é'.repeat(40)}漢字😀${'x'.repeat(10)}😀`.repeat(3);
    for (let max = 0; max <= 130; max += 1) {
      const cut = cutUtf8(text, max);
      const bytes = Buffer.from(cut, 'utf8');
      expect(bytes.length, `max ${max}`).to.be.at.most(max);
      expect(text.startsWith(cut)).to.equal(true);
      expect(wellFormed(cut), `max ${max}`).to.equal(true);
      // The longest such start: one more character would not fit.
      const next = text.slice(cut.length).codePointAt(0)!;
      expect(bytes.length + Buffer.byteLength(String.fromCodePoint(next)), `max ${max}`).to.be.greaterThan(max);
      // Decoded strictly, the bytes are the same text (no character cut in the middle).
      expect(new TextDecoder('utf-8', { fatal: true }).decode(bytes)).to.equal(cut);
    }
  });

  it("a synthesis prompt that shows a long state full of emoji shows whole characters (the tester's 10,000-character cut)", () => {
    const env = { description: { summary: 'Chat app 💬', introduction: 'Messages with emoji' }, tools: [] } as unknown as EnvironmentRecord;
    for (const prefix of ['', 'a', 'ab', 'abc']) {
      const state = { note: prefix + '😀'.repeat(8_000) };
      const prompt = testerPrompt(env, {}, state);
      for (const m of prompt) expect(wellFormed(m.content as string), `prefix "${prefix}"`).to.equal(true);
      expect(prompt[1]!.content).to.match(/more characters not shown/);
      expect(wellFormed(clip(JSON.stringify(state), 4_001))).to.equal(true);
    }
  });

  it('a log excerpt (truncateForLog) of text full of emoji is well formed and counts what it left out', () => {
    for (const prefix of ['', 'a']) {
      const text = prefix + '😀'.repeat(400);
      const cut = truncateForLog(text, 301);
      expect(wellFormed(cut)).to.equal(true);
      const shown = cut.slice(0, cut.indexOf('… ('));
      expect(cut).to.include(`(${text.length - shown.length} more chars)`);
    }
  });

  it("a check that returns a long non-boolean string of emoji is reported with whole characters (the sandbox's 200-character cut)", async function () {
    this.timeout(20_000);
    const runner = createLocalSandboxRunner();
    try {
      const result = await runner.checks({
        checks: [
          { item: 'even', check: `function check() { return ${JSON.stringify('😀'.repeat(150))}; }` },
          { item: 'odd', check: `function check() { return ${JSON.stringify(`a${'😀'.repeat(150)}`)}; }` },
        ],
        finalState: {},
        initialState: {},
        limits: DEFAULT_SANDBOX_LIMITS,
      });
      for (const r of result.results) {
        expect(r.passed).to.equal(false);
        expect(r.errorCode).to.equal('CHECK_NOT_BOOLEAN');
        expect(wellFormed(r.error ?? ''), r.error).to.equal(true);
      }
    } finally {
      await runner.close();
    }
  });
});

describe('firstInvalidUtf8 finds the first byte that is not UTF-8, as a strict decoder does', () => {
  it('agrees with TextDecoder (fatal) on valid text, Latin-1, overlong forms, surrogates, cut sequences and code points past U+10FFFF', async () => {
    const { firstInvalidUtf8 } = await import('../../../src/util/utf8.js');
    const strict = new TextDecoder('utf-8', { fatal: true });
    const cases: number[][] = [
      [...Buffer.from('héllo 漢字 😀 עִבְרִית')],
      [0x52, 0xe9, 0x73],
      [0xc0, 0xaf],
      [0xe0, 0x80, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xf0, 0x9f, 0x98],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf5, 0x80, 0x80, 0x80],
      [0x61, 0x80],
      [0xe2, 0x82, 0xac, 0xe2, 0x82],
    ];
    for (const bytes of cases) {
      const at = firstInvalidUtf8(Uint8Array.from(bytes));
      let valid = true;
      try {
        strict.decode(Uint8Array.from(bytes));
      } catch {
        valid = false;
      }
      expect(at === -1, bytes.join(' ')).to.equal(valid);
      if (!valid) expect(() => strict.decode(Uint8Array.from(bytes.slice(0, at)))).to.not.throw();
    }
  });
});

describe('wellFormed writes each lone surrogate of a value as U+FFFD', () => {
  it('in strings, keys, arrays and nested objects, copying only what changes, and leaves pairs and other values as they are', () => {
    const clean = { a: 'whole 😀', n: 1, list: [null, true, 'x'] };
    expect(madeWellFormed(clean)).to.equal(clean);
    expect(madeWellFormed('\ud83d')).to.equal('\ufffd');
    expect(madeWellFormed('a\udc00\ud83d😀')).to.equal('a\ufffd\ufffd😀');
    const dirty = { keep: clean, text: 'cut \ud83d', list: ['ok', { ['k\ud800']: ['\udfff'] }] };
    const got = madeWellFormed(dirty);
    expect(got).to.deep.equal({ keep: clean, text: 'cut \ufffd', list: ['ok', { 'k\ufffd': ['\ufffd'] }] });
    expect(got.keep).to.equal(clean);
    expect(dirty.text).to.equal('cut \ud83d'); // the value given is not changed
  });
});
