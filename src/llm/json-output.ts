import type { z } from 'zod';

export type ExtractResult = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * Finds the JSON value in a model's reply. Models wrap JSON in prose, in ```json fences, or put
 * reasoning in <think> blocks first; all of these are accepted. Nothing is stripped from inside
 * the JSON itself (the seed's prefix-stripping corrupted code that began with the stripped word).
 */
export function extractJson(content: string): ExtractResult {
  const text = content.replace(/<think>[\s\S]*?<\/think>/gi, '').trim();
  if (text === '') return { ok: false, error: 'the reply was empty; a JSON value was expected' };
  const candidates: string[] = [text];
  for (const m of text.matchAll(/```(?:json|JSON)?[ \t]*\r?\n([\s\S]*?)```/g)) if (m[1]) candidates.push(m[1].trim());
  const balanced = firstBalanced(text);
  if (balanced) candidates.push(balanced);
  let firstError = '';
  for (const candidate of candidates) {
    try {
      return { ok: true, value: JSON.parse(candidate) as unknown };
    } catch (err) {
      firstError ||= (err as Error).message;
    }
  }
  return { ok: false, error: `the reply is not valid JSON (${firstError})` };
}

/** The first balanced {...} or [...] in the text, respecting strings and escapes. */
function firstBalanced(text: string): string | null {
  const start = text.search(/[{[]/);
  if (start < 0) return null;
  const stack: string[] = [];
  let inString = false;
  for (let i = start; i < text.length; i += 1) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i += 1;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') stack.push(ch === '{' ? '}' : ']');
    else if (ch === '}' || ch === ']') {
      if (stack.pop() !== ch) return null;
      if (stack.length === 0) return text.slice(start, i + 1);
    }
  }
  return null;
}

/** A readable list of what is wrong, for the repair message and the recorded reason. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 20)
    .map(issue => `- at ${issue.path.length ? issue.path.join('.') : '(top level)'}: ${issue.message}`)
    .join('\n');
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function parseStructured<T>(content: string, schema: z.ZodType<T>): ParseResult<T> {
  const extracted = extractJson(content);
  if (!extracted.ok) return extracted;
  const result = schema.safeParse(extracted.value);
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, error: `the JSON does not match the required format:\n${describeZodError(result.error)}` };
}
