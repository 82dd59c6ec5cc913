import { expect } from 'chai';
import { jsonItemTexts, jsonMemberText, jsonMemberTexts } from '../../../src/util/json-member.js';

describe('jsonMemberText: a member of a JSON object as written', () => {
  it('gives the value as the file spells it, past strings that hold braces, quotes and escapes', () => {
    const text = ' {\n "a": "}{\\"]", "init_config" : {"x": [5.0, {"y": "a\\\\"}], "n": 12345678901234567891} , "b": -0.0 }';
    expect(jsonMemberText(text, 'init_config')).to.equal('{"x": [5.0, {"y": "a\\\\"}], "n": 12345678901234567891}');
    expect(jsonMemberText(text, 'b')).to.equal('-0.0');
    expect(jsonMemberText(text, 'a')).to.equal('"}{\\"]"');
    expect(jsonMemberText(text, 'missing')).to.equal(undefined);
  });

  it('gives the last of a repeated member, as JSON.parse keeps it; a key written with escapes is matched by its value', () => {
    expect(jsonMemberText('{"k": 1, "k": [2.0], "\\u00e9t\\u00e9 🌞": true}', 'k')).to.equal('[2.0]');
    expect(jsonMemberText('{"k": 1, "\\u00e9t\\u00e9 🌞": 1e16}', 'été 🌞')).to.equal('1e16');
  });

  it('is not fooled by 100,000 nested arrays (no recursion) and is undefined for a value that is not an object', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(jsonMemberText(`{"d": ${deep}, "z": null}`, 'z')).to.equal('null');
    expect(jsonMemberText('[1, 2]', 'a')).to.equal(undefined);
  });
});

describe('jsonItemTexts: the items of a JSON array as written', () => {
  it('gives each item as the text spells it, past strings that hold brackets, commas and escapes, multi-byte text included', () => {
    const text = ' [ {"b": 100.0, "id": 9223372036854775815} ,{"s":"], [\\"x\\", 😀 été 夏"} , 2.50, "a,b", [ [], {} ], null ] ';
    expect(jsonItemTexts(text)).to.deep.equal(['{"b": 100.0, "id": 9223372036854775815}', '{"s":"], [\\"x\\", 😀 été 夏"}', '2.50', '"a,b"', '[ [], {} ]', 'null']);
    expect(jsonItemTexts('[]')).to.deep.equal([]);
  });

  it('is undefined for a value that is not an array, and does not recurse into 100,000 nested arrays', () => {
    expect(jsonItemTexts('{"a": [1]}')).to.equal(undefined);
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    expect(jsonItemTexts(`[${deep}, 1]`)).to.deep.equal([deep, '1']);
  });
});

describe('jsonMemberTexts: every member of a JSON object as written', () => {
  it('gives each key and value text in the order written, an integer-like key and a repeated one in their places', () => {
    const text = '{\n  "b": {\n    "n": 1.0\n  },\n  "2024": "}{",\n  "b": [ ],\n  "\\u00e9": null\n}';
    expect(jsonMemberTexts(text)).to.deep.equal([['b', '{\n    "n": 1.0\n  }'], ['2024', '"}{"'], ['b', '[ ]'], ['é', 'null']]);
    expect(jsonMemberTexts(' {} ')).to.deep.equal([]);
    expect(jsonMemberTexts('[{"a": 1}]')).to.equal(undefined);
  });
});
