import { z } from 'zod';

/** The paths of single operations, which an OpenAI client appends to a base URL. */
const OPERATION_PATH = /\/(chat\/completions|completions|embeddings|models|responses)$/i;

/**
 * The base URL of an OpenAI-compatible API (OPENAI_BASE_URL, a models file's `baseURL`): http(s), and a base the
 * client can append `/chat/completions`, `/embeddings` and `/models` to. A URL copied from a curl example
 * (`…/v1/chat/completions`) would have become `…/v1/chat/completions/chat/completions` (404, and `envfleet doctor`
 * blamed a missing /v1); one with a query (Azure's older `?api-version=…`) would have had the path put after it.
 */
export const ApiBaseUrl = z.url({ protocol: /^https?$/, error: issue => (typeof issue.input === 'string' && URL.canParse(issue.input) ? `an http:// or https:// URL is needed, not ${new URL(issue.input).protocol}// (e.g. http://127.0.0.1:8000/v1)` : undefined) }).superRefine((url, ctx) => {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return; // z.url() has said so
  }
  const path = u.pathname.replace(/\/+$/, '');
  const op = OPERATION_PATH.exec(path);
  if (op) {
    ctx.addIssue({
      code: 'custom',
      message: `it ends with /${op[1]}, the path of one operation: give the API's base, ${u.origin}${path.slice(0, op.index)} (envfleet appends /chat/completions, /embeddings and /models to it)`,
    });
  }
  if (u.search || u.hash) {
    // The query is not shown: it may hold a key.
    ctx.addIssue({
      code: 'custom',
      message: `it has a ${u.search ? 'query string (?…)' : 'fragment (#…)'}: envfleet appends paths to the base URL, which cannot go after it; give the URL without it (Azure OpenAI's v1 API, https://RESOURCE.openai.azure.com/openai/v1, needs no api-version)`,
    });
  }
});
