import { expect } from 'chai';
import { toolsOf } from '../../../src/synthesis/assemble.js';
import { TOOL_SCHEMA_BOUNDS, typedParameters, withTypedParameters } from '../../../src/synthesis/tool-schemas.js';
import { compileJsonSchema } from '../../../src/util/json-schema.js';
import { untypedProperties } from '../../helpers/formats.js';

type S = Record<string, unknown>;
const props = (s: unknown) => (s as { properties: Record<string, S> }).properties;

describe('typedParameters: a type on every property of a tool schema', () => {
  it('types an enum of strings as a string, puts the type first, and changes neither the input nor what it accepts', () => {
    const input = { type: 'object', properties: { size: { description: 'Größe — 大きさ 🚗', enum: ['kompakt', 'größer', '大型', '🚚'] } }, required: ['size'], additionalProperties: false };
    const before = JSON.stringify(input);
    const out = typedParameters(input);
    expect(JSON.stringify(input)).to.equal(before);
    expect(props(out)['size']).to.deep.equal({ type: 'string', description: 'Größe — 大きさ 🚗', enum: ['kompakt', 'größer', '大型', '🚚'] });
    expect(Object.keys(props(out)['size']!)[0]).to.equal('type');
    expect(untypedProperties(out)).to.deep.equal([]);
    const validate = compileJsonSchema(out);
    for (const size of ['kompakt', '大型', '🚚']) expect(validate({ size }), size).to.equal(true);
    for (const size of ['big', 3, null]) expect(validate({ size }), String(size)).to.equal(false);
  });

  it('infers from const, mixed enums, default and examples', () => {
    const out = props(typedParameters({
      type: 'object',
      properties: {
        flag: { const: true },
        level: { enum: [1, 2, 3] },
        ratio: { enum: [1, 2.5] },
        mixed: { enum: ['ä', 1, null] },
        note: { default: 'café' },
        when: { examples: [20, 'x'] },
      },
    }));
    expect(out['flag']!['type']).to.equal('boolean');
    expect(out['level']!['type']).to.equal('integer');
    expect(out['ratio']!['type']).to.equal('number');
    expect(out['mixed']!['type']).to.deep.equal(['string', 'integer', 'null']);
    expect(out['note']!['type']).to.equal('string');
    expect(out['when']!['type']).to.equal('integer');
  });

  it('infers from the keywords of one type, and falls back to string for a described but untyped argument', () => {
    const out = props(typedParameters({
      type: 'object',
      properties: {
        amount: { minimum: 0, description: 'Betrag in €' },
        code: { pattern: '^[A-Z]+$' },
        tags: { minItems: 1 },
        address: { required: ['city'] },
        anything: { description: '任意の値' },
      },
    }));
    expect(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v['type']]))).to.deep.equal({ amount: 'number', code: 'string', tags: 'array', address: 'object', anything: 'string' });
  });

  it('types nested objects, array items, tuples, additionalProperties and patternProperties', () => {
    const out = typedParameters({
      type: 'object',
      properties: {
        guest: { properties: { name: { description: 'José 👋' }, vip: { enum: [true, false] } } },
        rooms: { items: { enum: ['single', 'double'] } },
        pair: { type: 'array', items: [{ enum: ['a'] }, { minimum: 1 }] },
        extras: { type: 'object', additionalProperties: { enum: ['x'] }, patternProperties: { '^n_': { maximum: 3 } } },
      },
    });
    const p = props(out);
    expect(p['guest']!['type']).to.equal('object');
    expect(props(p['guest'])['name']!['type']).to.equal('string');
    expect(props(p['guest'])['vip']!['type']).to.equal('boolean');
    expect(p['rooms']).to.deep.include({ type: 'array' });
    expect((p['rooms']!['items'] as S)['type']).to.equal('string');
    expect((p['pair']!['items'] as S[]).map(i => i['type'])).to.deep.equal(['string', 'number']);
    expect((p['extras']!['additionalProperties'] as S)['type']).to.equal('string');
    expect(((p['extras']!['patternProperties'] as Record<string, S>)['^n_'])!['type']).to.equal('number');
    expect(untypedProperties(out)).to.deep.equal([]);
  });

  it('infers from anyOf/oneOf branches (typed or inferred), allOf, and local $refs, bounded on cycles', () => {
    const out = typedParameters({
      type: 'object',
      definitions: { Colour: { enum: ['rot', 'grün'] }, Loop: { $ref: '#/definitions/Loop' } },
      properties: {
        id: { anyOf: [{ type: 'string' }, { type: 'integer' }] },
        either: { oneOf: [{ enum: ['a'] }, { type: 'null' }] },
        all: { allOf: [{ description: 'x' }, { minimum: 2 }] },
        colour: { $ref: '#/definitions/Colour' },
        loop: { $ref: '#/definitions/Loop' },
        self: { $ref: '#' },
      },
    });
    const p = props(out);
    expect(p['id']!['type']).to.deep.equal(['string', 'integer']);
    expect(p['either']!['type']).to.deep.equal(['string', 'null']);
    expect(p['all']!['type']).to.equal('number');
    expect(p['colour']!['type']).to.equal('string');
    expect(p['loop']!['type']).to.equal('string'); // a cycle has no type: the fallback
    expect(p['self']!['type']).to.equal('object');
    expect(() => compileJsonSchema(out)).not.to.throw();
  });

  it('keeps an existing type, a list of types included, and leaves boolean and malformed schemas alone', () => {
    const input = { type: 'object', properties: { a: { type: ['string', 'null'] }, b: true, c: { type: 'integer', enum: ['x'] } } };
    expect(typedParameters(input)).to.deep.equal(input);
    expect(typedParameters(null)).to.equal(null);
    expect(typedParameters([1, 2])).to.deep.equal([1, 2]);
  });

  it('keeps a "__proto__" property as a plain key and pollutes no prototype', () => {
    const input = JSON.parse('{"type":"object","properties":{"__proto__":{"enum":["ü"]},"constructor":{"enum":[1]}}}') as S;
    const out = typedParameters(input);
    const p = props(out);
    expect(Object.prototype.hasOwnProperty.call(p, '__proto__')).to.equal(true);
    expect(Object.getOwnPropertyDescriptor(p, '__proto__')!.value).to.deep.equal({ type: 'string', enum: ['ü'] });
    expect(p['constructor']).to.deep.equal({ type: 'integer', enum: [1] });
    expect(Object.getPrototypeOf(p)).to.equal(Object.prototype);
    expect(({} as S)['type']).to.equal(undefined);
  });

  it('is bounded: a schema nested 20,000 levels deep or 50,000 properties wide returns without overflowing', () => {
    let deep: S = { enum: ['leaf'] };
    for (let i = 0; i < 20_000; i += 1) deep = { properties: { x: deep } };
    const started = Date.now();
    const out = typedParameters(deep);
    let node = out;
    for (let i = 0; i <= TOOL_SCHEMA_BOUNDS.maxDepth; i += 1) {
      expect(node['type'], `level ${i}`).to.equal('object');
      node = props(node)['x']!;
    }
    expect(node['type']).to.equal(undefined); // past the bound: kept as it was

    const wide: S = { type: 'object', properties: Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`p${i}`, { enum: [`v${i}`] }])) };
    const typed = props(typedParameters(wide));
    expect(typed['p0']!['type']).to.equal('string');
    expect(typed['p49999']!['type']).to.equal(undefined); // past the node budget: kept as it was
    expect(Date.now() - started).to.be.lessThan(5_000);
  });

  it('withTypedParameters and toolsOf: every tool built at synthesis time has typed parameters', () => {
    const tools = toolsOf([
      { name: 'park_vehicle', kind: 'state_change', description: 'Parkt ein Fahrzeug 🚗', parameters: { type: 'object', properties: { plate: { type: 'string' }, size: { enum: ['compact', 'large'] } }, required: ['plate', 'size'] } },
    ]);
    expect(props(tools[0]!.function.parameters)['size']).to.deep.equal({ type: 'string', enum: ['compact', 'large'] });
    const untouched = [{ type: 'function', function: { name: 'ping' } }, 'not a tool'];
    expect(withTypedParameters(untouched)).to.deep.equal(untouched);
  });
});
