import type { Request } from 'express';
import { EnvServerError } from '../../src/env-server/errors.js';
import { jsonMemberHolding, jsonMemberText } from '../../src/util/json-member.js';

/** A JSON object (not null, not an array). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The raw text of a request's body: server.ts reads every body as text (''  when there is none). */
export const bodyText = (req: Request): string => (typeof req.body === 'string' ? req.body : '');

/**
 * The body as JSON: {} when empty. A body that does not parse throws what `malformed` makes of the
 * parse error (by default MALFORMED_JSON; each protocol surface passes its own error).
 */
export function bodyOf(req: Request, malformed: (err: Error) => Error = err => new EnvServerError('MALFORMED_JSON', `the request body is not JSON (${err.message}); send one JSON object`)): unknown {
  const text = bodyText(req);
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw malformed(err as Error);
  }
}

/** The body as a JSON object, or null when it is empty, not JSON or not an object. */
export function bodyObjectOrNull(req: Request): Record<string, unknown> | null {
  try {
    const body = JSON.parse(bodyText(req)) as unknown;
    return isObject(body) ? body : null;
  } catch {
    return null;
  }
}

/**
 * The text of a JSON-RPC `tools/call` message's `params.arguments`, as the client wrote it (numbers as spelt: `2.0`,
 * an integer past 2^53), for a Python tool to read as Python would; undefined unless `text` is one message whose
 * arguments are an object holding `args` (what was parsed from it). `text` must be valid JSON (already parsed).
 */
export function rpcArgumentsText(text: string, args: unknown): string | undefined {
  if (!isObject(args)) return undefined;
  const params = jsonMemberText(text, 'params');
  return params === undefined ? undefined : jsonMemberHolding(params, 'arguments', args);
}
