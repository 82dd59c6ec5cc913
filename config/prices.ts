import type { PriceEntry } from './models-file.js';

/**
 * List prices (US dollars per million tokens) of a few common models, as published by their
 * providers in 2026. They only seed the ledger's cost column: put your own contract prices, and the
 * prices of any other model, in ENVFLEET_MODELS_FILE under `prices`. A model with no price is
 * recorded with its tokens and a cost of 0, flagged as unpriced.
 */
export const DEFAULT_PRICES: Readonly<Record<string, PriceEntry>> = {
  'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 },
  'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6 },
  'gpt-4.1': { inputPerMTok: 2, outputPerMTok: 8 },
  'gpt-4.1-mini': { inputPerMTok: 0.4, outputPerMTok: 1.6 },
  'gpt-4.1-nano': { inputPerMTok: 0.1, outputPerMTok: 0.4 },
  'text-embedding-3-small': { inputPerMTok: 0.02, outputPerMTok: 0 },
  'text-embedding-3-large': { inputPerMTok: 0.13, outputPerMTok: 0 },
};
