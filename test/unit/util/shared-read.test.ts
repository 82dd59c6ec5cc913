import { expect } from 'chai';
import { sharedRead } from '../../../src/util/shared-read.js';
import { rejection } from '../../helpers/assert.js';

describe('sharedRead', () => {
  it('gives the callers that ask while a read is out its answer, per key, and sends a new read after it settles', async () => {
    const inFlight = new Map<string, Promise<string>>();
    const reads: string[] = [];
    const read = (key: string) => {
      reads.push(key);
      return Promise.resolve(`${key}#${reads.length}`);
    };
    const together = await Promise.all([sharedRead(inFlight, 'ü', read), sharedRead(inFlight, 'ü', read), sharedRead(inFlight, '运行', read)]);
    expect(together).to.deep.equal(['ü#1', 'ü#1', '运行#2']);
    expect(await sharedRead(inFlight, 'ü', read)).to.equal('ü#3');
    expect(inFlight.size).to.equal(0);
  });

  it('forgets a failed read: its callers get the error, the next caller reads again', async () => {
    const inFlight = new Map<string, Promise<number>>();
    let n = 0;
    const read = () => (++n === 1 ? Promise.reject(new Error('Redis gone')) : Promise.resolve(n));
    const [a, b] = await Promise.all([rejection(sharedRead(inFlight, 'k', read)), rejection(sharedRead(inFlight, 'k', read))]);
    expect(String(a)).to.match(/Redis gone/);
    expect(b).to.equal(a);
    expect(await sharedRead(inFlight, 'k', read)).to.equal(2);
    expect(inFlight.size).to.equal(0);
  });
});
