import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { z } from 'zod';

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new WeakMap<object, ValidateFunction>();

/** Compiles a JSON Schema (cached per schema object), or throws a message naming the problem. */
export function compileJsonSchema(schema: object): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  return validate;
}

export function describeAjvErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 20)
    .map(e => `- at ${e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(top level)'}: ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` ("${String(e.params['additionalProperty'])}")` : ''}`)
    .join('\n');
}

/** A zod schema that accepts exactly what the JSON Schema accepts, with ajv's messages as issues. */
export function zodFromJsonSchema(schema: object): z.ZodType<unknown> {
  const validate = compileJsonSchema(schema);
  return z.unknown().superRefine((value, ctx) => {
    if (!validate(value)) ctx.addIssue({ code: 'custom', message: `does not match the JSON Schema:\n${describeAjvErrors(validate.errors)}` });
  });
}
