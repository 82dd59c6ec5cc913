import { expect } from 'chai';
import {
  cosineSimilarity,
  DEFAULT_EMBEDDING_DIMENSIONS,
  embeddingFromBase64,
  embeddingToBase64,
  hashEmbedding,
  tokenize,
} from '../../../src/model-server/index.js';

const norm = (vector: readonly number[]): number => Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0));
const similarity = (a: string, b: string, dimensions?: number): number => cosineSimilarity(hashEmbedding(a, dimensions), hashEmbedding(b, dimensions));

describe('model-server: hashing embedder', () => {
  it('tokenizes lower-cased words of any script', () => {
    expect(tokenize('Hello, WORLD! Ça va? 42x')).to.deep.equal(['hello', 'world', 'ça', 'va', '42x']);
    expect(tokenize(' ... ')).to.deep.equal([]);
  });

  it('is deterministic and unit-length in the requested dimensions', () => {
    expect(hashEmbedding('the quick brown fox')).to.deep.equal(hashEmbedding('the quick brown fox'));
    expect(hashEmbedding('x')).to.have.length(DEFAULT_EMBEDDING_DIMENSIONS);
    for (const dimensions of [1, 3, 64, 1536]) {
      const vector = hashEmbedding('the quick brown fox jumps', dimensions);
      expect(vector).to.have.length(dimensions);
      expect(norm(vector)).to.be.closeTo(1, 1e-12);
    }
    expect(norm(hashEmbedding(''))).to.be.closeTo(1, 1e-12);
    expect(() => hashEmbedding('x', 0)).to.throw(RangeError);
  });

  it('gives identical texts similarity 1, ignoring case and punctuation', () => {
    expect(similarity('Hello, World!', 'hello world')).to.be.closeTo(1, 1e-12);
    expect(similarity('', '')).to.be.closeTo(1, 1e-12);
  });

  it('scores texts sharing many words higher than unrelated texts', () => {
    const base = 'The library lends many books about European history';
    const close = similarity(base, 'the library lends many old books about history');
    const partial = similarity(base, 'a bookshop sells many books about cooking');
    const far = similarity(base, 'Quantum chromodynamics describes gluon interactions');
    expect(close).to.be.greaterThan(0.7);
    expect(close).to.be.greaterThan(partial);
    expect(partial).to.be.greaterThan(far);
    expect(Math.abs(far)).to.be.lessThan(0.3);
  });

  it('is sensitive to word order through bigrams', () => {
    const sameWords = similarity('dog bites man', 'man bites dog', 512);
    expect(sameWords).to.be.lessThan(0.999);
    expect(sameWords).to.be.greaterThan(0.5);
  });

  it('computes cosine similarity', () => {
    expect(cosineSimilarity([1, 0], [0, 1])).to.equal(0);
    expect(cosineSimilarity([1, 1], [2, 2])).to.be.closeTo(1, 1e-12);
    expect(cosineSimilarity([0, 0], [1, 0])).to.equal(0);
    expect(() => cosineSimilarity([1], [1, 2])).to.throw(RangeError);
  });

  it('round-trips base64 little-endian float32', () => {
    const vector = hashEmbedding('round trip', 16);
    const encoded = embeddingToBase64(vector);
    expect(Buffer.from(encoded, 'base64')).to.have.length(16 * 4);
    embeddingFromBase64(encoded).forEach((value, i) => expect(value).to.equal(Math.fround(vector[i]!)));
    expect(embeddingToBase64([1])).to.equal(Buffer.from([0x00, 0x00, 0x80, 0x3f]).toString('base64'));
  });
});
