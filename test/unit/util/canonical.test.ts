import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { canonicalJson, hashOf, hashOfWith, sha256 } from '../../../src/util/canonical.js';

describe('canonical JSON', () => {
  it('sorts keys at every level, drops undefined members and writes arrays in order', () => {
    expect(canonicalJson({ b: [3, { d: 1, c: undefined, a: 'é' }], a: null })).to.equal('{"a":null,"b":[3,{"a":"é","d":1}]}');
  });

  it('hashes the same with known parts taken from the memo: the cache key of a chat request does not change', () => {
    const tools = (JSON.parse(readFileSync(new URL('../../../fixtures/reference/hotel-env.bundle.json', import.meta.url), 'utf8')) as { tools: object[] }).tools;
    const key = {
      v: 1,
      run: 'r',
      stage: 'rollout.policy',
      salt: 'traj:agent-3',
      req: {
        model: 'm',
        messages: [
          { role: 'system', content: 'Réponds 🙂 — 中文也行' },
          { role: 'assistant', content: null, tool_calls: [{ id: 't1', type: 'function', function: { name: 'get_guest', arguments: '{"guest_id":"G1"}' } }] },
        ],
        tools: [...tools],
        temperature: 1,
        seed: undefined,
      },
    };
    const known = new WeakMap<object, string>();
    expect(hashOfWith(key, known)).to.equal(hashOf(key));
    for (const t of tools) known.set(t, canonicalJson(t));
    // A nested known value too (the messages array).
    known.set(key.req.messages, canonicalJson(key.req.messages));
    expect(hashOfWith(key, known)).to.equal(hashOf(key));
  });

  it('hashes a known object as its remembered text, wherever it appears', () => {
    const part = { b: 1, a: 2 };
    const known = new WeakMap<object, string>([[part, '{"a":2,"b":1, "remembered":true}']]);
    expect(hashOfWith({ x: part, y: [part] }, known)).to.equal(sha256('{"x":{"a":2,"b":1, "remembered":true},"y":[{"a":2,"b":1, "remembered":true}]}'));
  });
});
