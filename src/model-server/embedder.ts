/**
 * Deterministic "hashing trick" embeddings for the scripted model server.
 *
 * Lower-cased word tokens (weight 1) and adjacent word bigrams (weight 0.5)
 * are hashed into `dimensions` signed buckets and the vector is scaled to unit
 * length. Texts that share many words therefore have a high cosine
 * similarity, identical texts (ignoring case and punctuation) have similarity
 * 1, and unrelated texts land near 0. No model, no randomness.
 */

/** Dimensions used when the request does not ask for a specific size. */
export const DEFAULT_EMBEDDING_DIMENSIONS = 64;

const UNIGRAM_WEIGHT = 1;
const BIGRAM_WEIGHT = 0.5;
/** Feature used for texts without any word, so their vector is still unit-length. */
const EMPTY_FEATURE = '\u0000empty';

/** Lower-cased runs of letters and digits (any script). */
export function tokenize(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** 32-bit FNV-1a over UTF-16 code units, finished with the murmur3 avalanche. */
function hash32(feature: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < feature.length; i++) {
    h ^= feature.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Weighted features of a text: its words and word bigrams. */
function features(text: string): [feature: string, weight: number][] {
  const tokens = tokenize(text);
  if (tokens.length === 0) return [[EMPTY_FEATURE, 1]];
  const out: [string, number][] = tokens.map((token) => [token, UNIGRAM_WEIGHT]);
  for (let i = 1; i < tokens.length; i++) out.push([`${tokens[i - 1]} ${tokens[i]}`, BIGRAM_WEIGHT]);
  return out;
}

/** Scales a vector to unit length in place (a zero vector is left as is). */
function normalize(vector: number[]): number[] {
  let sumOfSquares = 0;
  for (const value of vector) sumOfSquares += value * value;
  const norm = Math.sqrt(sumOfSquares);
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) / norm;
  return vector;
}

/** The deterministic unit-length embedding of `text` with `dimensions` components. */
export function hashEmbedding(text: string, dimensions: number = DEFAULT_EMBEDDING_DIMENSIONS): number[] {
  if (!Number.isInteger(dimensions) || dimensions < 1) throw new RangeError(`dimensions must be a positive integer, got ${dimensions}`);
  const vector = new Array<number>(dimensions).fill(0);
  for (const [feature, weight] of features(text)) {
    const h = hash32(feature);
    const sign = h & 0x80000000 ? -1 : 1;
    const bucket = h % dimensions;
    vector[bucket] = (vector[bucket] ?? 0) + sign * weight;
  }
  return normalize(vector);
}

/** Cosine similarity of two vectors of the same length (0 if either is zero). */
export function cosineSimilarity(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new RangeError(`vector lengths differ: ${a.length} vs ${b.length}`);
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  return normA === 0 || normB === 0 ? 0 : dot / Math.sqrt(normA * normB);
}

/** Encodes a vector the way OpenAI does for `encoding_format: 'base64'`: little-endian float32. */
export function embeddingToBase64(vector: readonly number[]): string {
  const buffer = Buffer.alloc(vector.length * 4);
  vector.forEach((value, i) => buffer.writeFloatLE(value, i * 4));
  return buffer.toString('base64');
}

/** Inverse of {@link embeddingToBase64}. */
export function embeddingFromBase64(encoded: string): number[] {
  const buffer = Buffer.from(encoded, 'base64');
  const out: number[] = [];
  for (let offset = 0; offset + 4 <= buffer.length; offset += 4) out.push(buffer.readFloatLE(offset));
  return out;
}
