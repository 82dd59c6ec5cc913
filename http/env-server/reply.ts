import type { Response } from 'express';
import { stringifyJson } from '../../src/util/raw-json.js';

/** A JSON reply whose RawJson values (a Python tool's result, a final state) go out as their text, not parsed and written again. */
export const sendJson = (res: Response, body: unknown): Response => res.type('application/json').send(stringifyJson(body) ?? 'null');
