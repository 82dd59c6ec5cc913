import { z } from 'zod';
import { ApiBaseUrl } from './base-url.js';
import { MAX_TIMER_MS } from './env.js';
import { MODEL_STAGE_NAMES } from './model-stages.js';
import { RequestShapeFields } from './request-shapes.js';

/** Name of an endpoint: the default one (OPENAI_BASE_URL) is called `default`. */
const EndpointName = z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only');

export const EndpointFileEntry = z.strictObject({
  baseURL: ApiBaseUrl,
  /** Name of the environment variable that holds this endpoint's key (keys never live in files). */
  apiKeyEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name such as VLLM_API_KEY').optional(),
  maxConcurrency: z.number().int().nonnegative().optional(),
  requestsPerMinute: z.number().int().nonnegative().optional(),
  timeoutMs: z.number().int().positive().max(MAX_TIMER_MS, `at most ${MAX_TIMER_MS} (about 24.8 days, the longest wait a timer holds)`).optional(),
});
export type EndpointFileEntry = z.infer<typeof EndpointFileEntry>;

const WeightedEndpoint = z.strictObject({ name: EndpointName, weight: z.number().positive().default(1) });

export const ProfileFileEntry = z.strictObject({
  model: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.number().int().positive().optional(),
  /** One endpoint name, or several with weights (requests are spread by weight). */
  endpoint: z.union([EndpointName, z.array(WeightedEndpoint).min(1)]).optional(),
  /** How requests are shaped for the endpoint (config/request-shapes.ts): a preset and/or single fields. */
  ...RequestShapeFields,
});
export type ProfileFileEntry = z.infer<typeof ProfileFileEntry>;

export const PriceEntry = z.strictObject({
  /** US dollars per million prompt tokens. */
  inputPerMTok: z.number().nonnegative(),
  /** US dollars per million completion tokens. */
  outputPerMTok: z.number().nonnegative(),
});
export type PriceEntry = z.infer<typeof PriceEntry>;

const stageKey = z.string().refine(key => key === 'default' || MODEL_STAGE_NAMES.includes(key as never), {
  error: issue => `unknown stage "${String(issue.input)}"; known stages: default, ${MODEL_STAGE_NAMES.join(', ')}`,
});

/** The optional ENVFLEET_MODELS_FILE (JSON or YAML). */
export const ModelsFile = z.strictObject({
  profiles: z.record(stageKey, ProfileFileEntry).optional(),
  endpoints: z.record(EndpointName, EndpointFileEntry).optional(),
  prices: z.record(z.string().min(1), PriceEntry).optional(),
});
export type ModelsFile = z.infer<typeof ModelsFile>;
