import { expect } from 'chai';
import { canonicalJson } from '../../../src/util/canonical.js';

describe('canonical JSON', () => {
  it('sorts keys at every level, drops undefined members and writes arrays in order', () => {
    expect(canonicalJson({ b: [3, { d: 1, c: undefined, a: 'é' }], a: null })).to.equal('{"a":null,"b":[3,{"a":"é","d":1}]}');
  });
});
