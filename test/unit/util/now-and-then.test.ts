import { expect } from 'chai';
import { nowAndThen } from '../../../src/util/now-and-then.js';

describe('nowAndThen: a word said at most once in a while', () => {
  it('says the first occasion at once, keeps the next ones quiet for the interval, then says how many the word stands for', () => {
    const word = nowAndThen(30_000);
    expect(word.take(1_000)).to.equal(1);
    expect(word.take(1_001)).to.equal(0);
    expect(word.take(30_999)).to.equal(0);
    // 31,000 is 30 s after the last word: this occasion and the two kept quiet.
    expect(word.take(31_000)).to.equal(3);
    expect(word.take(31_001)).to.equal(0);
    expect(word.take(61_001)).to.equal(2);
  });

  it('says every occasion when they are further apart than the interval', () => {
    const word = nowAndThen(10);
    expect([0, 10, 25, 40].map(t => word.take(t))).to.deep.equal([1, 1, 1, 1]);
  });

  it('counts in wall time by default', () => {
    const word = nowAndThen(60_000);
    expect(word.take()).to.equal(1);
    expect(word.take()).to.equal(0);
  });
});
