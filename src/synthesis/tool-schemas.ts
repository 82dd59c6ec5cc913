/**
 * Gives every property of a tool's parameter schema a `type`.
 *
 * Trainers and chat templates read a tool's parameters as typed fields: verl's tool schema
 * (`OpenAIFunctionPropertySchema`) requires `type` on every property, templates render it, and OpenAI's
 * strict mode wants it. A model writing `{"size": {"enum": ["compact", "large"]}}` leaves it out. The type
 * is inferred from what the schema already says, so that the values it accepts do not change wherever
 * they can be told:
 *
 * 1. `const`, then `enum`: the JSON types of the values (`["a", "b"]` → `"string"`; `[1, "a"]` →
 *    `["string", "integer"]`; `null` among them adds `"null"`).
 * 2. `anyOf` / `oneOf` whose branches all have a type (declared, or inferred by these rules): the union
 *    of their types; `allOf`: the first branch with one.
 * 3. A local `$ref` (`#/definitions/X`, `#/$defs/X`, any JSON pointer into the same schema): the type of
 *    its target (following up to 8 references).
 * 4. The keywords of one type: `properties`, `required`, `additionalProperties`… → `"object"`; `items`,
 *    `minItems`… → `"array"`; `minLength`, `pattern`, `format` → `"string"`; `minimum`, `multipleOf`… →
 *    `"number"`.
 * 5. `default`, then the first of `examples`.
 * 6. Otherwise `"string"` (what a tool-calling model sends for a described but untyped argument).
 *
 * Only 4 and 6 can narrow what the schema accepts; 6 is the only guess. Nested schemas are typed too:
 * the values of `properties` and `patternProperties`, `items` (one schema or a tuple), `additionalItems`
 * and `additionalProperties` when they are schemas, and, wherever they are, the properties inside
 * `anyOf`/`oneOf`/`allOf`, `not`, `if`/`then`/`else`, `definitions`/`$defs` and `dependencies`. An existing
 * `type` is kept as it is (a list of types included).
 *
 * The schemas come from a model: the walk is bounded (MAX_DEPTH levels of schema, MAX_NODES schema objects;
 * past either, the rest is kept as it was), runs no regular expression, reads only own keys, copies
 * instead of changing its input, and keeps a `__proto__` key as a plain key.
 */
export const TOOL_SCHEMA_BOUNDS = { maxDepth: 64, maxNodes: 20_000, maxRefHops: 8 } as const;

type JsonType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';
const TYPE_ORDER: readonly JsonType[] = ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'];

/** Keywords whose value maps names to schemas; in the first two, each schema is a property (typed). */
const PROPERTY_MAPS = new Set(['properties', 'patternProperties']);
const SCHEMA_MAPS = new Set(['definitions', '$defs', 'dependentSchemas', 'dependencies']);
/** Keywords whose value is a schema that describes a value (typed). */
const VALUE_SCHEMAS = new Set(['items', 'additionalItems', 'additionalProperties', 'contains', 'unevaluatedItems', 'unevaluatedProperties']);
/** Keywords whose value is a schema (or a list of them) that constrains the same value (walked, not typed). */
const SUB_SCHEMAS = new Set(['not', 'if', 'then', 'else', 'propertyNames']);
const BRANCHES = new Set(['anyOf', 'oneOf', 'allOf']);

const KEYWORD_TYPES: readonly (readonly [JsonType, readonly string[]])[] = [
  ['object', ['properties', 'required', 'additionalProperties', 'patternProperties', 'minProperties', 'maxProperties', 'propertyNames', 'dependencies', 'dependentRequired', 'dependentSchemas', 'unevaluatedProperties']],
  ['array', ['items', 'additionalItems', 'minItems', 'maxItems', 'uniqueItems', 'contains', 'minContains', 'maxContains', 'prefixItems', 'unevaluatedItems']],
  ['string', ['minLength', 'maxLength', 'pattern', 'format', 'contentEncoding', 'contentMediaType']],
  ['number', ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']],
];

type Schema = Record<string, unknown>;
const isObject = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);
const get = (o: Schema, key: string): unknown => (has(o, key) ? o[key] : undefined);

/** Sets a key as an own data property ("__proto__" included: assignment would change the prototype). */
function setOwn(target: Schema, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function typeOfValue(v: unknown): JsonType | null {
  if (v === null) return 'null';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return null;
}

/** One type, or a list in a fixed order; `integer` is folded into `number` when both occur. */
function typeOfSet(types: ReadonlySet<JsonType>): JsonType | JsonType[] | null {
  const list = TYPE_ORDER.filter(t => types.has(t) && !(t === 'integer' && types.has('number')));
  if (!list.length) return null;
  return list.length === 1 ? list[0]! : list;
}

/** The types a `type` keyword names, or null when it is not a usable one. */
function declaredTypes(type: unknown): JsonType[] | null {
  const list = typeof type === 'string' ? [type] : Array.isArray(type) ? type : null;
  if (!list || !list.length) return null;
  const out: JsonType[] = [];
  for (const t of list) {
    if (typeof t !== 'string' || !TYPE_ORDER.includes(t as JsonType)) return null;
    out.push(t as JsonType);
  }
  return out;
}

/** Follows a local JSON pointer (`#/a/b`) in the root schema; no pattern matching, bounded by its segments. */
function resolvePointer(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    segment = segment.split('~1').join('/').split('~0').join('~');
    if (Array.isArray(node)) {
      const i = Number(segment);
      node = Number.isInteger(i) && i >= 0 && i < node.length ? node[i] : undefined;
    } else if (isObject(node)) node = get(node, segment);
    else return undefined;
  }
  return node;
}

/** The type of a schema from its own keywords (rules 1-5 of the header), without walking into its properties. */
function inferType(schema: Schema, root: unknown, hops: number): JsonType | JsonType[] | null {
  const declared = declaredTypes(get(schema, 'type'));
  if (declared) return typeOfSet(new Set(declared));
  if (has(schema, 'const')) return typeOfValue(schema['const']);
  const values = get(schema, 'enum');
  if (Array.isArray(values) && values.length) {
    const types = new Set<JsonType>();
    for (const v of values) {
      const t = typeOfValue(v);
      if (t) types.add(t);
    }
    const t = typeOfSet(types);
    if (t) return t;
  }
  // Branches and references are inferred the same way, up to maxRefHops levels of them.
  const branchType = (b: unknown) => (isObject(b) && hops < TOOL_SCHEMA_BOUNDS.maxRefHops ? inferType(b, root, hops + 1) : null);
  for (const key of ['anyOf', 'oneOf']) {
    const branches = get(schema, key);
    if (!Array.isArray(branches) || !branches.length) continue;
    const types = new Set<JsonType>();
    let all = true;
    for (const b of branches) {
      const t = branchType(b);
      if (!t) {
        all = false;
        break;
      }
      for (const x of typeof t === 'string' ? [t] : t) types.add(x);
    }
    const t = all ? typeOfSet(types) : null;
    if (t) return t;
  }
  const allOf = get(schema, 'allOf');
  if (Array.isArray(allOf)) {
    for (const b of allOf) {
      const t = branchType(b);
      if (t) return t;
    }
  }
  const ref = get(schema, '$ref');
  if (typeof ref === 'string' && hops < TOOL_SCHEMA_BOUNDS.maxRefHops) {
    const target = resolvePointer(root, ref);
    if (isObject(target) && target !== schema) {
      const t = inferType(target, root, hops + 1);
      if (t) return t;
    }
  }
  for (const [type, keywords] of KEYWORD_TYPES) if (keywords.some(k => has(schema, k))) return type;
  if (has(schema, 'default')) {
    const t = typeOfValue(schema['default']);
    if (t) return t;
  }
  const examples = get(schema, 'examples');
  if (Array.isArray(examples) && examples.length) {
    const t = typeOfValue(examples[0]);
    if (t) return t;
  }
  return null;
}

interface Walk {
  readonly root: unknown;
  nodes: number;
}

/**
 * A copy of `schema` with types added (`typed`: this schema describes a value, so it gets one). Past the
 * bounds, or for anything that is not a schema object (`true`, `false`, a malformed value), the value is
 * returned as it is.
 */
function walk(schema: unknown, depth: number, typed: boolean, w: Walk): unknown {
  if (!isObject(schema) || depth > TOOL_SCHEMA_BOUNDS.maxDepth || w.nodes >= TOOL_SCHEMA_BOUNDS.maxNodes) return schema;
  w.nodes += 1;
  const out: Schema = {};
  for (const key of Object.keys(schema)) {
    const value = schema[key];
    let copy: unknown = value;
    if ((PROPERTY_MAPS.has(key) || SCHEMA_MAPS.has(key)) && isObject(value)) {
      const map: Schema = {};
      // dependencies: a list of names is data, a schema is walked.
      for (const name of Object.keys(value)) setOwn(map, name, walk(value[name], depth + 1, PROPERTY_MAPS.has(key), w));
      copy = map;
    } else if (key === 'items' || key === 'prefixItems') {
      copy = Array.isArray(value) ? value.map(v => walk(v, depth + 1, true, w)) : walk(value, depth + 1, true, w);
    } else if (VALUE_SCHEMAS.has(key)) {
      copy = walk(value, depth + 1, true, w);
    } else if (SUB_SCHEMAS.has(key)) {
      copy = walk(value, depth + 1, false, w);
    } else if (BRANCHES.has(key) && Array.isArray(value)) {
      copy = value.map(v => walk(v, depth + 1, false, w));
    }
    setOwn(out, key, copy);
  }
  if (!typed || has(out, 'type')) return out;
  // Inferred from the walked copy, so that typed branches count; the type goes first, where people look.
  const type = inferType(out, w.root, 0) ?? 'string';
  const withType: Schema = { type };
  for (const key of Object.keys(out)) setOwn(withType, key, out[key]);
  return withType;
}

/** A tool's parameter schema with a type on itself and on every property, at any depth (see the header). */
export function typedParameters<T>(parameters: T): T {
  if (!isObject(parameters)) return parameters;
  return walk(parameters, 0, true, { root: parameters, nodes: 0 }) as T;
}

/** OpenAI function tools whose parameter schemas have a type on every property; anything else is kept as it is. */
export function withTypedParameters<T>(tools: readonly T[]): T[] {
  return tools.map(tool => {
    if (!isObject(tool) || !isObject(tool['function'])) return tool;
    const fn = tool['function'];
    if (!has(fn, 'parameters')) return tool;
    return { ...tool, function: { ...fn, parameters: typedParameters(fn['parameters']) } };
  });
}
