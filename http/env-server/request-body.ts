import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request } from 'express';
import { EnvServerError } from '../../src/env-server/errors.js';
import { jsonMemberHolding, jsonMemberText } from '../../src/util/json-member.js';
import { firstInvalidUtf8, notUtf8ByteProblem, utf16Of } from '../../src/util/utf8.js';

/** A JSON object (not null, not an array). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const RAW = Symbol('the body as it came');
const PROBLEM = Symbol('why the body is not text');
type Kept = { [RAW]?: Buffer; [PROBLEM]?: string };

/**
 * server.ts's body parser calls this with each body's bytes before they are decoded (express.text's `verify`): the
 * bytes are kept as they came (a forwarded request carries them unchanged, with their Content-Type), and a body
 * whose charset is UTF-8 (the default) but whose bytes are not is marked. Decoded, its bad bytes would have reached
 * the environment as U+FFFD without a word ("Member M7\uFFFD not found").
 */
export function keepBody(req: IncomingMessage, _res: ServerResponse, bytes: Buffer, charset: string): void {
  const kept = req as IncomingMessage & Kept;
  kept[RAW] = bytes;
  // Only a body meant as UTF-8 (its charset, or none named) is checked: one in a charset it names is read in it.
  if (!/^utf-?8$/i.test(charset)) return;
  const utf16 = utf16Of(bytes);
  if (utf16) kept[PROBLEM] = `not UTF-8 text: the body is ${utf16}; send it as UTF-8 (JSON text is UTF-8), or name its charset in Content-Type`;
  else if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    kept[PROBLEM] = `${notUtf8ByteProblem(bytes[at]!, `byte ${at} of the body`).replace(/; save the file as UTF-8$/, '')}; send the body as UTF-8 (JSON text is UTF-8), or name its charset in Content-Type`;
  }
}

/** The body's bytes as they came (empty when there is none). */
export const bodyBytes = (req: Request): Buffer => (req as Request & Kept)[RAW] ?? Buffer.alloc(0);

/** Why the body cannot be read as text (not UTF-8, though that is its charset), or null. */
export const bodyProblem = (req: Request): string | null => (req as Request & Kept)[PROBLEM] ?? null;

/** The text of a request's body (''  when there is none); a body that is not UTF-8 text throws MALFORMED_JSON saying where. */
export function bodyText(req: Request): string {
  const problem = bodyProblem(req);
  if (problem !== null) throw new EnvServerError('MALFORMED_JSON', `the request body is ${problem}`);
  return typeof req.body === 'string' ? req.body : '';
}

/**
 * The body as JSON: {} when empty. A body that does not parse throws what `malformed` makes of the
 * parse error (by default MALFORMED_JSON; each protocol surface passes its own error).
 */
export function bodyOf(req: Request, malformed: (err: Error) => Error = err => new EnvServerError('MALFORMED_JSON', `the request body is not JSON (${err.message}); send one JSON object`)): unknown {
  const problem = bodyProblem(req);
  if (problem !== null) throw malformed(new Error(problem));
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
